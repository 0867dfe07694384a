import {
  FRAME_HEADER_BYTES,
  FrameType,
  MAX_CONTROL_PAYLOAD_BYTES,
  MAX_DATA_PAYLOAD_BYTES,
  PING_PAYLOAD_BYTES,
} from './constants.js';

/** What an OPEN frame says about the stream's user. */
export interface OpenMeta {
  /** The channel the stream belongs to, e.g. `/` or `/ssh`. */
  channel: string;
  /** The user's address as the tunnel saw it (`203.0.113.7`, `2001:db8::1`), or `''`. */
  remoteAddress: string;
  /** The user's port, or 0. */
  remotePort: number;
  /**
   * The user reached the tunnel over TLS: decrypted by the tunnel, or by a
   * trusted proxy in front of it that said so (an OPEN extension, §4.2).
   */
  tls?: boolean | undefined;
}

/** OPEN extension tags (after the port: u8 tag, u8 length, value). */
export enum OpenExtension {
  /** The user's connection was TLS; empty value. */
  Tls = 0x01,
}

/** A decoded frame other than DATA (DATA is delivered in pieces, see Decoder). */
export type ControlFrame =
  | { type: FrameType.Open; streamId: number; meta: OpenMeta }
  | { type: FrameType.Ack; streamId: number }
  | { type: FrameType.Fin; streamId: number }
  | { type: FrameType.Rst; streamId: number; code: number; reason: string }
  | { type: FrameType.Window; streamId: number; increment: number }
  | { type: FrameType.Ping; streamId: 0; opaque: Buffer }
  | { type: FrameType.Pong; streamId: 0; opaque: Buffer }
  | { type: FrameType.GoAway; streamId: 0; code: number; reason: string }
  | { type: FrameType.Auth; streamId: 0; fields: AuthFields }
  | { type: FrameType.Refuse; streamId: 0; refusal: Refusal };

/**
 * An AUTH payload: tag → value (docs/protocol.md §3.3). Tags a receiver
 * does not know are ignored, so later versions can add proofs.
 */
export type AuthFields = Map<AuthTag, Buffer>;

/** What the fields of an AUTH frame are. */
export enum AuthTag {
  /** Agent → tunnel, server role: the proof of the channel's key. */
  KeyProof = 0x01,
  /** Agent → tunnel, server role: the verifier client agents' tokens are checked against. */
  TokenVerifier = 0x02,
  /** Agent → tunnel, client role: the proof of the token. */
  TokenProof = 0x03,
  /** Tunnel → agent: the tunnel's proof that it knows the key. */
  KeySignature = 0x04,
  /** Tunnel → agent: the tunnel's proof that it holds the token's verifier. */
  TokenSignature = 0x05,
}

/** A refusal after the upgrade (REFUSE): what a refusal before it says in HTTP. */
export interface Refusal {
  /** The HTTP status the same refusal would have had before the upgrade. */
  status: number;
  /** Seconds to wait before trying again; 0: no advice. */
  retryAfterS: number;
  /** An `ERR_RHOST_*` code (ASCII). */
  code: string;
  /** One line for humans. */
  reason: string;
}

/** Any frame, DATA included; used by tests and the reference decoder. */
export type Frame = ControlFrame | { type: FrameType.Data; streamId: number; payload: Buffer };

const MAX_TEXT_BYTES = 255;

/** The one frame-header encoder: writes length, type and stream id at `buffer[0..9)`. */
export function writeHeader(buffer: Buffer, type: FrameType, streamId: number, length: number): void {
  buffer.writeUInt32BE(length, 0);
  buffer[4] = type;
  buffer.writeUInt32BE(streamId, 5);
}

/** A buffer for a whole frame with its header written; the payload goes at offset 9. */
export function allocFrame(type: FrameType, streamId: number, length: number): Buffer {
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + length);
  writeHeader(frame, type, streamId, length);
  return frame;
}

/** A 9-byte frame header on its own (its payload goes out separately, uncopied). */
export function encodeHeader(type: FrameType, streamId: number, length: number): Buffer {
  const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  writeHeader(header, type, streamId, length);
  return header;
}

function withHeader(type: FrameType, streamId: number, payload: Buffer): Buffer {
  const frame = allocFrame(type, streamId, payload.length);
  payload.copy(frame, FRAME_HEADER_BYTES);
  return frame;
}

/** Encodes AUTH fields: each is u8 tag, u8 length, value (at most 255 bytes). */
export function encodeAuthFields(fields: AuthFields): Buffer {
  const parts: Buffer[] = [];
  for (const [tag, value] of fields) {
    if (value.length > 255) throw new RangeError(`AUTH field ${tag} is longer than 255 bytes`);
    parts.push(Buffer.from([tag, value.length]), value);
  }
  return Buffer.concat(parts);
}

/** Encodes a REFUSE payload: u16 status, u32 retry-after (s), u8 code length, code, reason. */
export function encodeRefusal(refusal: Refusal): Buffer {
  const code = Buffer.from(refusal.code, 'latin1');
  if (code.length > 64) throw new RangeError('refusal code is longer than 64 bytes');
  const reason = Buffer.from(refusal.reason.replace(/[\r\n]+/g, ' '), 'utf8');
  const head = Buffer.allocUnsafe(7);
  head.writeUInt16BE(refusal.status, 0);
  head.writeUInt32BE(Math.min(refusal.retryAfterS, 0xffffffff) >>> 0, 2);
  head[6] = code.length;
  const room = MAX_CONTROL_PAYLOAD_BYTES - 7 - code.length;
  return Buffer.concat([head, code, reason.length > room ? truncateUtf8(reason, room) : reason]);
}

/** The longest prefix of `bytes` of at most `limit` bytes that ends on a UTF-8 boundary. */
function truncateUtf8(bytes: Buffer, limit: number): Buffer {
  let end = limit;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}

/** Truncates a reason to what fits in a control frame, on a UTF-8 boundary. */
function reasonBytes(reason: string): Buffer {
  const bytes = Buffer.from(reason, 'utf8');
  const limit = MAX_CONTROL_PAYLOAD_BYTES - 4;
  return bytes.length <= limit ? bytes : truncateUtf8(bytes, limit);
}

function codeAndReason(code: number, reason: string): Buffer {
  const text = reasonBytes(reason);
  const payload = Buffer.allocUnsafe(4 + text.length);
  payload.writeUInt32BE(code >>> 0, 0);
  text.copy(payload, 4);
  return payload;
}

function shortTextLength(value: string, what: string): number {
  const length = Buffer.byteLength(value, 'utf8');
  if (length > MAX_TEXT_BYTES) throw new RangeError(`${what} is longer than ${MAX_TEXT_BYTES} bytes`);
  return length;
}

/** Writes OPEN metadata at `offset` of `out`: u8 length + channel, u8 length + address, u16 port. */
function writeOpenMeta(out: Buffer, offset: number, meta: OpenMeta, channelLength: number, addressLength: number): void {
  out[offset++] = channelLength;
  offset += out.write(meta.channel, offset, channelLength, 'utf8');
  out[offset++] = addressLength;
  offset += out.write(meta.remoteAddress, offset, addressLength, 'utf8');
  out.writeUInt16BE(meta.remotePort & 0xffff, offset);
  if (meta.tls) {
    out[offset + 2] = OpenExtension.Tls;
    out[offset + 3] = 0;
  }
}

/** The bytes of OPEN metadata with channel and address of these lengths. */
const openMetaBytes = (meta: OpenMeta, c: number, a: number): number => 4 + c + a + (meta.tls ? 2 : 0);

/** Encodes OPEN metadata: u8 length + channel, u8 length + address, u16 port, extensions. */
export function encodeOpenMeta(meta: OpenMeta): Buffer {
  const c = shortTextLength(meta.channel, 'channel');
  const a = shortTextLength(meta.remoteAddress, 'remote address');
  const payload = Buffer.allocUnsafe(openMetaBytes(meta, c, a));
  writeOpenMeta(payload, 0, meta, c, a);
  return payload;
}

/** A whole OPEN frame, written straight into one buffer: one per user, so no intermediate copies. */
function encodeOpen(streamId: number, meta: OpenMeta): Buffer {
  const c = shortTextLength(meta.channel, 'channel');
  const a = shortTextLength(meta.remoteAddress, 'remote address');
  const frame = allocFrame(FrameType.Open, streamId, openMetaBytes(meta, c, a));
  writeOpenMeta(frame, FRAME_HEADER_BYTES, meta, c, a);
  return frame;
}

/**
 * Encodes one control frame, header and payload in one buffer. DATA is never
 * encoded here: its header goes out from {@link encodeHeader} and its payload
 * is written as-is, without a copy.
 */
export function encodeControl(frame: ControlFrame): Buffer {
  switch (frame.type) {
    case FrameType.Open:
      return encodeOpen(frame.streamId, frame.meta);
    case FrameType.Ack:
    case FrameType.Fin:
      return encodeHeader(frame.type, frame.streamId, 0);
    case FrameType.Rst:
    case FrameType.GoAway:
      return withHeader(frame.type, frame.streamId, codeAndReason(frame.code, frame.reason));
    case FrameType.Window: {
      const out = allocFrame(FrameType.Window, frame.streamId, 4);
      out.writeUInt32BE(frame.increment, FRAME_HEADER_BYTES);
      return out;
    }
    case FrameType.Ping:
    case FrameType.Pong:
      if (frame.opaque.length !== PING_PAYLOAD_BYTES) throw new RangeError('ping payload must be 8 bytes');
      return withHeader(frame.type, 0, frame.opaque);
    case FrameType.Auth:
      return withHeader(frame.type, 0, encodeAuthFields(frame.fields));
    case FrameType.Refuse:
      return withHeader(frame.type, 0, encodeRefusal(frame.refusal));
  }
}

/** Encodes any frame into one buffer (DATA copied). For tests and tools, not the hot path. */
export function encodeFrame(frame: Frame): Buffer {
  if (frame.type !== FrameType.Data) return encodeControl(frame);
  if (frame.payload.length > MAX_DATA_PAYLOAD_BYTES) throw new RangeError('DATA payload too large');
  return withHeader(FrameType.Data, frame.streamId, frame.payload);
}
