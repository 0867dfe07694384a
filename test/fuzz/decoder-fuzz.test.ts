import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Decoder, encodeFrame, FrameType, ProtocolError, type Frame } from '../../src/protocol/index.js';
import { decodeChunks, plain, splitAt } from '../helpers/frames.js';
import { decodeNaive } from '../helpers/naive-decoder.js';

/** Time box per property, so `npm test` stays quick; FUZZ_RUNS raises it for long runs. */
const RUNS = Number(process.env.FUZZ_RUNS ?? 300);

const frameArb: fc.Arbitrary<Frame> = fc.oneof(
  fc.record({ type: fc.constant(FrameType.Data as const), streamId: fc.integer({ min: 1, max: 2 ** 32 - 1 }), payload: fc.uint8Array({ maxLength: 3000 }).map((a) => Buffer.from(a)) }),
  fc.record({
    type: fc.constant(FrameType.Open as const),
    streamId: fc.integer({ min: 1, max: 1000 }),
    meta: fc.record({ channel: fc.string({ maxLength: 40 }), remoteAddress: fc.string({ maxLength: 40 }), remotePort: fc.integer({ min: 0, max: 65535 }) }),
  }),
  fc.record({ type: fc.constantFrom(FrameType.Ack as const, FrameType.Fin as const), streamId: fc.integer({ min: 1, max: 1000 }) }) as fc.Arbitrary<Frame>,
  fc.record({ type: fc.constant(FrameType.Rst as const), streamId: fc.integer({ min: 1, max: 1000 }), code: fc.integer({ min: 0, max: 20 }), reason: fc.string({ maxLength: 50 }) }),
  fc.record({ type: fc.constant(FrameType.Window as const), streamId: fc.integer({ min: 1, max: 1000 }), increment: fc.integer({ min: 1, max: 2 ** 31 - 1 }) }),
  fc.record({ type: fc.constantFrom(FrameType.Ping as const, FrameType.Pong as const), streamId: fc.constant(0 as const), opaque: fc.uint8Array({ minLength: 8, maxLength: 8 }).map((a) => Buffer.from(a)) }) as fc.Arbitrary<Frame>,
  fc.record({ type: fc.constant(FrameType.GoAway as const), streamId: fc.constant(0 as const), code: fc.integer({ min: 0, max: 20 }), reason: fc.string({ maxLength: 50 }) }),
);

/** Feeds bytes to a decoder; returns normally or with a ProtocolError, never anything else. */
function feed(chunks: Buffer[]): void {
  const decoder = new Decoder({ dataHeader() {}, data() {}, control() {} });
  for (const chunk of chunks) {
    try {
      decoder.write(chunk);
    } catch (err) {
      assert.ok(err instanceof ProtocolError, `unexpected ${String(err)}`);
      return;
    }
    assert.ok(decoder.pendingBytes <= 256 * 1024, 'decoder holds a bounded amount');
  }
}

describe('decoder properties', () => {
  test('random bytes yield frames or a ProtocolError, never another throw', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 4096 }), fc.array(fc.nat(4096), { maxLength: 8 }), (bytes, cuts) => {
        feed(splitAt(Buffer.from(bytes), cuts));
      }),
      { numRuns: RUNS * 3 },
    );
  });

  test('valid frames round-trip under any chunking', () => {
    fc.assert(
      fc.property(fc.array(frameArb, { maxLength: 20 }), fc.array(fc.nat(20000), { maxLength: 10 }), (frames, cuts) => {
        const wire = Buffer.concat(frames.map(encodeFrame));
        const out = decodeChunks(splitAt(wire, cuts));
        assert.equal(out.error, null);
        assert.deepEqual(plain(out.frames), plain(frames));
      }),
      { numRuns: RUNS },
    );
  });

  test('mutated frame streams: decoder and oracle agree', () => {
    fc.assert(
      fc.property(
        fc.array(frameArb, { maxLength: 12 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
        fc.array(fc.nat(20000), { maxLength: 6 }),
        (frames, flips, cuts) => {
          const wire = Buffer.from(Buffer.concat(frames.map(encodeFrame)));
          for (const [at, value] of flips) if (wire.length) wire[at % wire.length] = value;
          const real = decodeChunks(splitAt(wire, cuts));
          const oracle = decodeNaive(wire);
          assert.deepEqual(plain(real.frames), plain(oracle.frames));
          assert.equal(real.error?.wireCode, oracle.error?.wireCode);
        },
      ),
      { numRuns: RUNS },
    );
  });

  test('a header claiming 4 GiB is refused before any payload is buffered', () => {
    const decoder = new Decoder({ dataHeader() {}, data() {}, control() {} });
    assert.throws(() => decoder.write(Buffer.from('ffffffff0000000001', 'hex')), ProtocolError);
  });
});
