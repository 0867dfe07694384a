import type net from 'node:net';
import { sniff } from '../protocol/index.js';
import { parseProxyHeader, type ProxyHeader } from './client-address.js';

const EMPTY = Buffer.alloc(0);

/** A TLS record of type handshake starts with this byte; no HTTP request or agent marker does. */
const TLS_HANDSHAKE = 0x16;

/**
 * Classifies a new connection from its first bytes (docs/protocol.md §2).
 * Calls `done` once: `agent` or `user` with the bytes read so far, or `null`
 * when it closed first or sent a bad PROXY header. `done` must attach its own
 * 'data' listener before returning, or bytes would be lost. A user that
 * sends nothing within `timeoutMs` is a user: server-speaks-first protocols
 * must not hang. With `proxyHeader`, the connection must start with a PROXY
 * protocol header: its source address goes to `proxyHeader` as soon as it is
 * read (which may refuse it by returning false: `done(null)`), and then on
 * to `done`. With `tls`, a first byte that starts a TLS handshake classifies
 * it as `tls`: decrypt it, then classify what is inside.
 */
export function sniffConnection(
  socket: net.Socket,
  timeoutMs: number,
  proxyHeader: false | ((source: ProxyHeader['source']) => boolean),
  tls: boolean,
  done: (kind: 'agent' | 'user' | 'tls' | null, first: Buffer, source: ProxyHeader['source']) => void,
): void {
  let first: Buffer = EMPTY;
  let awaitingHeader = proxyHeader !== false;
  let source: ProxyHeader['source'] = null;
  let settled = false;
  const finish = (kind: 'agent' | 'user' | 'tls' | null): void => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('end', onEnd);
    socket.off('close', onClose);
    // Not paused: pausing and resuming costs two epoll_ctl calls per user. `done`
    // takes the socket over synchronously, before another read can happen.
    done(kind, first, source);
  };
  const onData = (chunk: Buffer): void => {
    first = first.length === 0 ? chunk : Buffer.concat([first, chunk]);
    if (awaitingHeader) {
      let header: ProxyHeader | null;
      try {
        header = parseProxyHeader(first);
      } catch {
        return finish(null);
      }
      if (!header) return;
      awaitingHeader = false;
      source = header.source;
      if (proxyHeader && !proxyHeader(source)) return finish(null);
      first = first.subarray(header.length);
      if (first.length === 0) return;
    }
    if (tls && first[0] === TLS_HANDSHAKE) return finish('tls');
    const kind = sniff(first);
    if (kind !== 'more') finish(kind);
  };
  // A user that half-closes early is still a user; the splice sees the end.
  const onEnd = (): void => finish(awaitingHeader ? null : 'user');
  const onClose = (): void => finish(null);
  const timer = setTimeout(() => finish(awaitingHeader ? null : 'user'), timeoutMs);
  socket.on('data', onData);
  socket.on('end', onEnd);
  socket.on('close', onClose);
}
