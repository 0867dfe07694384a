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

  test('users with no address to count (behind a trusted proxy) meet only the overall limit', () => {
    const a = new Admission(limits);
    assert.equal(a.admitUser(''), null);
    assert.equal(a.admitUser(''), null);
    assert.equal(a.admitUser(''), null, 'past the per-address limit of 2');
    assert.match(a.admitUser('')!, /maximum of 3/);
    a.releaseUser('');
    assert.equal(a.users, 2);
    assert.equal(a.admitUser('10.0.0.9'), null);
  });
});

describe('addresses, as limits count them', () => {
  test('IPv6 addresses of one /64 share a user limit and a lockout; another /64 does not', () => {
    const a = new Admission({ maxPendingHandshakes: 10, maxPendingHandshakesPerIp: 10, maxUsers: 10, maxUsersPerIp: 2 });
    assert.equal(a.admitUser('2001:db8:1:2::1'), null);
    assert.equal(a.admitUser('2001:db8:1:2::2'), null);
    assert.match(a.admitUser('2001:db8:1:2:ffff::3') ?? '', /too many connections from 2001:db8:1:2:ffff::3 \(counted by its 2001:db8:1:2::\/64\)/);
    assert.equal(a.admitUser('2001:db8:1:3::1'), null, 'the next /64 is someone else');
    a.releaseUser('2001:db8:1:2::1');
    assert.equal(a.admitUser('2001:db8:1:2::9'), null, 'a released slot is free for the /64 again');
    const g = new AuthGuard(1000, 5000);
    g.failed('2001:db8:1:2::1', '/', 0);
    assert.ok(g.lockedFor('2001:db8:1:2::abcd', '/', 1) > 0, 'a neighbour in the /64 is locked out too');
    assert.equal(g.lockedFor('2001:db8:1:3::1', '/', 1), 0);
  });
});

describe('guessing lockouts', () => {
  test('each failure doubles the lockout, up to the maximum; only a quiet spell as long as the maximum resets it', () => {
    const g = new AuthGuard(1000, 5000);
    assert.equal(g.failed('a', '/', 0), 1000);
    assert.equal(g.lockedFor('a', '/', 500), 500);
    assert.equal(g.lockedFor('a', '/', 1000), 0);
    assert.equal(g.failed('a', '/', 1000), 2000);
    assert.equal(g.failed('a', '/', 3000), 4000);
    assert.equal(g.failed('a', '/', 7000), 5000);
    assert.equal(g.lockedFor('b', '/', 7000), 0, 'other addresses are not affected');
    assert.equal(g.failed('a', '/', 12_000), 5000, 'no reset after only 0 s of quiet (the last lockout ended at 12 s)');
    assert.equal(g.failed('a', '/', 17_000 + 5001), 1000, 'after a quiet spell longer than the maximum, it starts again');
    assert.deepEqual([g.failures, g.refused], [6, 1]);
  });

  test('the table forgets the oldest address past its bound', () => {
    const g = new AuthGuard(1000, 5000, 2);
    g.failed('a', '/', 0);
    g.failed('b', '/', 0);
    g.failed('c', '/', 0);
    assert.equal(g.tracked, 2);
    assert.equal(g.lockedFor('a', '/', 1), 0);
    assert.ok(g.lockedFor('c', '/', 1) > 0);
  });

  test('a lockout holds for the channel it was earned on; names that do not exist share one', () => {
    const g = new AuthGuard(1000, 5000);
    g.failed('a', '/ssh', 0);
    assert.ok(g.lockedFor('a', '/ssh', 1) > 0);
    assert.equal(g.lockedFor('a', '/', 1), 0, 'the agents of / behind the same address are not locked out');
    g.failed('a', null, 0);
    assert.ok(g.lockedFor('a', null, 1) > 0, 'every unknown name is locked at once');
    assert.equal(g.lockedFor('a', '/', 1), 0);
    assert.equal(g.lockedFor('b', '/ssh', 1), 0);
  });
});
