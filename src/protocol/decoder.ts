import {
  FRAME_HEADER_BYTES,
  FrameType,
  MAX_CONTROL_PAYLOAD_BYTES,
  MAX_DATA_PAYLOAD_BYTES,
  PING_PAYLOAD_BYTES,
  WireError,
} from './constants.js';
import { ProtocolError } from './errors.js';
import { OpenExtension, type AuthFields, type ControlFrame, type OpenMeta, type Refusal } from './frame.js';

/** Where a {@link Decoder} delivers what it reads. */
export interface FrameHandler {
  /**
   * A DATA header was read; its payload follows as `data` calls. Called before
   * any payload byte is buffered, so the handler can check the length against
   * the stream's window and throw a ProtocolError.
   */
  dataHeader(streamId: number, length: number): void;
  /** A piece of the current DATA payload. Pieces of one frame arrive in order. */
  data(streamId: number, piece: Buffer): void;
  /** A complete, validated control frame. */
  control(frame: ControlFrame): void;
}

const enum State {
  Header,
  Data,
  Control,
}

/** A DATA piece smaller than this share of the buffer under it is copied, so it cannot pin that buffer. */
const PIN_RATIO = 4;

function violation(message: string, wire = WireError.ProtocolError): ProtocolError {
  return wire === WireError.FrameSizeError
    ? new ProtocolError('ERR_RHOST_FRAME_SIZE', wire, message)
    : new ProtocolError('ERR_RHOST_PROTOCOL', wire, message);
}

/** Checks a header before its payload is read; throws on any violation. */
export function checkHeader(type: number, streamId: number, length: number): void {
  const sessionFrame = type >= FrameType.Ping && type <= FrameType.Refuse;
  if (type <= FrameType.Refuse) {
    if (sessionFrame && streamId !== 0) throw violation(`${FrameType[type]} on stream ${streamId}; it must use stream 0`);
    if (!sessionFrame && streamId === 0) throw violation(`${FrameType[type]} on stream 0`);
  }
  const limit = type === FrameType.Data ? MAX_DATA_PAYLOAD_BYTES : MAX_CONTROL_PAYLOAD_BYTES;
  if (length > limit) {
    throw violation(`frame of type ${type} declares ${length} bytes; the limit is ${limit}`, WireError.FrameSizeError);
  }
  let exact = -1;
  let min = 0;
  switch (type) {
    case FrameType.Ack:
    case FrameType.Fin:
      exact = 0;
      break;
    case FrameType.Window:
      exact = 4;
      break;
    case FrameType.Ping:
    case FrameType.Pong:
      exact = PING_PAYLOAD_BYTES;
      break;
    case FrameType.Open:
      min = 4;
      break;
    case FrameType.Rst:
    case FrameType.GoAway:
      min = 4;
      break;
    case FrameType.Refuse:
      min = 7;
      break;
  }
  if ((exact >= 0 && length !== exact) || length < min) {
    const want = exact >= 0 ? `exactly ${exact}` : `at least ${min}`;
    throw violation(`${FrameType[type]} payload is ${length} bytes; it must be ${want}`, WireError.FrameSizeError);
  }
}

/**
 * Parses OPEN metadata and its extensions (u8 tag, u8 length, value after
 * the port); unknown tags, and bytes too few to be an extension, are ignored.
 */
export function decodeOpenMeta(payload: Buffer): OpenMeta {
  let offset = 0;
  const channelLength = payload[offset++]!;
  if (offset + channelLength + 1 > payload.length) throw violation('OPEN channel overruns the payload', WireError.FrameSizeError);
  const channel = payload.toString('utf8', offset, offset + channelLength);
  offset += channelLength;
  const addressLength = payload[offset++]!;
  if (offset + addressLength + 2 > payload.length) throw violation('OPEN address overruns the payload', WireError.FrameSizeError);
  const remoteAddress = payload.toString('utf8', offset, offset + addressLength);
  offset += addressLength;
  const meta: OpenMeta = { channel, remoteAddress, remotePort: payload.readUInt16BE(offset) };
  for (offset += 2; offset + 2 <= payload.length; offset += 2 + payload[offset + 1]!) {
    if (payload[offset] === OpenExtension.Tls) meta.tls = true;
  }
  return meta;
}

/** Parses AUTH fields: u8 tag, u8 length, value, repeated; a tag may appear once. */
export function decodeAuthFields(payload: Buffer): AuthFields {
  const fields: AuthFields = new Map();
  let offset = 0;
  while (offset < payload.length) {
    if (offset + 2 > payload.length) throw violation('AUTH field header overruns the payload', WireError.FrameSizeError);
    const tag = payload[offset]!;
    const length = payload[offset + 1]!;
    offset += 2;
    if (offset + length > payload.length) throw violation(`AUTH field ${tag} overruns the payload`, WireError.FrameSizeError);
    if (fields.has(tag)) throw violation(`AUTH field ${tag} appears twice`);
    fields.set(tag, Buffer.from(payload.subarray(offset, offset + length)));
    offset += length;
  }
  return fields;
}

/** Parses a REFUSE payload (its header guaranteed at least 7 bytes). */
export function decodeRefusal(payload: Buffer): Refusal {
  const codeLength = payload[6]!;
  if (7 + codeLength > payload.length) throw violation('REFUSE code overruns the payload', WireError.FrameSizeError);
  return {
    status: payload.readUInt16BE(0),
    retryAfterS: payload.readUInt32BE(2),
    code: payload.toString('latin1', 7, 7 + codeLength),
    reason: payload.toString('utf8', 7 + codeLength),
  };
}

/** Builds the typed frame for a control payload whose header already passed {@link checkHeader}. */
export function parseControl(type: number, streamId: number, payload: Buffer): ControlFrame | null {
  switch (type) {
    case FrameType.Open:
      return { type, streamId, meta: decodeOpenMeta(payload) };
    case FrameType.Ack:
    case FrameType.Fin:
      return { type, streamId };
    case FrameType.Rst:
      return { type, streamId, code: payload.readUInt32BE(0), reason: payload.toString('utf8', 4) };
    case FrameType.GoAway:
      return { type, streamId: 0, code: payload.readUInt32BE(0), reason: payload.toString('utf8', 4) };
    case FrameType.Window: {
      const increment = payload.readUInt32BE(0);
      if (increment === 0) throw violation(`WINDOW of 0 on stream ${streamId}`);
      return { type, streamId, increment };
    }
    case FrameType.Ping:
    case FrameType.Pong:
      return { type, streamId: 0, opaque: Buffer.from(payload) };
    case FrameType.Auth:
      return { type, streamId: 0, fields: decodeAuthFields(payload) };
    case FrameType.Refuse:
      return { type, streamId: 0, refusal: decodeRefusal(payload) };
    default:
      return null; // unknown type: skipped, so later versions can add optional frames
  }
}

/**
 * Incremental frame decoder. Feed it chunks of any size; it calls its handler
 * for every frame. It buffers at most one header (9 bytes) or one control
 * payload (1 KiB): DATA payloads are handed on in pieces as they arrive, after
 * their header was checked. After the first violation it throws the same
 * ProtocolError on every write.
 */
export class Decoder {
  readonly #handler: FrameHandler;
  #state = State.Header;
  readonly #header = Buffer.alloc(FRAME_HEADER_BYTES);
  #headerFill = 0;
  #type = 0;
  #streamId = 0;
  #remaining = 0;
  #control: Buffer | null = null;
  #controlFill = 0;
  #error: Error | null = null;

  constructor(handler: FrameHandler) {
    this.#handler = handler;
  }

  /** Bytes of the current frame still to come; 0 between frames. */
  get pendingBytes(): number {
    return this.#state === State.Header ? this.#headerFill : this.#remaining;
  }

  /** Decodes `chunk`. Throws a ProtocolError (or whatever the handler threw) and stays failed. */
  write(chunk: Buffer): void {
    if (this.#error) throw this.#error;
    try {
      this.#consume(chunk);
    } catch (err) {
      this.#error = err as Error;
      throw err;
    }
  }

  #consume(chunk: Buffer): void {
    let offset = 0;
    const end = chunk.length;
    while (offset < end) {
      if (this.#state === State.Header) {
        if (this.#headerFill === 0 && end - offset >= FRAME_HEADER_BYTES) {
          this.#startFrame(chunk.readUInt32BE(offset), chunk[offset + 4]!, chunk.readUInt32BE(offset + 5));
          offset += FRAME_HEADER_BYTES;
        } else {
          const n = Math.min(FRAME_HEADER_BYTES - this.#headerFill, end - offset);
          chunk.copy(this.#header, this.#headerFill, offset, offset + n);
          this.#headerFill += n;
          offset += n;
          if (this.#headerFill < FRAME_HEADER_BYTES) return;
          this.#headerFill = 0;
          const h = this.#header;
          this.#startFrame(h.readUInt32BE(0), h[4]!, h.readUInt32BE(5));
        }
      } else if (this.#state === State.Data) {
        const n = Math.min(this.#remaining, end - offset);
        let piece = chunk.subarray(offset, offset + n);
        if (n * PIN_RATIO < piece.buffer.byteLength) piece = Buffer.from(piece);
        offset += n;
        this.#remaining -= n;
        if (this.#remaining === 0) this.#state = State.Header;
        this.#handler.data(this.#streamId, piece);
      } else {
        const length = this.#remaining;
        if (this.#controlFill === 0 && end - offset >= length) {
          const payload = chunk.subarray(offset, offset + length);
          offset += length;
          this.#finishControl(payload);
        } else {
          this.#control ??= Buffer.allocUnsafe(length);
          const n = Math.min(length - this.#controlFill, end - offset);
          chunk.copy(this.#control, this.#controlFill, offset, offset + n);
          this.#controlFill += n;
          offset += n;
          if (this.#controlFill < length) return;
          const payload = this.#control;
          this.#control = null;
          this.#controlFill = 0;
          this.#finishControl(payload);
        }
      }
    }
  }

  #startFrame(length: number, type: number, streamId: number): void {
    checkHeader(type, streamId, length);
    this.#type = type;
    this.#streamId = streamId;
    if (type === FrameType.Data) {
      this.#handler.dataHeader(streamId, length);
      if (length > 0) {
        this.#remaining = length;
        this.#state = State.Data;
      }
    } else if (length === 0) {
      this.#finishControl(EMPTY);
    } else {
      this.#remaining = length;
      this.#state = State.Control;
    }
  }

  #finishControl(payload: Buffer): void {
    this.#state = State.Header;
    this.#remaining = 0;
    const frame = parseControl(this.#type, this.#streamId, payload);
    if (frame) this.#handler.control(frame);
  }
}

const EMPTY = Buffer.alloc(0);

/**
 * Takes one whole control frame off the front of `bytes`, for the exchange
 * before a session (AUTH, REFUSE), when no Decoder runs yet. Returns null
 * while more bytes are needed; throws a ProtocolError for a bad header, a
 * DATA frame, or a frame of a type it does not know.
 */
export function takeControlFrame(bytes: Buffer): { frame: ControlFrame; rest: Buffer } | null {
  if (bytes.length < FRAME_HEADER_BYTES) return null;
  const length = bytes.readUInt32BE(0);
  const type = bytes[4]!;
  const streamId = bytes.readUInt32BE(5);
  if (type === FrameType.Data) throw violation('DATA before the session started');
  checkHeader(type, streamId, length);
  if (bytes.length < FRAME_HEADER_BYTES + length) return null;
  const frame = parseControl(type, streamId, bytes.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + length));
  if (!frame) throw violation(`a frame of unknown type ${type} before the session started`);
  return { frame, rest: bytes.subarray(FRAME_HEADER_BYTES + length) };
}
