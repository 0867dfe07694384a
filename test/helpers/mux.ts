import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { Duplex, Readable } from 'node:stream';
import { Session, type SessionOptions } from '../../src/mux/session.js';
import { Decoder, encodeFrame, Role, type Frame, type ControlFrame } from '../../src/protocol/index.js';
import { makePair, type PairKind } from './pairs.js';

export const KINDS: PairKind[] = ['memory', 'tcp'];

/** An agent-side (initiator) and a tunnel-side (acceptor) session over one pair. */
export async function sessionPair(
  kind: PairKind,
  agentOptions: Partial<SessionOptions> = {},
  tunnelOptions: Partial<SessionOptions> = {},
): Promise<{ agent: Session; tunnel: Session; close: () => Promise<void> }> {
  const [a, b] = await makePair(kind);
  const agent = new Session(a, { ...agentOptions, role: Role.Initiator });
  const tunnel = new Session(b, { ...tunnelOptions, role: Role.Acceptor });
  return { agent, tunnel, close: async () => void (await Promise.all([agent.destroy(), tunnel.destroy()])) };
}

/**
 * A session facing a raw peer that the test drives frame by frame: what the
 * session sends is decoded into `frames`, and `send` writes frames to it.
 */
export async function rawPeer(kind: PairKind, options: Partial<SessionOptions> & { role?: Role } = {}) {
  const [a, b] = await makePair(kind);
  const session = new Session(a, { ...options, role: options.role ?? Role.Initiator });
  const frames: Frame[] = [];
  const waiters: Array<() => void> = [];
  const decoder = new Decoder({
    dataHeader(streamId) {
      frames.push({ type: 0, streamId, payload: Buffer.alloc(0) });
    },
    data() {},
    control(frame: ControlFrame) {
      frames.push(frame);
      for (const w of waiters.splice(0)) w();
    },
  });
  b.on('data', (chunk: Buffer) => decoder.write(chunk));
  b.on('error', () => {});
  return {
    session,
    raw: b,
    frames,
    send(...list: Array<Frame | Buffer>): void {
      for (const f of list) b.write(Buffer.isBuffer(f) ? f : encodeFrame(f));
    },
    /** Resolves with the first control frame matching `match`, waiting for it to arrive. */
    async next<T extends Frame>(match: (f: Frame) => f is T): Promise<T> {
      for (;;) {
        const found = frames.find(match);
        if (found) return found;
        await new Promise<void>((resolve) => waiters.push(resolve));
      }
    },
  };
}

export function sha256(data: Buffer | Buffer[]): string {
  const h = createHash('sha256');
  for (const d of Array.isArray(data) ? data : [data]) h.update(d);
  return h.digest('hex');
}

/**
 * Reads a stream to its end; resolves with its bytes. Leaves the writable
 * side alone (a for-await loop would destroy the whole Duplex at the end).
 */
export async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream.iterator({ destroyOnReturn: false })) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

/** Reads a stream to its end, hashing as it goes; resolves with length and sha256. */
export async function digest(stream: Readable): Promise<{ length: number; sha: string }> {
  const h = createHash('sha256');
  let length = 0;
  for await (const chunk of stream.iterator({ destroyOnReturn: false })) {
    h.update(chunk as Buffer);
    length += (chunk as Buffer).length;
  }
  return { length, sha: h.digest('hex') };
}

/** A readable of `total` pseudo-random bytes made on demand, with the sha256 of what it produced so far. */
export function randomSource(total: number, chunkSize = 64 * 1024): { stream: Readable; produced: () => number; sha: () => string } {
  const h = createHash('sha256');
  let produced = 0;
  const block = randomBytes(chunkSize);
  let counter = 0;
  const stream = new Readable({
    read() {
      if (produced >= total) return void this.push(null);
      const n = Math.min(chunkSize, total - produced);
      const chunk = Buffer.allocUnsafe(n);
      block.copy(chunk, 0, 0, n);
      if (n >= 4) chunk.writeUInt32BE(counter++ >>> 0, 0);
      h.update(chunk);
      produced += n;
      this.push(chunk);
    },
  });
  return { stream, produced: () => produced, sha: () => h.copy().digest('hex') };
}

/** Resolves once the stream emitted 'close' (at once if it already has). */
export async function streamClosed(stream: Duplex): Promise<void> {
  if (!stream.closed) await once(stream, 'close');
}

/** Resolves with the session's close error (or undefined). */
export function closed(session: Session): Promise<Error | undefined> {
  return session.ended;
}

/** A duplex pair whose bytes arrive `delayMs` after they were written, in order: a long link. */
export function delayedPair(delayMs: number): [Duplex, Duplex] {
  const make = (): Duplex & { peer?: Duplex } =>
    new Duplex({
      allowHalfOpen: false,
      read() {},
      write(chunk: Buffer, _enc, callback) {
        const peer = (this as { peer?: Duplex }).peer!;
        setTimeout(() => peer.destroyed || peer.push(chunk), delayMs);
        callback();
      },
      final(callback) {
        const peer = (this as { peer?: Duplex }).peer!;
        setTimeout(() => peer.destroyed || peer.push(null), delayMs);
        callback();
      },
      destroy(err, callback) {
        const peer = (this as { peer?: Duplex }).peer!;
        setTimeout(() => peer.destroyed || peer.destroy(), delayMs);
        callback(err);
      },
    });
  const a = make();
  const b = make();
  a.peer = b;
  b.peer = a;
  return [a, b];
}
