import type { Duplex } from 'node:stream';
import { RhostError } from '../errors.js';
import { encodeControl, MAX_CONTROL_PAYLOAD_BYTES, FRAME_HEADER_BYTES, takeControlFrame, type ControlFrame } from '../protocol/index.js';
import { settle } from './settle.js';

/**
 * The exchange before a version 2 session (docs/protocol.md §3.3): one
 * AUTH frame each way, or a REFUSE. Neither side runs a Session yet, so
 * these read one frame off the transport by hand, bounded in bytes and time.
 */

/** Writes one control frame. */
export function writeControl(transport: Duplex, frame: ControlFrame): void {
  transport.write(encodeControl(frame));
}

/**
 * Reads one control frame from `transport`, after the bytes already in
 * `head`; resolves with it and whatever followed it (the start of the frame
 * stream), with the transport paused so nothing is lost. Rejects with
 * ERR_RHOST_PROTOCOL for a frame that is malformed or not a control frame,
 * ERR_RHOST_CONNECT when the transport closes first, and
 * ERR_RHOST_HANDSHAKE_TIMEOUT at the deadline.
 */
export function readControlFrame(
  transport: Duplex,
  head: Buffer,
  deadline: number,
  what: string,
  signal?: AbortSignal,
): Promise<{ frame: ControlFrame; rest: Buffer }> {
  return settle(
    (resolve, reject) => {
      let buffered = head;
      const onData = (chunk: Buffer): void => {
        buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk;
        let taken;
        try {
          taken = takeControlFrame(buffered);
        } catch (err) {
          return reject(new RhostError('ERR_RHOST_PROTOCOL', `${what}: ${(err as Error).message}`, { cause: err }));
        }
        if (taken) {
          transport.pause();
          resolve(taken);
        } else if (buffered.length > FRAME_HEADER_BYTES + MAX_CONTROL_PAYLOAD_BYTES) {
          reject(new RhostError('ERR_RHOST_PROTOCOL', `${what}: the frame is too long`));
        }
      };
      const onClose = (): void => reject(new RhostError('ERR_RHOST_CONNECT', `${what}: the connection closed first`));
      const onError = (err: Error): void => reject(new RhostError('ERR_RHOST_CONNECT', `${what}: ${err.message}`, { cause: err }));
      transport.on('data', onData);
      transport.on('close', onClose);
      transport.on('error', onError);
      transport.resume();
      if (head.length) queueMicrotask(() => onData(Buffer.alloc(0)));
      return () => {
        transport.off('data', onData);
        transport.off('close', onClose);
        transport.off('error', onError);
      };
    },
    deadline,
    what,
    signal,
  );
}
