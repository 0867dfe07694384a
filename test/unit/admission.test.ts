import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type net from 'node:net';
import { Admission } from '../../src/relay/admission.js';
import { AuthGuard } from '../../src/relay/auth-guard.js';

function fakeSocket(): net.Socket & { destroyedByLimit: boolean } {
  const s = { destroyedByLimit: false, destroy() { s.destroyedByLimit = true; } };
  return s as unknown as net.Socket & { destroyedByLimit: boolean };
}

describe('admission', () => {
  const limits = { maxPendingHandshakes: 3, maxPendingHandshakesPerIp: 2, maxUsers: 3, maxUsersPerIp: 2 };

  test('per address, past the limit, new pending connections are refused', () => {
    const a = new Admission(limits);
    assert.ok(a.enterPending(fakeSocket(), '10.0.0.1'));
    assert.ok(a.enterPending(fakeSocket(), '10.0.0.1'));
    assert.equal(a.enterPending(fakeSocket(), '10.0.0.1'), false);
    assert.ok(a.enterPending(fakeSocket(), '10.0.0.2'));
    assert.equal(a.counts.pendingRefused, 1);
  });

  test('overall, past the limit, the oldest pending connection is dropped for the new one', () => {
    const a = new Admission(limits);
    const oldest = fakeSocket();
    a.enterPending(oldest, '10.0.0.1');
    a.enterPending(fakeSocket(), '10.0.0.2');
    a.enterPending(fakeSocket(), '10.0.0.3');
    const fresh = fakeSocket();
    assert.ok(a.enterPending(fresh, '10.0.0.4'));
    assert.ok(oldest.destroyedByLimit && !fresh.destroyedByLimit);
    assert.equal(a.pending, 3);
    assert.equal(a.counts.pendingDropped, 1);
  });

  test('leaving twice is harmless, and frees the address’s slot', () => {
    const a = new Admission(limits);
    const s = fakeSocket();
    a.enterPending(s, '10.0.0.1');
    a.enterPending(fakeSocket(), '10.0.0.1');
    a.leavePending(s);
    a.leavePending(s);
    assert.ok(a.enterPending(fakeSocket(), '10.0.0.1'));
    assert.equal(a.pending, 2);
  });

  test('users are bounded per address and in total', () => {
    const a = new Admission(limits);
    assert.equal(a.admitUser('10.0.0.1'), null);
    assert.equal(a.admitUser('10.0.0.1'), null);
    assert.match(a.admitUser('10.0.0.1')!, /too many connections from 10\.0\.0\.1/);
    assert.equal(a.admitUser('10.0.0.2'), null);
    assert.match(a.admitUser('10.0.0.3')!, /maximum of 3/);
    a.releaseUser('10.0.0.1');
    assert.equal(a.admitUser('10.0.0.3'), null);
    assert.equal(a.counts.usersRefused, 2);
  });
});

describe('guessing lockouts', () => {
  test('each failure doubles the lockout, up to the maximum; a success clears it', () => {
    const g = new AuthGuard(1000, 5000);
    assert.equal(g.failed('a', 0), 1000);
    assert.equal(g.lockedFor('a', 500), 500);
    assert.equal(g.lockedFor('a', 1000), 0);
    assert.equal(g.failed('a', 1000), 2000);
    assert.equal(g.failed('a', 3000), 4000);
    assert.equal(g.failed('a', 7000), 5000);
    assert.equal(g.lockedFor('b', 7000), 0, 'other addresses are not affected');
    g.succeeded('a');
    assert.equal(g.lockedFor('a', 7001), 0);
    assert.deepEqual([g.failures, g.refused], [4, 1]);
  });

  test('the table forgets the oldest address past its bound', () => {
    const g = new AuthGuard(1000, 5000, 2);
    g.failed('a', 0);
    g.failed('b', 0);
    g.failed('c', 0);
    assert.equal(g.tracked, 2);
    assert.equal(g.lockedFor('a', 1), 0);
    assert.ok(g.lockedFor('c', 1) > 0);
  });
});
