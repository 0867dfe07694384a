import { Decoder, FrameType, ProtocolError, type Frame } from '../../src/protocol/index.js';

/** What decoding produced: the complete frames, in order, and the error that stopped it, if any. */
export interface Decoded {
  frames: Frame[];
  error: ProtocolError | null;
}

/**
 * Runs the real Decoder over `chunks` and reassembles DATA pieces into whole
 * frames, dropping a trailing incomplete one, so results compare with the
 * oracle's.
 */
export function decodeChunks(chunks: Buffer[]): Decoded {
  const frames: Frame[] = [];
  let open: { streamId: number; length: number; parts: Buffer[]; got: number } | null = null;
  const flushData = (): void => {
    if (open && open.got === open.length) {
      frames.push({ type: FrameType.Data, streamId: open.streamId, payload: Buffer.concat(open.parts) });
      open = null;
    }
  };
  const decoder = new Decoder({
    dataHeader(streamId, length) {
      open = { streamId, length, parts: [], got: 0 };
      flushData();
    },
    data(streamId, piece) {
      if (!open || open.streamId !== streamId) throw new Error('piece without header');
      open.parts.push(Buffer.from(piece));
      open.got += piece.length;
      if (open.got > open.length) throw new Error('piece overruns its frame');
      flushData();
    },
    control(frame) {
      frames.push(frame);
    },
  });
  for (const chunk of chunks) {
    try {
      decoder.write(chunk);
    } catch (err) {
      if (err instanceof ProtocolError) return { frames, error: err };
      throw err;
    }
  }
  return { frames, error: null };
}

/** Splits `bytes` into pieces at the given offsets. */
export function splitAt(bytes: Buffer, offsets: number[]): Buffer[] {
  const out: Buffer[] = [];
  let last = 0;
  for (const o of [...offsets].sort((x, y) => x - y)) {
    if (o > last && o < bytes.length) {
      out.push(bytes.subarray(last, o));
      last = o;
    }
  }
  out.push(bytes.subarray(last));
  return out;
}

/** Frames as plain JSON-able values for deepEqual. */
export function plain(frames: Frame[]): unknown[] {
  return frames.map((f) => JSON.parse(JSON.stringify(f, (_k, v) => (v instanceof Map ? [...v] : v && v.type === 'Buffer' ? Buffer.from(v.data).toString('hex') : v))));
}
