import {
  FRAME_HEADER_BYTES,
  FrameType,
  MAX_CONTROL_PAYLOAD_BYTES,
  MAX_DATA_PAYLOAD_BYTES,
  PING_PAYLOAD_BYTES,
  WireError,
} from './constants.js';

/** What an OPEN frame says about the stream's user. */
export interface OpenMeta {
  /** The channel the stream belongs to, e.g. `/` or `/ssh`. */
  channel: string;
  /** The user's address as the tunnel saw it (`203.0.113.7`, `2001:db8::1`), or `''`. */
  remoteAddress: string;
  /** The user's port, or 0. */
  remotePort: number;
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
  | { type: FrameType.GoAway; streamId: 0; code: number; reason: string };

/** Any frame, DATA included; used by tests and the reference decoder. */
export type Frame = ControlFrame | { type: FrameType.Data; streamId: number; payload: Buffer };

const MAX_TEXT_BYTES = 255;

/** Writes a 9-byte frame header into a fresh buffer. */
export function encodeHeader(type: FrameType, streamId: number, length: number): Buffer {
  const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  header.writeUInt32BE(length, 0);
  header[4] = type;
  header.writeUInt32BE(streamId, 5);
  return header;
}

function withHeader(type: FrameType, streamId: number, payload: Buffer): Buffer {
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length);
  frame.writeUInt32BE(payload.length, 0);
  frame[4] = type;
  frame.writeUInt32BE(streamId, 5);
  payload.copy(frame, FRAME_HEADER_BYTES);
  return frame;
}

/** Truncates a reason to what fits in a control frame, on a UTF-8 boundary. */
function reasonBytes(reason: string): Buffer {
  const bytes = Buffer.from(reason, 'utf8');
  const limit = MAX_CONTROL_PAYLOAD_BYTES - 4;
  if (bytes.length <= limit) return bytes;
  let end = limit;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}

function codeAndReason(code: number, reason: string): Buffer {
  const text = reasonBytes(reason);
  const payload = Buffer.allocUnsafe(4 + text.length);
  payload.writeUInt32BE(code >>> 0, 0);
  text.copy(payload, 4);
  return payload;
}

function shortText(value: string, what: string): Buffer {
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.length > MAX_TEXT_BYTES) throw new RangeError(`${what} is longer than ${MAX_TEXT_BYTES} bytes`);
  return bytes;
}

/** Encodes OPEN metadata: u8 length + channel, u8 length + address, u16 port. */
export function encodeOpenMeta(meta: OpenMeta): Buffer {
  const channel = shortText(meta.channel, 'channel');
  const address = shortText(meta.remoteAddress, 'remote address');
  const payload = Buffer.allocUnsafe(1 + channel.length + 1 + address.length + 2);
  let offset = 0;
  payload[offset++] = channel.length;
  offset += channel.copy(payload, offset);
  payload[offset++] = address.length;
  offset += address.copy(payload, offset);
  payload.writeUInt16BE(meta.remotePort & 0xffff, offset);
  return payload;
}

/**
 * Encodes one control frame, header and payload in one buffer. DATA is never
 * encoded here: its header goes out from {@link encodeHeader} and its payload
 * is written as-is, without a copy.
 */
export function encodeControl(frame: ControlFrame): Buffer {
  switch (frame.type) {
    case FrameType.Open:
      return withHeader(frame.type, frame.streamId, encodeOpenMeta(frame.meta));
    case FrameType.Ack:
    case FrameType.Fin:
      return encodeHeader(frame.type, frame.streamId, 0);
    case FrameType.Rst:
    case FrameType.GoAway:
      return withHeader(frame.type, frame.streamId, codeAndReason(frame.code, frame.reason));
    case FrameType.Window: {
      const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES + 4);
      out.writeUInt32BE(4, 0);
      out[4] = FrameType.Window;
      out.writeUInt32BE(frame.streamId, 5);
      out.writeUInt32BE(frame.increment, 9);
      return out;
    }
    case FrameType.Ping:
    case FrameType.Pong:
      if (frame.opaque.length !== PING_PAYLOAD_BYTES) throw new RangeError('ping payload must be 8 bytes');
      return withHeader(frame.type, 0, frame.opaque);
  }
}

/** Encodes any frame into one buffer (DATA copied). For tests and tools, not the hot path. */
export function encodeFrame(frame: Frame): Buffer {
  if (frame.type !== FrameType.Data) return encodeControl(frame);
  if (frame.payload.length > MAX_DATA_PAYLOAD_BYTES) throw new RangeError('DATA payload too large');
  return withHeader(FrameType.Data, frame.streamId, frame.payload);
}

/** Name of a wire error code for logs: `REFUSED_STREAM (0x6)`. */
export function wireErrorName(code: number): string {
  const name = WireError[code];
  const snake = name ? name.replace(/([a-z])([A-Z])/g, '$1_$2').toUpperCase() : 'UNKNOWN';
  return `${snake} (0x${code.toString(16)})`;
}
