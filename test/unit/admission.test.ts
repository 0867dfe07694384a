import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type net from 'node:net';
import { Admission } from '../../src/relay/admission.js';
import { AuthGuard } from '../../src/relay/auth-guard.js';
import { UserTable } from '../../src/relay/users.js';

function fakeSocket(): net.Socket & { destroyedByLimit: boolean; bytesRead: number; bytesWritten: number } {
  const s = { destroyedByLimit: false, destroyed: false, bytesRead: 0, bytesWritten: 0, destroy() { s.destroyedByLimit = true; s.destroyed = true; } };
  return s as unknown as net.Socket & { destroyedByLimit: boolean; bytesRead: number; bytesWritten: number };
}

const PENDING = { maxPendingHandshakes: 3, maxPendingHandshakesPerIp: 2, maxConnRatePerIp: 0, connBurstPerIp: 1 };

describe('pending connections', () => {
  test('per address, past the limit, new pending connections are refused', () => {
    const a = new Admission(PENDING);
    assert.ok(a.enterPending(fakeSocket(), '10.0.0.1'));
    assert.ok(a.enterPending(fakeSocket(), '10.0.0.1'));
    assert.equal(a.enterPending(fakeSocket(), '10.0.0.1'), false);
    assert.ok(a.enterPending(fakeSocket(), '10.0.0.2'));
    assert.equal(a.counts.pendingRefused, 1);
  });

  test('overall, past the limit, the oldest of the address group holding the most is dropped, not the oldest overall', () => {
    const a = new Admission({ ...PENDING, maxPendingHandshakes: 4, maxPendingHandshakesPerIp: 10 });
    const victim = fakeSocket(); // the oldest of all, alone in its /24
    a.enterPending(victim, '10.0.2.7');
    const crowd = [fakeSocket(), fakeSocket(), fakeSocket()];
    a.enterPending(crowd[0]!, '10.0.1.1');
    a.enterPending(crowd[1]!, '10.0.1.2');
    a.enterPending(crowd[2]!, '10.0.1.3');
    const fresh = fakeSocket();
    assert.ok(a.enterPending(fresh, '10.0.1.4'));
    assert.ok(!victim.destroyedByLimit, 'the lone user of another /24 stays');
    assert.ok(crowd[0]!.destroyedByLimit, 'the crowd pays, its oldest first');
    assert.ok(!fresh.destroyedByLimit);
    assert.deepEqual([a.pending, a.counts.pendingDropped], [4, 1]);
  });

  test('IPv6 groups are /64s', () => {
    const a = new Admission({ ...PENDING, maxPendingHandshakes: 3, maxPendingHandshakesPerIp: 10 });
    const lone = fakeSocket();
    a.enterPending(lone, '2001:db8:2::1');
    const first = fakeSocket();
    a.enterPending(first, '2001:db8:1::1');
    a.enterPending(fakeSocket(), '2001:db8:1::2');
    a.enterPending(fakeSocket(), '2001:db8:1:0:ffff::3');
    assert.ok(first.destroyedByLimit && !lone.destroyedByLimit);
  });

  test('leaving twice is harmless, and frees the address’s slot', () => {
    const a = new Admission(PENDING);
    const s = fakeSocket();
    a.enterPending(s, '10.0.0.1');
    a.enterPending(fakeSocket(), '10.0.0.1');
    a.leavePending(s);
    a.leavePending(s);
    assert.ok(a.enterPending(fakeSocket(), '10.0.0.1'));
    assert.equal(a.pending, 2);
  });
});

describe('the rate of new connections per address', () => {
  test('a burst is allowed, then the rate; other addresses are untouched; 0 means no limit', () => {
    const a = new Admission({ ...PENDING, maxConnRatePerIp: 10, connBurstPerIp: 5 });
    for (let i = 0; i < 5; i++) assert.ok(a.allowConnection('10.0.0.1', 0), `burst ${i}`);
    assert.equal(a.allowConnection('10.0.0.1', 0), false);
    assert.ok(a.allowConnection('10.0.0.2', 0));
    assert.ok(a.allowConnection('10.0.0.1', 100), 'a tenth of a second earns one');
    assert.equal(a.allowConnection('10.0.0.1', 100), false);
    assert.equal(a.counts.rateRefused, 2);
    const open = new Admission(PENDING);
    for (let i = 0; i < 1000; i++) assert.ok(open.allowConnection('10.0.0.1', 0));
  });

  test('an IPv6 /64 is one address', () => {
    const a = new Admission({ ...PENDING, maxConnRatePerIp: 1, connBurstPerIp: 1 });
    assert.ok(a.allowConnection('2001:db8::1', 0));
    assert.equal(a.allowConnection('2001:db8::2', 0), false);
    assert.ok(a.allowConnection('2001:db8:0:1::1', 0));
  });
});

const USERS = { maxUsers: 3, maxUsersPerChannel: 3, maxUsersPerIp: 2, maxClientStreams: 2, userEvictIdleMs: 30_000 };

describe('user slots', () => {
  test('anonymous users are bounded per address and in total', () => {
    const u = new UserTable({ ...USERS, userEvictIdleMs: 0 });
    const t1 = u.admit('public', '/', '10.0.0.1', fakeSocket());
    assert.equal(typeof t1, 'object');
    assert.equal(typeof u.admit('public', '/', '10.0.0.1', fakeSocket()), 'object');
    assert.match(u.admit('public', '/', '10.0.0.1', fakeSocket()) as string, /too many connections from 10\.0\.0\.1/);
    assert.equal(typeof u.admit('public', '/', '10.0.0.2', fakeSocket()), 'object');
    assert.match(u.admit('public', '/', '10.0.0.3', fakeSocket()) as string, /maximum of 3/);
    u.release(t1 as never);
    u.release(t1 as never);
    assert.equal(typeof u.admit('public', '/', '10.0.0.3', fakeSocket()), 'object');
    assert.equal(u.counts.usersRefused, 2);
    u.close();
  });

  test('client agents’ streams have their own pool: a full public pool never starves them, nor they it', () => {
    const u = new UserTable({ ...USERS, userEvictIdleMs: 0 });
    for (const ip of ['10.0.0.1', '10.0.0.2', '10.0.0.3']) assert.equal(typeof u.admit('public', '/', ip, fakeSocket()), 'object');
    assert.equal(typeof u.admit('client', '/ssh', '10.0.0.9', null), 'object');
    assert.equal(typeof u.admit('client', '/ssh', '10.0.0.9', null), 'object');
    assert.match(u.admit('client', '/ssh', '10.0.0.9', null) as string, /maximum of 2 client-agent streams/);
    assert.deepEqual([u.publicUsers, u.clientStreams], [3, 2]);
    u.close();
  });

  test('each channel has its own limit', () => {
    const u = new UserTable({ ...USERS, maxUsers: 10, maxUsersPerChannel: 2, userEvictIdleMs: 0 });
    u.admit('public', '/', '10.0.0.1', fakeSocket());
    u.admit('public', '/', '10.0.0.2', fakeSocket());
    assert.match(u.admit('public', '/', '10.0.0.3', fakeSocket()) as string, /\/ carries its maximum of 2/);
    assert.equal(typeof u.admit('public', '/app', '10.0.0.3', fakeSocket()), 'object');
    u.close();
  });

  test('when full, the user silent longest (30 s or more) makes room; one with traffic is never evicted', () => {
    let now = 0;
    const u = new UserTable(USERS, () => now);
    const quiet = fakeSocket();
    const busy = fakeSocket();
    const late = fakeSocket();
    u.admit('public', '/', '10.0.0.1', busy);
    u.admit('public', '/', '10.0.0.2', quiet);
    now = 10_000;
    u.admit('public', '/', '10.0.0.3', late);
    now = 20_000;
    assert.match(u.admit('public', '/', '10.0.0.4', fakeSocket()) as string, /maximum/, 'nobody has been silent 30 s yet');
    busy.bytesRead = 500; // the busy one talks...
    u.sweep(25_000);
    now = 40_000;
    const newcomer = u.admit('public', '/', '10.0.0.4', fakeSocket());
    assert.equal(typeof newcomer, 'object');
    assert.ok(quiet.destroyedByLimit, 'the one silent since 0 s went');
    assert.ok(!busy.destroyedByLimit && !late.destroyedByLimit);
    assert.deepEqual([u.publicUsers, u.counts.usersEvicted], [3, 1]);
    u.close();
  });
});

describe('addresses, as limits count them', () => {
  test('IPv6 addresses of one /64 share a user limit and a lockout; another /64 does not', () => {
    const u = new UserTable({ ...USERS, maxUsers: 10, maxUsersPerChannel: 10, userEvictIdleMs: 0 });
    const first = u.admit('public', '/', '2001:db8:1:2::1', fakeSocket());
    u.admit('public', '/', '2001:db8:1:2::2', fakeSocket());
    assert.match(u.admit('public', '/', '2001:db8:1:2:ffff::3', fakeSocket()) as string, /too many connections from 2001:db8:1:2:ffff::3 \(counted by its 2001:db8:1:2::\/64\)/);
    assert.equal(typeof u.admit('public', '/', '2001:db8:1:3::1', fakeSocket()), 'object', 'the next /64 is someone else');
    u.release(first as never);
    assert.equal(typeof u.admit('public', '/', '2001:db8:1:2::9', fakeSocket()), 'object', 'a released slot is free for the /64 again');
    u.close();
    const g = new AuthGuard({ baseDelayMs: 1000, maxDelayMs: 5000 }, 0);
    g.failed('2001:db8:1:2::1', '/', 0);
    assert.ok(g.lockedFor('2001:db8:1:2::abcd', '/', 1) > 0, 'a neighbour in the /64 is locked out too');
    assert.equal(g.lockedFor('2001:db8:1:3::1', '/', 1), 0);
  });
});

describe('guessing lockouts', () => {
  const guard = (extra = {}): AuthGuard => new AuthGuard({ baseDelayMs: 1000, maxDelayMs: 5000, ...extra }, 0);

  test('each failure doubles the lockout, up to the maximum; only a quiet spell as long as the maximum resets it', () => {
    const g = guard();
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

  test('every name is treated alike: a failure on one does not make others answer differently', () => {
    const g = guard();
    g.failed('a', '/nope', 0);
    assert.ok(g.lockedFor('a', '/nope', 1) > 0);
    assert.equal(g.lockedFor('a', '/other-unknown', 1), 0, 'another unknown name still answers as a real channel would');
    assert.equal(g.lockedFor('a', '/ssh', 1), 0);
  });

  test('failing on many names locks the address out of all of them, after a few free; the larger lockout wins', () => {
    const g = guard({ freeNames: 3 });
    for (const [i, name] of ['/a', '/b', '/c'].entries()) g.failed('a', name, i * 10);
    assert.equal(g.lockedFor('a', '/d', 40), 0, 'three distinct names are free');
    g.failed('a', '/d', 50);
    assert.ok(g.lockedFor('a', '/zzz', 60) > 0, 'the fourth locks every name');
    assert.equal(g.lockedFor('b', '/zzz', 60), 0);
    // The same name again and again is the per-name lockout's business, not the address's: a stale agent behind a NAT.
    const h = guard({ freeNames: 3 });
    for (let i = 0; i < 10; i++) h.failed('n', '/ssh', i * 10_000);
    assert.equal(h.lockedFor('n', '/', 95_000), 0, 'the agents of / behind the same address are not locked out');
  });

  test('probing names without a credential counts only new names: an agent waiting on one is never held up', () => {
    const g = guard({ freeNames: 2 });
    for (let i = 0; i < 50; i++) g.probed('waiting', '/ssh', i);
    assert.equal(g.lockedFor('waiting', '/ssh', 100), 0);
    for (const name of ['/a', '/b', '/c']) g.probed('walker', name, 0);
    assert.ok(g.lockedFor('walker', '/d', 1) > 0);
  });

  test('the table forgets the least-failed entries first, so a flood of single failures cannot erase a guesser’s lockout', () => {
    const g = guard({ maxTracked: 4, maxDelayMs: 60_000 });
    for (let i = 0; i < 4; i++) g.failed('victim', '/ssh', i);
    const before = g.lockedFor('victim', '/ssh', 10);
    assert.ok(before > 4000);
    for (let i = 0; i < 100; i++) g.failed(`stranger-${i}`, '/ssh', 10 + i);
    assert.ok(g.tracked <= 4);
    assert.ok(g.lockedFor('victim', '/ssh', 200) >= before - 200, 'the lockout survived');
  });

  test('a storm of failures from many addresses holds up strangers, never an address that authenticated before', () => {
    const g = guard({ stormBurst: 10, stormPerSecond: 1, stormRetryMs: 7000 });
    g.succeeded('agent', 0);
    for (let i = 0; i < 11; i++) g.failed(`bot-${i}`, '/ssh', 1);
    assert.equal(g.lockedFor('stranger', '/ssh', 2), 7000);
    assert.equal(g.lockedFor('agent', '/ssh', 2), 0, 'the real agent gets in');
    assert.equal(g.lockedFor('stranger', '/ssh', 5000), 0, 'the brake lifts as the storm passes');
  });
});
