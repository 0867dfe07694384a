import http from 'node:http';
import type { Duplex } from 'node:stream';
import { WireError, wireCodeOf } from '../protocol/index.js';

/**
 * Forwarding HTTP/1.1 messages, as a proxy does: the tunnel's host routing
 * and the server agent's `--http` mode both read requests with Node's
 * parser (an http.Server fed connections by hand), and send them on with
 * Node's client over a connection of their choosing (an http.Agent).
 * Bodies stream both ways under backpressure; hop-by-hop headers stay on
 * their hop; 100-continue and 103 pass through; an Upgrade becomes bytes.
 */

/** Headers of one connection, never forwarded (RFC 9110 §7.6.1); and any the Connection header names. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

/** Stream resets (and socket errors) that mean "the service is down": HTTP users get a page saying so. */
export const SERVICE_DOWN: Partial<Record<number, [number, string]>> = {
  [WireError.ConnectRefused]: [502, 'the local service behind this tunnel refused the connection: is it running?'],
  [WireError.ConnectFailed]: [502, 'the local service behind this tunnel could not be reached'],
  [WireError.NoServer]: [503, 'no server agent is connected to this tunnel'],
};

/** `raw` (rawHeaders: name, value, name, value…) without the hop-by-hop headers. */
export function endToEnd(raw: readonly string[]): string[] {
  const named = new Set<string>();
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === 'connection') for (const token of raw[i + 1]!.split(',')) named.add(token.trim().toLowerCase());
  }
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (!HOP_BY_HOP.has(name) && !named.has(name)) out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}

/**
 * A page of rhost's own: plain text, one line. No Date, so that equal
 * pages are equal bytes (every name that serves nothing gets the same 404).
 */
export function page(res: http.ServerResponse, status: number, message: string, extra: Record<string, string> = {}, close = false): void {
  const body = `${message}\n`;
  res.sendDate = false;
  if (close) res.shouldKeepAlive = false;
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store', ...extra });
  res.end(body);
}

/** What to do with a request on its way. */
export interface Forwarding {
  /** The connection it goes over. */
  agent: http.Agent;
  /** Its headers, already rewritten as the hop requires (rawHeaders form, hop-by-hop headers gone). */
  headers: string[];
  /** What a failure before the response is told to the user, when it is not a known service-down reset. */
  failure?: string;
  /** Called once the exchange is over, with the response's status (0 when there was none). */
  done?: (status: number) => void;
}

/**
 * Sends `req` on through `how.agent`, and its response back through `res`.
 * A request body with chunked framing is re-framed on the way (llhttp
 * decoded it). Throws like http.request (a connection that cannot be made).
 */
export function forward(req: http.IncomingMessage, res: http.ServerResponse, how: Forwarding): void {
  const headers = how.headers;
  if (req.headers['transfer-encoding'] !== undefined) headers.push('Transfer-Encoding', 'chunked');
  const upstream = http.request({ agent: how.agent, method: req.method, path: req.url, headers, setHost: false });
  let status = 0;
  const finish = (): void => how.done?.(status);
  upstream.on('information', (info: http.InformationEvent) => {
    if (info.statusCode === 100) res.writeContinue();
    else if (info.statusCode === 103) res.writeEarlyHints(Object.fromEntries(Object.entries(info.headers).filter(([, v]) => v !== undefined)) as Record<string, string | string[]>);
  });
  upstream.on('response', (answer) => {
    status = answer.statusCode ?? 502;
    res.writeHead(status, answer.statusMessage, endToEnd(answer.rawHeaders));
    answer.pipe(res, { end: false });
    answer.once('end', () => {
      const trailers = answer.rawTrailers;
      if (trailers.length) res.addTrailers(pairs(trailers));
      res.end();
    });
    answer.once('error', () => res.destroy());
  });
  upstream.on('error', (err) => {
    if (res.headersSent) return void res.destroy();
    const down = SERVICE_DOWN[wireCodeOf(err)];
    status = down?.[0] ?? 502;
    page(res, status, down?.[1] ?? how.failure ?? `the service failed the request: ${err.message}`);
  });
  res.once('close', () => {
    if (!res.writableFinished) upstream.destroy();
    finish();
  });
  req.pipe(upstream);
}

/** The head of a request as it goes on, with `headers` (rawHeaders form): for an Upgrade, which then carries bytes. */
export function requestHead(req: http.IncomingMessage, headers: readonly string[]): string {
  const lines = [`${req.method} ${req.url} HTTP/${req.httpVersion}`];
  for (let i = 0; i < headers.length; i += 2) lines.push(`${headers[i]}: ${headers[i + 1]}`);
  return `${lines.join('\r\n')}\r\n\r\n`;
}

/** Joins two byte streams both ways until either ends or fails; then both go. */
export function join(a: Duplex, b: Duplex): void {
  const cut = (): void => {
    a.destroy();
    b.destroy();
  };
  a.once('error', cut);
  b.once('error', cut);
  a.once('close', () => b.destroy());
  b.once('close', () => a.destroy());
  a.pipe(b);
  b.pipe(a);
}

/** rawTrailers as [name, value] pairs. */
function pairs(raw: readonly string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i < raw.length; i += 2) out.push([raw[i]!, raw[i + 1]!]);
  return out;
}

/**
 * An http.Server that listens nowhere: connections are handed to it
 * (`emit('connection', duplex)`). It answers after a half-close, bounds
 * heads by `maxHeaderSize` and `headersTimeout`, and keeps idle
 * connections `keepAliveTimeout`.
 */
export function detachedServer(options: { maxHeaderSize: number; headersTimeoutMs: number; keepAliveTimeoutMs: number }): http.Server {
  const server = http.createServer({
    maxHeaderSize: options.maxHeaderSize,
    keepAliveTimeout: options.keepAliveTimeoutMs,
    headersTimeout: options.headersTimeoutMs,
    requestTimeout: 0, // uploads may take long; idle timeouts bound silence
    joinDuplicateHeaders: false,
  });
  // A user that half-closes after its last request still gets its answers.
  (server as http.Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
  // Node checks headersTimeout only for servers that said 'listening'.
  server.emit('listening');
  return server;
}

/** The status and reason a malformed request gets (Node's 'clientError'). */
export function clientErrorPage(err: NodeJS.ErrnoException, maxHeaderSize: number): [number, string] {
  if (err.code === 'HPE_HEADER_OVERFLOW') return [431, `the request head exceeds ${maxHeaderSize} bytes`];
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return [408, 'the request head took too long'];
  return [400, 'the request is not valid HTTP/1.1'];
}
