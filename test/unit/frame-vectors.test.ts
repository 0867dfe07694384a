import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { AuthTag, encodeFrame, FrameType, WireError, type Frame } from '../../src/protocol/index.js';
import { decodeChunks, plain } from '../helpers/frames.js';

/** Byte-exact vectors; docs/protocol.md lists the same ones. */
const VECTORS: Array<{ name: string; frame: Frame; hex: string }> = [
  { name: 'DATA "hi" on stream 3', frame: { type: FrameType.Data, streamId: 3, payload: Buffer.from('hi') }, hex: '00000002 00 00000003 6869' },
  {
    name: 'OPEN stream 2 for /ssh from 203.0.113.7:51234',
    frame: { type: FrameType.Open, streamId: 2, meta: { channel: '/ssh', remoteAddress: '203.0.113.7', remotePort: 51234 } },
    hex: '00000013 01 00000002 04 2f737368 0b 3230332e302e3131332e37 c822',
  },
  { name: 'ACK stream 2', frame: { type: FrameType.Ack, streamId: 2 }, hex: '00000000 02 00000002' },
  { name: 'FIN stream 7', frame: { type: FrameType.Fin, streamId: 7 }, hex: '00000000 03 00000007' },
  {
    name: 'RST stream 5 CONNECT_REFUSED "down"',
    frame: { type: FrameType.Rst, streamId: 5, code: WireError.ConnectRefused, reason: 'down' },
    hex: '00000008 04 00000005 0000000a 646f776e',
  },
  { name: 'WINDOW stream 1 +65536', frame: { type: FrameType.Window, streamId: 1, increment: 65536 }, hex: '00000004 05 00000001 00010000' },
  {
    name: 'PING',
    frame: { type: FrameType.Ping, streamId: 0, opaque: Buffer.from('0102030405060708', 'hex') },
    hex: '00000008 06 00000000 0102030405060708',
  },
  {
    name: 'PONG',
    frame: { type: FrameType.Pong, streamId: 0, opaque: Buffer.from('0102030405060708', 'hex') },
    hex: '00000008 07 00000000 0102030405060708',
  },
  {
    name: 'GOAWAY NO_ERROR "bye"',
    frame: { type: FrameType.GoAway, streamId: 0, code: WireError.NoError, reason: 'bye' },
    hex: '00000007 08 00000000 00000000 627965',
  },
  {
    name: 'AUTH with a 4-byte KeyProof field (real ones are 32)',
    frame: { type: FrameType.Auth, streamId: 0, fields: new Map([[AuthTag.KeyProof, Buffer.from('01020304', 'hex')]]) },
    hex: '00000006 09 00000000 01 04 01020304',
  },
  {
    name: 'REFUSE 403 ERR_RHOST_BAD_KEY "no"',
    frame: { type: FrameType.Refuse, streamId: 0, refusal: { status: 403, retryAfterS: 0, code: 'ERR_RHOST_BAD_KEY', reason: 'no' } },
    hex: '0000001a 0a 00000000 0193 00000000 11 4552525f52484f53545f4241445f4b4559 6e6f',
  },
];

const bytes = (hex: string): Buffer => Buffer.from(hex.replace(/\s+/g, ''), 'hex');

describe('frame hex vectors', () => {
  for (const v of VECTORS) {
    test(`encodes ${v.name}`, () => {
      assert.equal(encodeFrame(v.frame).toString('hex'), v.hex.replace(/\s+/g, ''));
    });
    test(`decodes ${v.name}`, () => {
      const out = decodeChunks([bytes(v.hex)]);
      assert.equal(out.error, null);
      assert.deepEqual(plain(out.frames), plain([v.frame]));
    });
  }
});

/** Inputs that must end the session, with the wire code the GOAWAY carries. */
const VIOLATIONS: Array<{ name: string; hex: string; wire: WireError }> = [
  { name: 'DATA on stream 0', hex: '00000001 00 00000000 ff', wire: WireError.ProtocolError },
  { name: 'DATA longer than 256 KiB', hex: '00040001 00 00000001', wire: WireError.FrameSizeError },
  { name: 'PING on a stream', hex: '00000008 06 00000001 0000000000000000', wire: WireError.ProtocolError },
  { name: 'GOAWAY on a stream', hex: '00000004 08 00000003 00000000', wire: WireError.ProtocolError },
  { name: 'PING of 7 bytes', hex: '00000007 06 00000000 00000000000000', wire: WireError.FrameSizeError },
  { name: 'WINDOW of 5 bytes', hex: '00000005 05 00000001 0000000001', wire: WireError.FrameSizeError },
  { name: 'WINDOW of 0', hex: '00000004 05 00000001 00000000', wire: WireError.ProtocolError },
  { name: 'FIN with a payload', hex: '00000001 03 00000001 00', wire: WireError.FrameSizeError },
  { name: 'RST without a code', hex: '00000002 04 00000001 0000', wire: WireError.FrameSizeError },
  { name: 'OPEN whose channel overruns', hex: '00000004 01 00000002 09 2f 00 00', wire: WireError.FrameSizeError },
  { name: 'OPEN whose address overruns', hex: '00000005 01 00000002 01 2f 05 0000', wire: WireError.FrameSizeError },
  { name: 'control frame over 1 KiB', hex: '00000401 04 00000001', wire: WireError.FrameSizeError },
  { name: 'unknown type over 1 KiB', hex: '00000401 7f 00000001', wire: WireError.FrameSizeError },
  { name: 'AUTH on a stream', hex: '00000000 09 00000001', wire: WireError.ProtocolError },
  { name: 'AUTH whose field overruns', hex: '00000003 09 00000000 01 05 00', wire: WireError.FrameSizeError },
  { name: 'AUTH with a field twice', hex: '00000004 09 00000000 01 00 01 00', wire: WireError.ProtocolError },
  { name: 'REFUSE shorter than 7 bytes', hex: '00000006 0a 00000000 019300000000', wire: WireError.FrameSizeError },
  { name: 'REFUSE whose code overruns', hex: '00000008 0a 00000000 0193 00000000 05 41', wire: WireError.FrameSizeError },
];

describe('protocol violations', () => {
  for (const v of VIOLATIONS) {
    test(`rejects ${v.name}`, () => {
      const out = decodeChunks([bytes(v.hex)]);
      assert.ok(out.error, 'expected a ProtocolError');
      assert.equal(out.error.wireCode, v.wire);
    });
  }

  test('skips an unknown frame type and decodes what follows', () => {
    const out = decodeChunks([bytes('00000003 7f 00000009 aabbcc 00000000 03 00000007')]);
    assert.equal(out.error, null);
    assert.deepEqual(plain(out.frames), plain([{ type: FrameType.Fin, streamId: 7 }]));
  });

  test('ignores bytes after the OPEN metadata (reserved for extensions)', () => {
    const out = decodeChunks([bytes('00000007 01 00000002 01 2f 00 0016 beef 00')]);
    assert.equal(out.error, null);
    assert.deepEqual(plain(out.frames), plain([{ type: FrameType.Open, streamId: 2, meta: { channel: '/', remoteAddress: '', remotePort: 22 } }]));
  });

  test('stays failed after the first violation', () => {
    const out = decodeChunks([bytes('00000001 00 00000000 ff'), bytes('00000000 03 00000007')]);
    assert.ok(out.error);
    assert.equal(out.frames.length, 0);
  });
});
