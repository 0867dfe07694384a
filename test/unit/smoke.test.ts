import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Session } from '../../src/mux/session.js';
import { Role } from '../../src/protocol/index.js';
import { makePair } from '../helpers/pairs.js';
import { createHash, randomBytes } from 'node:crypto';

for (const kind of ['memory', 'tcp'] as const) {
  test(`smoke ${kind}`, async () => {
    const [a, b] = await makePair(kind);
    const agent = new Session(a, { role: Role.Initiator });
    const tunnel = new Session(b, { role: Role.Acceptor });
    tunnel.on('stream', (s) => s.pipe(s));
    const data = randomBytes(5 * 1024 * 1024);
    const s = agent.open({ channel: '/' });
    const h = createHash('sha256');
    let n = 0;
    s.on('data', (d: Buffer) => { h.update(d); n += d.length; });
    const done = new Promise((r) => s.on('end', r));
    s.end(data);
    await done;
    assert.equal(n, data.length);
    assert.equal(h.digest('hex'), createHash('sha256').update(data).digest('hex'));
    console.log(agent.stats(), tunnel.stats());
    await agent.close();
    await tunnel.close();
  });
}
