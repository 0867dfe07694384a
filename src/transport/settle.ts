import type { EventEmitter } from 'node:events';
import { RhostError } from '../errors.js';

/**
 * Runs `work`, which returns its own cleanup, until it settles, the
 * deadline passes or the signal aborts; the cleanup runs in every case.
 * Every step of an agent's dial (connect, CONNECT, TLS, the handshake, the
 * proofs) is one of these, under one deadline.
 */
export function settle<T>(
  work: (resolve: (value: T) => void, reject: (err: Error) => void) => () => void,
  deadline: number,
  what: string,
  signal?: AbortSignal,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false;
    let cleanup = (): void => {};
    const finish = (err: Error | null, value?: T): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      cleanup();
      if (err) reject(err);
      else resolve(value as T);
    };
    const timer = setTimeout(() => finish(new RhostError('ERR_RHOST_HANDSHAKE_TIMEOUT', `${what} did not complete in time`)), Math.max(1, deadline - Date.now()));
    const onAbort = (): void => finish(new RhostError('ERR_RHOST_CLOSED', 'the dial was aborted'));
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort);
    try {
      cleanup = work((v) => finish(null, v), (e) => finish(e));
    } catch (err) {
      finish(err instanceof Error ? err : new Error(String(err)));
    }
  });
}

/** Waits for `event` on `emitter`, or its error, by the deadline; on failure `onFail` runs (say, destroying the socket). */
export async function settleOn(
  emitter: EventEmitter,
  event: string,
  toError: (err: NodeJS.ErrnoException) => Error,
  deadline: number,
  what: string,
  signal: AbortSignal | undefined,
  onFail: () => void,
): Promise<void> {
  await settle<void>(
    (resolve, reject) => {
      const onEvent = (): void => resolve();
      const onError = (err: NodeJS.ErrnoException): void => reject(toError(err));
      emitter.once(event, onEvent);
      emitter.once('error', onError);
      return () => {
        emitter.off(event, onEvent);
        emitter.off('error', onError);
      };
    },
    deadline,
    what,
    signal,
  ).catch((err) => {
    onFail();
    throw err;
  });
}
