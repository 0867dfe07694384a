import net from 'node:net';
import { RhostError } from '../errors.js';
import { HeadReader } from '../protocol/index.js';
import { formatAddress } from './address.js';
import { settle } from './settle.js';

/** The HTTP proxy an agent leaves through, if any. */
export interface ProxyChoice {
  url: URL;
}

/**
 * Decides whether to reach `host` through a proxy: `explicit` (--proxy) when
 * given, else HTTPS_PROXY for TLS transports and HTTP_PROXY for plain ones
 * (either case), unless NO_PROXY lists the host: `*`, a name, `.suffix` or
 * `suffix` (matching subdomains too), or an address, each with an optional
 * `:port`.
 */
export function chooseProxy(host: string, port: number, secure: boolean, explicit: string | undefined, env: NodeJS.ProcessEnv): ProxyChoice | null {
  const raw = explicit ?? (secure ? env.HTTPS_PROXY ?? env.https_proxy : env.HTTP_PROXY ?? env.http_proxy);
  if (!raw) return null;
  if (explicit === undefined && bypassed(host, port, env.NO_PROXY ?? env.no_proxy ?? '')) return null;
  return { url: parseProxyUrl(raw) };
}

/**
 * Reads a proxy setting (`http://[user:pass@]host:port`, or `host:port`);
 * throws ERR_RHOST_BAD_OPTION for anything else, credentials included, so
 * that a bad setting fails at start and not in the middle of a dial.
 */
export function parseProxyUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw.includes('://') ? raw : `http://${raw}`);
  } catch {
    throw new RhostError('ERR_RHOST_BAD_OPTION', `option proxy is not a URL: ${JSON.stringify(raw)}`);
  }
  if (url.protocol !== 'http:') throw new RhostError('ERR_RHOST_BAD_OPTION', `option proxy must be an http:// proxy, got ${url.protocol}`);
  proxyCredentials(url);
  return url;
}

/** `user:pass` from a proxy URL (percent-decoded), or null when it has none. */
function proxyCredentials(url: URL): string | null {
  if (!url.username) return null;
  try {
    return `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
  } catch {
    throw new RhostError('ERR_RHOST_BAD_OPTION', 'option proxy has badly percent-encoded credentials');
  }
}

function bypassed(host: string, port: number, noProxy: string): boolean {
  const name = host.toLowerCase().replace(/^\[|\]$/g, '');
  for (const raw of noProxy.split(/[\s,]+/)) {
    const entry = raw.trim().toLowerCase();
    if (!entry) continue;
    if (entry === '*') return true;
    const [pattern, entryPort] = splitNoProxyEntry(entry);
    if (entryPort !== undefined && Number(entryPort) !== port) continue;
    if (name === pattern || (!net.isIP(name) && name.endsWith(`.${pattern}`))) return true;
  }
  return false;
}

/**
 * A NO_PROXY entry as a host pattern and an optional port: `name`,
 * `name:port`, `1.2.3.4:port`, `::1`, `[::1]` or `[::1]:port`. A bare IPv6
 * address has no port (its colons are its own).
 */
function splitNoProxyEntry(entry: string): [pattern: string, port: string | undefined] {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry);
  if (bracketed) return [bracketed[1]!, bracketed[2]];
  if (net.isIPv6(entry)) return [entry, undefined];
  const m = /^(.*?)(?::(\d+))?$/.exec(entry)!;
  return [m[1]!.replace(/^\*?\./, ''), m[2]];
}

/**
 * Opens a TCP tunnel to `host:port` through an HTTP proxy with CONNECT
 * (with Basic credentials from the proxy URL, if any), by `deadline`.
 * Resolves with the socket, now connected end to end.
 */
export async function connectViaProxy(proxy: URL, host: string, port: number, deadline: number, signal?: AbortSignal): Promise<net.Socket> {
  const target = formatAddress(host, port);
  const where = `the proxy at ${proxy.host}`;
  const socket = net.connect({ host: proxy.hostname.replace(/^\[|\]$/g, ''), port: Number(proxy.port || 80), noDelay: true });
  try {
    await settle<void>(
      (resolve, reject) => {
        const reader = new HeadReader();
        const onError = (err: Error): void => reject(new RhostError('ERR_RHOST_CONNECT', `cannot reach ${where}: ${err.message}`, { cause: err }));
        const onClose = (): void => reject(new RhostError('ERR_RHOST_PROXY', `${where} closed the connection during CONNECT`));
        const onData = (chunk: Buffer): void => {
          let result;
          try {
            result = reader.push(chunk);
          } catch {
            return reject(new RhostError('ERR_RHOST_PROXY', `${where} sent an oversized answer to CONNECT`));
          }
          if (!result) return;
          // Only the status line matters; the proxy's headers are not ours to judge.
          const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(result.head.split('\r\n', 1)[0]!)?.[1] ?? 0);
          if (status !== 200) {
            const why = status === 407 ? 'proxy authentication required (give user:pass in the proxy URL)' : `it answered ${status || 'something else than HTTP'}`;
            return reject(new RhostError('ERR_RHOST_PROXY', `${where} refused CONNECT to ${target}: ${why}`));
          }
          // The tunnel never speaks first: bytes after the proxy's answer mean something else is there.
          if (result.rest.length) return reject(new RhostError('ERR_RHOST_PROXY', `${where} sent bytes after its CONNECT answer`));
          resolve();
        };
        const onConnect = (): void => {
          const lines = [`CONNECT ${target} HTTP/1.1`, `Host: ${target}`];
          const credentials = proxyCredentials(proxy);
          if (credentials) lines.push(`Proxy-Authorization: Basic ${Buffer.from(credentials).toString('base64')}`);
          socket.write(`${lines.join('\r\n')}\r\n\r\n`);
        };
        socket.on('error', onError);
        socket.on('close', onClose);
        socket.on('data', onData);
        socket.once('connect', onConnect);
        return () => {
          socket.off('error', onError);
          socket.off('close', onClose);
          socket.off('data', onData);
          socket.off('connect', onConnect);
        };
      },
      deadline,
      `CONNECT through ${where}`,
      signal,
    );
  } catch (err) {
    socket.destroy();
    throw err;
  }
  return socket;
}
