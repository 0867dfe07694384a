import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { tlsClientOptions } from '../../src/transport/tls.js';

describe('what an agent trusts', () => {
  test('--ca adds to Node’s CAs and keeps NODE_EXTRA_CA_CERTS', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'rhost-ca-')), 'extra.pem');
    writeFileSync(file, 'EXTRA PEM');
    process.env.NODE_EXTRA_CA_CERTS = file;
    const ca = tlsClientOptions('tunnel.example.com', { ca: 'MINE PEM' }).ca as string[];
    assert.deepEqual(ca.slice(-2), ['EXTRA PEM', 'MINE PEM']);
    assert.equal(ca.length, tls.rootCertificates.length + 2, 'and the bundled roots');
  });

  test('without --ca, Node’s own store is left alone; SNI names the host, never an address', () => {
    const named = tlsClientOptions('tunnel.example.com', {});
    assert.equal(named.ca, undefined);
    assert.equal(named.servername, 'tunnel.example.com');
    assert.equal(named.rejectUnauthorized, true);
    assert.equal(tlsClientOptions('192.0.2.1', {}).servername, undefined);
    assert.equal(tlsClientOptions('192.0.2.1', { insecure: true }).rejectUnauthorized, false);
  });
});
