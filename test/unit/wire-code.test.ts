import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RhostError } from '../../src/errors.js';
import { PeerError, ProtocolError, WireError, wireCodeOf, wireName } from '../../src/protocol/index.js';

test('a plain Error is INTERNAL_ERROR, never NO_ERROR', () => {
  assert.equal(wireCodeOf(new Error('boom')), WireError.InternalError);
  assert.equal(wireCodeOf('string thrown'), WireError.InternalError);
});

test('no error at all means the stream was cancelled', () => {
  assert.equal(wireCodeOf(undefined), WireError.Cancel);
  assert.equal(wireCodeOf(null), WireError.Cancel);
});

test('socket errors map by code, not by message', () => {
  const e = (code: string): Error => Object.assign(new Error('whatever'), { code });
  assert.equal(wireCodeOf(e('ECONNREFUSED')), WireError.ConnectRefused);
  assert.equal(wireCodeOf(e('ECONNRESET')), WireError.ConnectionReset);
  assert.equal(wireCodeOf(e('EPIPE')), WireError.ConnectionReset);
  assert.equal(wireCodeOf(e('ETIMEDOUT')), WireError.ConnectFailed);
  assert.equal(wireCodeOf(e('ENOTFOUND')), WireError.ConnectFailed);
  assert.equal(wireCodeOf(e('EWHATEVER')), WireError.InternalError);
  assert.equal(wireCodeOf(Object.assign(new Error('ECONNREFUSED'), { code: 'X' })), WireError.InternalError);
});

test('rhost errors keep their wire meaning', () => {
  assert.equal(wireCodeOf(new ProtocolError('ERR_RHOST_FLOW_CONTROL', WireError.FlowControlError, 'x')), WireError.FlowControlError);
  assert.equal(wireCodeOf(new PeerError('ERR_RHOST_STREAM_RESET', WireError.ConnectRefused, '')), WireError.ConnectRefused);
  assert.equal(wireCodeOf(new RhostError('ERR_RHOST_KEEPALIVE_TIMEOUT', 'x')), WireError.KeepaliveTimeout);
  assert.equal(wireCodeOf(new RhostError('ERR_RHOST_TOO_MANY_STREAMS', 'x')), WireError.RefusedStream);
  assert.equal(wireCodeOf(new RhostError('ERR_RHOST_BAD_KEY', 'x')), WireError.InternalError);
});

test('an unknown code from a peer reads as INTERNAL_ERROR', () => {
  assert.equal(new PeerError('ERR_RHOST_STREAM_RESET', 0xdead, '').wireCode, WireError.InternalError);
});

test('wire codes have one spelling, in messages too', () => {
  assert.equal(wireName(WireError.RefusedStream), 'REFUSED_STREAM');
  assert.equal(wireName(WireError.CredentialsChanged), 'CREDENTIALS_CHANGED');
  assert.equal(wireName(0xdead), 'UNKNOWN_0xdead');
  assert.match(new PeerError('ERR_RHOST_STREAM_RESET', WireError.ConnectRefused, 'down').message, /: CONNECT_REFUSED "down"$/);
});

test('a peer’s reason is quoted and escaped: it cannot fake a log line or drive a terminal', () => {
  const reason = 'x\n12:00:00.000 info  server agent 10.0.0.9 registered /ssh\u001b[2J\u202e';
  const message = new PeerError('ERR_RHOST_PEER_GOAWAY', WireError.ProtocolError, reason).message;
  assert.doesNotMatch(message, /[\u0000-\u001f\u007f-\u009f\u202e]/);
  assert.match(message, /"x\\u000a12:00:00\.000 info  server agent 10\.0\.0\.9 registered \/ssh\\u001b\[2J\\u202e"$/);
});
