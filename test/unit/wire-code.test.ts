import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RhostError } from '../../src/errors.js';
import { PeerError, ProtocolError, WireError, wireCodeOf, wireErrorName } from '../../src/protocol/index.js';

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
  assert.equal(wireErrorName(WireError.RefusedStream), 'REFUSED_STREAM (0x6)');
});
