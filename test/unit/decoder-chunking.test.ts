import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { encodeFrame, FrameType, WireError, type Frame } from '../../src/protocol/index.js';
import { decodeChunks, plain, splitAt } from '../helpers/frames.js';
import { decodeNaive } from '../helpers/naive-decoder.js';

const SAMPLE: Frame[] = [
  { type: FrameType.Open, streamId: 1, meta: { channel: '/db', remoteAddress: '2001:db8::1', remotePort: 5432 } },
  { type: FrameType.Data, streamId: 1, payload: randomBytes(300) },
  { type: FrameType.Ping, streamId: 0, opaque: randomBytes(8) },
  { type: FrameType.Data, streamId: 1, payload: Buffer.alloc(0) },
  { type: FrameType.Window, streamId: 1, increment: 1 },
  { type: FrameType.Fin, streamId: 1 },
  { type: FrameType.Rst, streamId: 3, code: WireError.Cancel, reason: 'user left' },
  { type: FrameType.GoAway, streamId: 0, code: WireError.NoError, reason: '' },
];
const WIRE = Buffer.concat(SAMPLE.map(encodeFrame));

describe('decoder and chunking', () => {
  test('decodes the sample when split once at every offset', () => {
    for (let i = 0; i <= WIRE.length; i++) {
      const out = decodeChunks(splitAt(WIRE, [i]));
      assert.equal(out.error, null, `split at ${i}`);
      assert.deepEqual(plain(out.frames), plain(SAMPLE), `split at ${i}`);
    }
  });

  test('decodes the sample fed one byte at a time', () => {
    const chunks = [...WIRE].map((b) => Buffer.from([b]));
    assert.deepEqual(plain(decodeChunks(chunks).frames), plain(SAMPLE));
  });

  test('decodes the sample split twice at every pair of offsets', () => {
    for (let i = 0; i <= WIRE.length; i += 3) {
      for (let j = i; j <= WIRE.length; j += 5) {
        assert.deepEqual(plain(decodeChunks(splitAt(WIRE, [i, j])).frames), plain(SAMPLE), `split at ${i},${j}`);
      }
    }
  });

  test('agrees with the naive oracle on every prefix', () => {
    for (let i = 0; i <= WIRE.length; i++) {
      const prefix = WIRE.subarray(0, i);
      const real = decodeChunks([prefix]);
      const oracle = decodeNaive(prefix);
      assert.deepEqual(plain(real.frames), plain(oracle.frames), `prefix ${i}`);
      assert.equal(real.error?.wireCode, oracle.error?.wireCode, `prefix ${i}`);
    }
  });

  test('delivers a 256 KiB DATA payload in pieces without buffering it', () => {
    const payload = randomBytes(256 * 1024);
    const wire = encodeFrame({ type: FrameType.Data, streamId: 9, payload });
    const out = decodeChunks(splitAt(wire, [5, 9, 1000, 65536, 200000]));
    assert.equal(out.frames.length, 1);
    assert.ok(payload.equals((out.frames[0] as { payload: Buffer }).payload));
  });

  test('round-trips every frame type through encode and decode', () => {
    for (const frame of SAMPLE) {
      assert.deepEqual(plain(decodeChunks([encodeFrame(frame)]).frames), plain([frame]));
    }
  });

  test('truncates a long reason to 1 KiB on a UTF-8 boundary', () => {
    const reason = 'é'.repeat(1000);
    const wire = encodeFrame({ type: FrameType.Rst, streamId: 1, code: 2, reason });
    assert.ok(wire.length <= 9 + 1024);
    const [frame] = decodeChunks([wire]).frames as Array<{ reason: string }>;
    assert.ok(reason.startsWith(frame!.reason) && frame!.reason.length > 400);
  });
});
