import { FrameType, ProtocolError, WireError, type Frame } from '../../src/protocol/index.js';

/**
 * A deliberately simple second decoder, used as an oracle: it needs the whole
 * input at once, reads frame by frame with no state machine, and restates
 * every rule of docs/protocol.md on its own rather than sharing code with
 * src/protocol/decoder.ts.
 */
const RULES: Record<number, { stream: 'zero' | 'nonzero'; min: number; max: number }> = {
  0x0: { stream: 'nonzero', min: 0, max: 262144 },
  0x1: { stream: 'nonzero', min: 4, max: 1024 },
  0x2: { stream: 'nonzero', min: 0, max: 0 },
  0x3: { stream: 'nonzero', min: 0, max: 0 },
  0x4: { stream: 'nonzero', min: 4, max: 1024 },
  0x5: { stream: 'nonzero', min: 4, max: 4 },
  0x6: { stream: 'zero', min: 8, max: 8 },
  0x7: { stream: 'zero', min: 8, max: 8 },
  0x8: { stream: 'zero', min: 4, max: 1024 },
  0x9: { stream: 'zero', min: 0, max: 1024 },
  0xa: { stream: 'zero', min: 7, max: 1024 },
};

function fail(wire: WireError, message: string): ProtocolError {
  return new ProtocolError(wire === WireError.FrameSizeError ? 'ERR_RHOST_FRAME_SIZE' : 'ERR_RHOST_PROTOCOL', wire, message);
}

export function decodeNaive(bytes: Buffer): { frames: Frame[]; error: ProtocolError | null } {
  const frames: Frame[] = [];
  let at = 0;
  while (bytes.length - at >= 9) {
    const length = bytes.readUInt32BE(at);
    const type = bytes[at + 4]!;
    const streamId = bytes.readUInt32BE(at + 5);
    const rule = RULES[type];
    if (rule) {
      if (rule.stream === 'zero' && streamId !== 0) return { frames, error: fail(WireError.ProtocolError, 'stream must be 0') };
      if (rule.stream === 'nonzero' && streamId === 0) return { frames, error: fail(WireError.ProtocolError, 'stream must not be 0') };
      if (length > rule.max || length < rule.min) return { frames, error: fail(WireError.FrameSizeError, 'bad length') };
    } else if (length > 1024) {
      return { frames, error: fail(WireError.FrameSizeError, 'bad length') };
    }
    if (bytes.length - at - 9 < length) break;
    const p = bytes.subarray(at + 9, at + 9 + length);
    at += 9 + length;
    switch (type) {
      case FrameType.Data:
        frames.push({ type, streamId, payload: Buffer.from(p) });
        break;
      case FrameType.Open: {
        const c = p[0]!;
        if (1 + c + 1 > p.length) return { frames, error: fail(WireError.FrameSizeError, 'channel') };
        const a = p[1 + c]!;
        if (1 + c + 1 + a + 2 > p.length) return { frames, error: fail(WireError.FrameSizeError, 'address') };
        frames.push({
          type,
          streamId,
          meta: {
            channel: p.toString('utf8', 1, 1 + c),
            remoteAddress: p.toString('utf8', 2 + c, 2 + c + a),
            remotePort: p.readUInt16BE(2 + c + a),
          },
        });
        break;
      }
      case FrameType.Ack:
      case FrameType.Fin:
        frames.push({ type, streamId });
        break;
      case FrameType.Rst:
        frames.push({ type, streamId, code: p.readUInt32BE(0), reason: p.toString('utf8', 4) });
        break;
      case FrameType.GoAway:
        frames.push({ type, streamId: 0, code: p.readUInt32BE(0), reason: p.toString('utf8', 4) });
        break;
      case FrameType.Window:
        if (p.readUInt32BE(0) === 0) return { frames, error: fail(WireError.ProtocolError, 'zero window') };
        frames.push({ type, streamId, increment: p.readUInt32BE(0) });
        break;
      case FrameType.Ping:
      case FrameType.Pong:
        frames.push({ type, streamId: 0, opaque: Buffer.from(p) });
        break;
      case FrameType.Auth: {
        const fields = new Map<number, Buffer>();
        for (let i = 0; i < p.length; ) {
          if (i + 2 > p.length || i + 2 + p[i + 1]! > p.length) return { frames, error: fail(WireError.FrameSizeError, 'auth field') };
          if (fields.has(p[i]!)) return { frames, error: fail(WireError.ProtocolError, 'auth field twice') };
          fields.set(p[i]!, Buffer.from(p.subarray(i + 2, i + 2 + p[i + 1]!)));
          i += 2 + p[i + 1]!;
        }
        frames.push({ type, streamId: 0, fields });
        break;
      }
      case FrameType.Refuse: {
        const n = p[6]!;
        if (7 + n > p.length) return { frames, error: fail(WireError.FrameSizeError, 'refuse code') };
        frames.push({ type, streamId: 0, refusal: { status: p.readUInt16BE(0), retryAfterS: p.readUInt32BE(2), code: p.toString('latin1', 7, 7 + n), reason: p.toString('utf8', 7 + n) } });
        break;
      }
      default:
        break; // unknown types are skipped
    }
  }
  return { frames, error: null };
}
