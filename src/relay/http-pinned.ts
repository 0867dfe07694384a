import type { Duplex } from 'node:stream';
import { buildHttpError } from '../protocol/index.js';
import { MessageReader, type Head } from '../transport/llhttp.js';

/**
 * The fast path of host routing: a user connection pinned to one lane
 * while its requests all go there, the usual case (a browser keeps one
 * connection per site). Node's parser (llhttp) reads each request head
 * and each response, so that the routing stays per request, but the
 * bytes pass through unchanged, as on the raw path: nothing is rebuilt.
 *
 * The first request that needs anything else (another lane, a page of the
 * tunnel's, an upgrade, a chunked body) hands the connection, from that
 * request on, to the general router (relay/http-router.ts), once every
 * response on the lane is complete. Requests in flight are bounded: past
 * `maxPipelined` the connection is not read until responses come back.
 */

/** Where a request goes, when it can go down a lane: null for anything the general router must take. */
export interface LaneChoice {
  /** Requests with the same key share a lane: channel, agent session, client address, TLS. */
  key: string;
  open(): Duplex;
}

export interface PinnedOptions {
  socket: Duplex;
  maxHeadBytes: number;
  maxPipelined: number;
  /** A head that is not complete within this is answered 408. */
  headTimeoutMs: number;
  /** A connection with nothing in flight for this long is closed. */
  keepAliveMs: number;
  choose(head: Head): LaneChoice | null;
  /** Takes the connection over; `pending` are its bytes read but not yet forwarded, from a request's first byte. */
  handOver(pending: Buffer): void;
}

const HEAD_END = Buffer.from('\r\n\r\n');

interface Lane {
  key: string;
  stream: Duplex;
  onData: (d: Buffer) => void;
}

export class PinnedConnection {
  readonly #o: PinnedOptions;
  readonly #requests: MessageReader;
  readonly #responses: MessageReader;
  #lane: Lane | null = null;
  #pending: Buffer = Buffer.alloc(0);
  /** Body bytes of the current request still to forward. */
  #bodyLeft = 0;
  #head: Head | null = null;
  /** Requests forwarded whose responses are not complete: their methods (a response to HEAD has no body). */
  readonly #waiting: string[] = [];
  #informational = false;
  /** The responses cannot be followed (not HTTP, or after a 101): the connection stays on its lane to the end. */
  #opaque = false;
  /** Set once a request needs the general router: forwarding stops until the lane is idle. */
  #leaving = false;
  /** The last exchange: after its response the connection ends (a `Connection: close` either way). */
  #closing = false;
  #userEnded = false;
  /** The lane is not taking more (write returned false). */
  #blocked = false;
  #done = false;
  readonly #idleTimer: NodeJS.Timeout;
  #headTimer: NodeJS.Timeout | null = null;

  constructor(options: PinnedOptions, first: Buffer) {
    this.#o = options;
    const onHead = (h: Head): boolean => {
      this.#head = h;
      return false;
    };
    this.#requests = new MessageReader('request', options.maxHeadBytes, { head: onHead, complete: () => {} });
    this.#responses = new MessageReader('response', options.maxHeadBytes, { head: (h) => this.#onResponseHead(h), complete: () => this.#onResponseComplete() });
    const { socket } = options;
    this.#idleTimer = setTimeout(() => this.#onIdleTimeout(), options.keepAliveMs);
    socket.on('data', this.#onData);
    socket.once('end', this.#onEnd);
    socket.once('close', this.#onClose);
    this.#onData(first);
  }

  readonly #onData = (chunk: Buffer): void => {
    this.#idleTimer.refresh();
    this.#pending = this.#pending.length ? Buffer.concat([this.#pending, chunk]) : chunk;
    this.#forward();
  };

  /** Forwards what can go down the lane now; ends the connection when the user has and all is answered. */
  #forward(): void {
    this.#forwardSome();
    this.#maybeEnd();
  }

  #forwardSome(): void {
    const { socket } = this.#o;
    while (this.#pending.length > 0 && !this.#leaving && !this.#done && !this.#blocked) {
      if (this.#bodyLeft > 0 || this.#opaque) {
        const part = this.#opaque ? this.#pending : this.#pending.subarray(0, this.#bodyLeft);
        if (!this.#opaque) this.#bodyLeft -= part.length;
        this.#pending = this.#pending.subarray(part.length);
        this.#write(part);
        continue;
      }
      const end = this.#pending.indexOf(HEAD_END);
      if (end < 0) {
        if (this.#pending.length > this.#o.maxHeadBytes) return this.#leave();
        this.#headTimer ??= setTimeout(() => this.#onHeadTimeout(), this.#o.headTimeoutMs);
        return;
      }
      this.#clearHeadTimer();
      if (this.#waiting.length >= this.#o.maxPipelined) return void socket.pause(); // read on when a response completes
      const headBytes = this.#pending.subarray(0, end + HEAD_END.length);
      this.#head = null;
      this.#requests.reset();
      const head = this.#requests.execute(headBytes) === null ? (this.#head as Head | null) : null; // set by the callback
      const length = head ? bodyLength(head) : null;
      const choice = head && length !== null && !this.#closing ? this.#o.choose(head) : null;
      const lane = this.#lane;
      if (!head || length === null || !choice || (lane && lane.key !== choice.key)) return this.#leave();
      if (!lane && !this.#open(choice)) return this.#leave();
      this.#pending = this.#pending.subarray(headBytes.length);
      this.#waiting.push(head.method!);
      this.#bodyLeft = length;
      if (!head.keepAlive) this.#closing = true; // the user sends nothing after this one
      this.#write(headBytes);
    }
  }

  #write(bytes: Buffer): void {
    const stream = this.#lane!.stream;
    if (stream.write(bytes)) return;
    this.#blocked = true;
    this.#o.socket.pause();
    stream.once('drain', () => {
      this.#blocked = false;
      this.#readOn();
    });
  }

  /** Reads the user again, if nothing holds it: a full lane, a hand-over, the pipelining bound. */
  #readOn(): void {
    if (this.#done || this.#leaving || this.#blocked || this.#waiting.length >= this.#o.maxPipelined) return;
    this.#o.socket.resume();
    if (this.#pending.length) this.#forward();
  }

  #open(choice: LaneChoice): boolean {
    let stream: Duplex;
    try {
      stream = choice.open();
    } catch {
      return false; // the general router answers (a 503)
    }
    const { socket } = this.#o;
    const onData = (d: Buffer): void => {
      this.#idleTimer.refresh();
      if (!this.#opaque && this.#responses.execute(d) !== null) this.#opaque = true;
      if (!socket.write(d)) {
        stream.pause();
        socket.once('drain', () => stream.resume());
      }
      this.#afterResponses();
    };
    const lane = { key: choice.key, stream, onData };
    this.#responses.reset();
    stream.on('data', onData);
    stream.on('error', () => {});
    stream.once('end', () => {
      if (this.#lane === lane && !this.#opaque) this.#responses.finish(); // a response delimited by the end of its connection completes
      this.#laneGone(lane);
    });
    stream.once('close', () => this.#laneGone(lane));
    this.#lane = lane;
    return true;
  }

  /** The service's side closed: harmless between exchanges (the next request opens a new lane); else the user's connection ends too. */
  #laneGone(lane: Lane): void {
    if (this.#lane !== lane || this.#done) return;
    this.#lane = null;
    lane.stream.off('data', lane.onData);
    lane.stream.destroy();
    const idle = this.#waiting.length === 0 && this.#bodyLeft === 0 && !this.#opaque;
    if (!idle || this.#closing || this.#userEnded) return this.#finish(() => this.#o.socket.end());
    this.#blocked = false;
    if (this.#leaving) return this.#handOver();
    this.#readOn();
  }

  #onResponseHead(head: Head): boolean {
    if (head.status >= 100 && head.status < 200) {
      if (head.status === 101) this.#opaque = true; // bytes both ways from here on
      else this.#informational = true;
      return false;
    }
    const skipBody = this.#waiting[0] === 'HEAD';
    // llhttp's keep-alive verdict comes before it knows a body is skipped: the response's own words, and how its body ends, decide.
    if (!responseKeepsConnection(head, skipBody)) this.#closing = true;
    return skipBody;
  }

  #onResponseComplete(): void {
    if (this.#informational) {
      this.#informational = false;
      return;
    }
    if (this.#waiting.shift() === undefined) this.#opaque = true; // a response nobody asked for: stop following
  }

  /** What the responses parsed so far call for, outside the parser's callbacks. */
  #afterResponses(): void {
    if (this.#done || this.#opaque) return;
    if (this.#waiting.length > 0) return this.#readOn(); // below the pipelining bound again, perhaps
    if (this.#closing) return this.#finish(() => this.#o.socket.end());
    if (this.#leaving) return this.#handOver();
    this.#readOn();
    this.#maybeEnd();
  }

  /** A request needs the general router: stop here, and hand over once the lane is idle. */
  #leave(): void {
    this.#leaving = true;
    this.#o.socket.pause();
    if (this.#opaque) return this.#finish(() => this.#o.socket.destroy()); // cannot tell when its responses end
    if (this.#waiting.length === 0) this.#handOver();
  }

  #handOver(): void {
    if (this.#done) return;
    if (this.#userEnded) return this.#finish(() => this.#o.socket.end()); // see #maybeEnd
    const pending = this.#pending;
    this.#finish(() => this.#o.handOver(pending));
  }

  #finish(then: () => void): void {
    if (this.#done) return;
    this.#done = true;
    clearTimeout(this.#idleTimer);
    this.#clearHeadTimer();
    const { socket } = this.#o;
    socket.off('data', this.#onData);
    socket.off('end', this.#onEnd);
    socket.off('close', this.#onClose);
    const lane = this.#lane;
    if (lane) {
      // Idle, or being cut: the lane's connection is closed, never reused by the general router.
      lane.stream.off('data', lane.onData);
      lane.stream.resume();
      lane.stream.end();
      this.#lane = null;
    }
    this.#requests.close();
    this.#responses.close();
    then();
  }

  readonly #onEnd = (): void => {
    this.#userEnded = true;
    if (this.#opaque) this.#lane?.stream.end(); // bytes both ways: the end goes through, as on the raw path
    this.#maybeEnd();
  };

  /** The user sent its last byte: the connection ends once every request it sent is answered. */
  #maybeEnd(): void {
    if (!this.#userEnded || this.#done || this.#opaque) return;
    const { socket } = this.#o;
    if (this.#bodyLeft > 0 && this.#pending.length === 0) return this.#finish(() => socket.destroy()); // a body cut short: no answer can come
    if (this.#waiting.length > 0) return; // answers still to come
    // Nothing in flight: the rest is a request cut short, or one the general router would have had, which cannot take an ended connection.
    if (this.#pending.length === 0 || this.#leaving || this.#pending.indexOf(HEAD_END) < 0) this.#finish(() => socket.end());
  }

  readonly #onClose = (): void => {
    this.#lane?.stream.destroy();
    this.#finish(() => {});
  };

  #clearHeadTimer(): void {
    if (this.#headTimer) clearTimeout(this.#headTimer);
    this.#headTimer = null;
  }

  #onHeadTimeout(): void {
    this.#headTimer = null;
    const { socket } = this.#o;
    if (this.#waiting.length > 0) return this.#leave(); // the general router's own head timeout takes it from here
    this.#finish(() => socket.end(buildHttpError(408, 'the request head did not arrive in time'), () => socket.destroy()));
  }

  #onIdleTimeout(): void {
    if (this.#done) return;
    if (this.#waiting.length > 0 || this.#bodyLeft > 0) return void this.#idleTimer.refresh(); // an exchange is under way
    this.#finish(() => this.#o.socket.end());
  }
}

/**
 * How many body bytes follow a request head: its Content-Length (llhttp
 * checked it), or 0. Null for what the general router must take: chunked
 * or other transfer codings, upgrades, CONNECT, expectations other than
 * 100-continue, and HTTP/1.0 without a Host (which needs one added).
 */
function bodyLength(head: Head): number | null {
  if (head.upgrade || head.method === 'CONNECT') return null;
  let length = 0;
  let host = false;
  const raw = head.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 14 && name.toLowerCase() === 'content-length') length = Number(raw[i + 1]);
    else if (name.length === 17 && name.toLowerCase() === 'transfer-encoding') return null;
    else if (name.length === 6 && name.toLowerCase() === 'expect' && raw[i + 1]!.toLowerCase() !== '100-continue') return null;
    else if (name.length === 4 && name.toLowerCase() === 'host') host = true;
  }
  return host && Number.isSafeInteger(length) ? length : null;
}

/** Whether the connection carries another exchange after this response: not after `Connection: close` (or 1.0 without keep-alive), nor after a body only its end delimits. */
function responseKeepsConnection(head: Head, skipBody: boolean): boolean {
  let connection = '';
  let framed = skipBody || head.status === 204 || head.status === 304;
  const raw = head.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (name === 'connection') connection += `,${raw[i + 1]!.toLowerCase()}`;
    else if (name === 'content-length' || (name === 'transfer-encoding' && /(^|,)\s*chunked\s*$/i.test(raw[i + 1]!))) framed = true;
  }
  const tokens = connection.split(',').map((t) => t.trim());
  const keep = head.versionMinor === 0 ? tokens.includes('keep-alive') : !tokens.includes('close');
  return keep && framed;
}
