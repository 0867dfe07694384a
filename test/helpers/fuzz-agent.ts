import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { Decoder, encodeFrame, FRAME_HEADER_BYTES, FrameType, MAX_DATA_PAYLOAD_BYTES, ProtocolError, WireError } from '../../src/protocol/index.js';
import { dialTunnel, type DialOptions } from '../../src/transport/dial.js';
import { parseTunnelAddress } from '../../src/transport/address.js';
import { until } from './wait.js';

/**
 * A fake agent for the live-tunnel fuzzer: a raw connection that completed a
 * real handshake, writes whatever bytes the fuzzer makes, and decodes what
 * the tunnel sends back.
 */
export interface FakeAgent {
  socket: Duplex;
  /** The session id the tunnel assigned (its 'agent' and 'agent-close' events carry it). */
  sessionId: string;
  /** OPEN frames the tunnel sent: streams it opened on this session. */
  opens: number;
  /** Payloads of the PONGs received, in hex. */
  pongs: Set<string>;
  goAwayCodes: number[];
  /** The first frame the tunnel sent that did not decode. */
  malformed: Error | null;
  closed: boolean;
}

export async function connectFakeAgent(port: number, hello: DialOptions["hello"]): Promise<FakeAgent> {
  const dialed = await dialTunnel({ address: parseTunnelAddress(`127.0.0.1:${port}`), hello, userAgent: 'fuzz', timeoutMs: 5000 });
  const fake: FakeAgent = { socket: dialed.transport, sessionId: dialed.sessionId, opens: 0, pongs: new Set(), goAwayCodes: [], malformed: null, closed: false };
  const decoder = new Decoder({
    dataHeader() {},
    data() {},
    control(frame) {
      if (frame.type === FrameType.Open) fake.opens++;
      else if (frame.type === FrameType.Pong) fake.pongs.add(frame.opaque.toString('hex'));
      else if (frame.type === FrameType.GoAway) fake.goAwayCodes.push(frame.code);
    },
  });
  const read = (chunk: Buffer): void => {
    try {
      decoder.write(chunk);
    } catch (err) {
      fake.malformed ??= err as Error;
    }
  };
  fake.socket.on('error', () => {});
  fake.socket.once('close', () => (fake.closed = true));
  read(dialed.head);
  fake.socket.on('data', read);
  fake.socket.resume(); // the dial paused it to hand it over
  return fake;
}

/**
 * Ends whatever frame the fuzzer's bytes left unfinished (no frame is longer
 * than 256 KiB), then reads as a header declaring 4 GiB: a FRAME_SIZE_ERROR,
 * so the tunnel must end the session rather than wait for more.
 */
const CLOSER = Buffer.alloc(FRAME_HEADER_BYTES + MAX_DATA_PAYLOAD_BYTES + FRAME_HEADER_BYTES, 0xff);

/** True when `wire` is whole, well-formed frames: a PING written after it is then read as a PING. */
export function wholeFrames(wire: Buffer): boolean {
  const decoder = new Decoder({ dataHeader() {}, data() {}, control() {} });
  try {
    decoder.write(wire);
  } catch (err) {
    if (err instanceof ProtocolError) return false;
    throw err;
  }
  return decoder.pendingBytes === 0;
}

/**
 * Writes the bursts, then waits until the tunnel has read them all: after
 * whole frames, a PING must come back as a PONG unless the session ends;
 * after anything else, CLOSER must end it. Either must happen within
 * `boundMs`, or the tunnel hangs. Checks that every frame the tunnel sent
 * decoded and that its GOAWAYs carry known codes. Resolves with whether the
 * session is still up (it answered, so it is sane).
 */
export async function writeAndSettle(fake: FakeAgent, bursts: Buffer[], boundMs: number): Promise<boolean> {
  for (const burst of bursts) fake.socket.write(burst);
  const opaque = randomBytes(8);
  fake.socket.write(wholeFrames(Buffer.concat(bursts)) ? encodeFrame({ type: FrameType.Ping, streamId: 0, opaque }) : CLOSER);
  await until(() => fake.closed || fake.pongs.has(opaque.toString('hex')), 'the tunnel to answer the PING or end the session', boundMs);
  assert.equal(fake.malformed, null, 'every frame the tunnel sent decodes');
  for (const code of fake.goAwayCodes) assert.ok(code in WireError, `the tunnel sent GOAWAY with an unknown code ${code}`);
  return !fake.closed;
}
