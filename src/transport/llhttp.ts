import { createRequire } from 'node:module';

/**
 * Node's own HTTP/1.1 parser (llhttp), as node:http uses it, for code that
 * must find where messages begin and end while passing their bytes on
 * unchanged: the tunnel's pinned lanes (relay/http-pinned.ts). It is
 * reached through `_http_common`, which node:http is built on; this module
 * is the one place that knows its shape.
 */

interface NativeParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(data: Buffer): number | (Error & { code?: string });
  finish(): number | (Error & { code?: string }) | undefined;
  close(): void;
  [callback: number]: unknown;
}

interface HttpCommon {
  HTTPParser: {
    new (): NativeParser;
    REQUEST: number;
    RESPONSE: number;
    kOnHeaders: number;
    kOnHeadersComplete: number;
    kOnBody: number;
    kOnMessageComplete: number;
    kOnExecute: number;
    kLenientNone: number;
  };
  methods: string[];
}

const { HTTPParser, methods } = createRequire(import.meta.url)('_http_common') as HttpCommon;

/** The head of one message, as llhttp read it. */
export interface Head {
  /** Requests: the method; responses: undefined. */
  method: string | undefined;
  url: string;
  /** Names and values, alternating, as sent. */
  rawHeaders: string[];
  versionMinor: number;
  /** Responses: the status. */
  status: number;
  upgrade: boolean;
  /** The connection may carry another message after this one (HTTP/1.1 without `Connection: close`, or 1.0 with keep-alive). */
  keepAlive: boolean;
}

export interface ReaderEvents {
  /** A head is complete; return true to have the body skipped (a response to HEAD). */
  head(head: Head): boolean;
  /** A message is complete, body and all. */
  complete(): void;
}

/** Reads a stream of requests or of responses, reporting each head and each end. */
export class MessageReader {
  readonly #parser: NativeParser;
  readonly #type: number;
  readonly #maxHeadBytes: number;
  #headers: string[] = [];
  #url = '';

  constructor(kind: 'request' | 'response', maxHeadBytes: number, events: ReaderEvents) {
    this.#type = kind === 'request' ? HTTPParser.REQUEST : HTTPParser.RESPONSE;
    this.#maxHeadBytes = maxHeadBytes;
    const parser = new HTTPParser();
    // More than 32 header lines arrive in parts before the head is complete.
    parser[HTTPParser.kOnHeaders] = (headers: string[], url: string) => {
      this.#headers.push(...headers);
      this.#url += url;
    };
    parser[HTTPParser.kOnHeadersComplete] = (_major: number, minor: number, headers: string[] | undefined, method: number | undefined, url: string | undefined, status: number | undefined, _text: string, upgrade: boolean, keepAlive: boolean) => {
      const rawHeaders = headers ?? this.#headers;
      const head: Head = { method: method === undefined ? undefined : methods[method], url: url ?? this.#url, rawHeaders, versionMinor: minor, status: status ?? 0, upgrade, keepAlive };
      this.#headers = [];
      this.#url = '';
      return events.head(head) ? 1 : 0;
    };
    parser[HTTPParser.kOnBody] = () => {};
    parser[HTTPParser.kOnMessageComplete] = () => events.complete();
    this.#parser = parser;
    this.reset();
  }

  /** Forgets any message in progress: the next bytes begin a new one. */
  reset(): void {
    this.#parser.initialize(this.#type, {}, this.#maxHeadBytes, HTTPParser.kLenientNone);
    this.#headers = [];
    this.#url = '';
  }

  /** Parses bytes; an Error when they are not HTTP (its `code` is llhttp's, e.g. HPE_INVALID_HEADER_TOKEN). */
  execute(data: Buffer): Error | null {
    const result = this.#parser.execute(data);
    return typeof result === 'number' ? null : result;
  }

  /** The stream ended: a message delimited by the end completes. */
  finish(): Error | null {
    const result = this.#parser.finish();
    return result instanceof Error ? result : null;
  }

  close(): void {
    this.#parser.close();
  }
}
