import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Cleanup, startServerAgent, startTunnel } from '../helpers/rig.js';
import { startNginx } from '../helpers/nginx.js';
import { requireBinaries } from '../helpers/system.js';

/**
 * `sendProxy`: the local service learns each user's real address from a
 * PROXY protocol header, read here by a real nginx (`listen … proxy_protocol`),
 * with users from distinct loopback addresses.
 */

const run = promisify(execFile);
const KEY = 'root-key-0123456789';

describe('the user’s real address at the service', () => {
  const cleanup = new Cleanup();
  after(() => cleanup.run());

  for (const [version, http] of [['v1', false], ['v2', false], ['v2', true]] as const) {
    test(`PROXY ${version}${http ? ' with --http' : ''}: nginx reads each user’s address and port`, async (t) => {
      if (!requireBinaries(t, 'nginx', 'curl')) return;
      const { port: service } = await startNginx(cleanup, `
  server {
    listen 127.0.0.1:PORT proxy_protocol;
    location / { return 200 "addr=$proxy_protocol_addr port=$proxy_protocol_port xff=$http_x_forwarded_for"; }
  }`);
      const { port, address } = await startTunnel(cleanup, { keys: { '/': KEY } });
      await startServerAgent(cleanup, { tunnel: address, key: KEY, target: String(service), sendProxy: version, http });
      for (const from of ['127.0.0.9', '127.0.0.10']) {
        const { stdout } = await run('curl', ['-s', '--interface', from, '-w', ' %{local_port}', `http://127.0.0.1:${port}/`]);
        const [, addr, srcPort, xff, localPort] = /^addr=(\S*) port=(\S*) xff=(\S*) (\d+)$/.exec(stdout) ?? [];
        assert.equal(addr, from, `nginx saw ${stdout}`);
        assert.equal(srcPort, localPort, 'and the user’s own source port');
        assert.equal(xff, http ? from : '', http ? 'X-Forwarded-For too' : 'bytes mode adds no header');
      }
    });
  }
});
