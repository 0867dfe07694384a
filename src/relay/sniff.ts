import type net from 'node:net';
import { parseProxyHeader, sniff, type ProxyHeader } from '../protocol/index.js';

const EMPTY = Buffer.alloc(0);

/** A TLS record of type handshake starts with this byte; no HTTP request or agent marker does. */
const TLS_HANDSHAKE = 0x16;

/** What a connection turned out to be: `null` when it sent a bad PROXY header, or it is gone. */
export type Kind = 'agent' | 'user' | 'tls' | null;

/** Called once per connection with its kind, the bytes read so far, and what a PROXY header said. */
export type Sniffed = (kind: Kind, first: Buffer, source: ProxyHeader['source']) => void;

interface Watched {
  first: Buffer;
  awaitingHeader: boolean;
  source: ProxyHeader['source'];
  proxyHeader: false | ((source: ProxyHeader['source']) => boolean);
  tls: boolean;
  done: Sniffed;
  deadline: number;
}

/**
 * Classifies new connections from their first bytes (docs/protocol.md §2),
 * for every connection of a tunnel at once, at the least cost per
 * connection: one shared 'data' listener (no closure per socket), and one
 * timer for all of them instead of one each. A user that sends nothing
 * within `timeoutMs` (checked every tenth of it) is a user:
 * server-speaks-first protocols must not hang.
 */
export class Sniffer {
  readonly #timeoutMs: number;
  readonly #tickMs: number;
  /** In order of arrival, so in order of deadline. */
  readonly #watched = new Map<net.Socket, Watched>();
  #timer: NodeJS.Timeout | null = null;
  /** The one 'data' listener of every watched socket (`this` is the socket). */
  readonly #onData: (this: net.Socket, chunk: Buffer) => void;

  constructor(timeoutMs: number) {
    this.#timeoutMs = timeoutMs;
    this.#tickMs = Math.max(1, Math.ceil(timeoutMs / 10));
    const sniffer = this;
    this.#onData = function (this: net.Socket, chunk: Buffer): void {
      sniffer.#read(this, chunk);
    };
  }

  /**
   * Watches `socket` until it is classified; `done` is called once, and
   * must attach its own 'data' listener before returning, or bytes would
   * be lost. With `proxyHeader`, the connection must start with a PROXY
   * protocol header: its source goes to `proxyHeader` as soon as it is read
   * (which may refuse it by returning false: `done(null)`). With `tls`, a
   * first byte that starts a TLS handshake classifies it as `tls`.
   */
  watch(socket: net.Socket, proxyHeader: Watched['proxyHeader'], tls: boolean, done: Sniffed): void {
    this.#watched.set(socket, { first: EMPTY, awaitingHeader: proxyHeader !== false, source: null, proxyHeader, tls, done, deadline: performance.now() + this.#timeoutMs });
    socket.on('data', this.#onData);
    this.#timer ??= setInterval(this.#expire, this.#tickMs);
  }

  /** The socket closed before it was classified: it needs nothing more. */
  forget(socket: net.Socket): void {
    if (this.#watched.delete(socket)) socket.off('data', this.#onData);
  }

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  #finish(socket: net.Socket, w: Watched, kind: Kind): void {
    this.#watched.delete(socket);
    socket.off('data', this.#onData);
    // Not paused: pausing and resuming costs two epoll_ctl calls per user. `done`
    // takes the socket over synchronously, before another read can happen.
    w.done(kind, w.first, w.source);
  }

  #read(socket: net.Socket, chunk: Buffer): void {
    const w = this.#watched.get(socket);
    if (!w) return;
    w.first = w.first.length === 0 ? chunk : Buffer.concat([w.first, chunk]);
    if (w.awaitingHeader) {
      let header: ProxyHeader | null;
      try {
        header = parseProxyHeader(w.first);
      } catch {
        return this.#finish(socket, w, null);
      }
      if (!header) return;
      w.awaitingHeader = false;
      w.source = header.source;
      if (w.proxyHeader && !w.proxyHeader(w.source)) return this.#finish(socket, w, null);
      w.first = w.first.subarray(header.length);
      if (w.first.length === 0) return;
    }
    if (w.tls && w.first[0] === TLS_HANDSHAKE) return this.#finish(socket, w, 'tls');
    const kind = sniff(w.first);
    if (kind !== 'more') this.#finish(socket, w, kind);
  }

  /** Connections silent past the timeout: users, unless still owing a PROXY header or gone. */
  readonly #expire = (): void => {
    const now = performance.now();
    for (const [socket, w] of this.#watched) {
      if (w.deadline > now) break;
      this.#finish(socket, w, w.awaitingHeader || socket.destroyed ? null : 'user');
    }
    if (this.#watched.size === 0 && this.#timer) {
      clearInterval(this.#timer);
      this.#timer = null;
    }
  };
}
