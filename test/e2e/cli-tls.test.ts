import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { Cleanup, listening, request } from '../helpers/rig.js';
import { RhostProcess } from '../helpers/cli.js';
import { makePki, type TestPki } from '../helpers/certs.js';
import { requireBinaries, which } from '../helpers/system.js';
import { untilExit, untilServing } from '../helpers/transport-process.js';
import { httpsGet } from '../helpers/transport-https.js';

/**
 * The real command: a tunnel serving TLS from PEM files, and server agents
 * that reach it with `-t https://`. The agents run with PATH alone in their
 * environment, so no NODE_EXTRA_CA_CERTS or proxy variable helps them.
 */
describe('the rhost command with TLS', () => {
  const cleanup = new Cleanup();
  let pki: TestPki;
  let port = 0;
  let appPort = 0;
  let tunnelUrl = '';

  function rhost(args: string[]): RhostProcess {
    const p = new RhostProcess(args);
    cleanup.add(() => p.stop('SIGKILL'));
    return p;
  }

  before(async () => {
    if (which('openssl') === null) return;
    pki = makePki(cleanup);
    const { cert, key } = pki.issue('tunnel');
    const app = http.createServer((req, res) => res.end(`app saw ${req.url}`));
    appPort = await listening(app, cleanup);
    // Port 0: the tunnel reports the port it got.
    const tunnel = rhost(['tunnel', '--tunnel', '0', '--keys', 'k', '--tls-cert', cert, '--tls-key', key]);
    const bound = await tunnel.waitForEvent('listening');
    assert.equal(bound.tls, true, 'TLS and plain on the one port');
    port = Number(bound.port);
    tunnelUrl = `https://localhost:${port}`;
  });
  after(() => cleanup.run());

  test('--tls-cert and --tls-key on the tunnel, -t https:// with --ca on the agent: users reach the service', async (t) => {
    if (!requireBinaries(t, 'openssl')) return;
    const agent = rhost(['server', '-t', tunnelUrl, '--ca', pki.caCert, '-s', String(appPort), '-k', 'k']);
    await untilServing(agent);
    assert.ok(agent.events.some((e) => e.event === 'connected' && e.transport === 'raw' && e.tls === true), agent.lines.join('\n'));
    assert.deepEqual(await httpsGet(port, '/over-https', pki.caCert), { status: 200, body: 'app saw /over-https' });
    assert.equal((await request(port, { path: '/over-http' })).body.toString(), 'app saw /over-http', 'plain users share the port');
    assert.equal(await agent.stop(), 0);
  });

  test('without --ca the agent says in one line that the certificate is not trusted, and exits 1', async (t) => {
    if (!requireBinaries(t, 'openssl')) return;
    const agent = rhost(['server', '-t', tunnelUrl, '-s', String(appPort), '-k', 'k']);
    assert.equal(await untilExit(agent), 1);
    assert.equal(agent.stderr.length, 1, agent.stderr.join('\n'));
    assert.match(
      agent.stderr[0]!,
      new RegExp(`^rhost: the TLS certificate of the tunnel at localhost:${port} is not trusted \\(UNABLE_TO_VERIFY_LEAF_SIGNATURE: .+\\): give its CA with --ca FILE, or skip the check with --insecure$`),
    );
    assert.ok(agent.lines.some((l) => /\berror\b/.test(l) && /is not trusted/.test(l)), agent.lines.join('\n'));
    assert.ok(!agent.lines.some((l) => /retrying|serving/.test(l)), 'a certificate that fails at the very start is not retried');
  });

  test('--insecure connects without the CA, and warns that checks are off', async (t) => {
    if (!requireBinaries(t, 'openssl')) return;
    const agent = rhost(['server', '-t', tunnelUrl, '--insecure', '-s', String(appPort), '-k', 'k']);
    await untilServing(agent);
    assert.ok(agent.events.some((e) => e.level === 'warn' && String(e.msg).startsWith('TLS certificate checks are OFF (--insecure)')), agent.lines.join('\n'));
    assert.deepEqual(await httpsGet(port, '/insecure', pki.caCert), { status: 200, body: 'app saw /insecure' });
    assert.equal(await agent.stop(), 0);
  });

  test('a --ca file that cannot be read is a bad command line: one line, exit 2', async (t) => {
    if (!requireBinaries(t, 'openssl')) return;
    const missing = `${pki.dir}/no-such-ca.pem`;
    const agent = rhost(['server', '-t', tunnelUrl, '--ca', missing, '-s', String(appPort), '-k', 'k']);
    assert.equal(await agent.exited, 2);
    assert.equal(agent.stderr.length, 1, agent.stderr.join('\n'));
    assert.match(agent.stderr[0]!, /^rhost: option ca cannot be read: ENOENT/);
  });
});
