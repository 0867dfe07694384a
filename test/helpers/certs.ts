import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Cleanup } from './rig.js';

/** A test CA and what it signed, as PEM files in a temporary directory. */
export interface TestPki {
  dir: string;
  caCert: string;
  /** Issues a server certificate, by default for localhost and 127.0.0.1; returns the file paths. */
  issue(name: string, subjectAltName?: string): { cert: string; key: string };
}

const openssl = (args: string[]): void => void execFileSync('openssl', args, { stdio: 'pipe' });

/** Makes a CA with openssl. Everything is removed by `cleanup`. */
export function makePki(cleanup: Cleanup): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'rhost-pki-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
  const caKey = join(dir, 'ca.key');
  const caCert = join(dir, 'ca.pem');
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', caKey, '-out', caCert, '-days', '2', '-subj', '/CN=rhost test CA']);
  return {
    dir,
    caCert,
    issue(name, subjectAltName = 'DNS:localhost,IP:127.0.0.1') {
      const key = join(dir, `${name}.key`);
      const csr = join(dir, `${name}.csr`);
      const cert = join(dir, `${name}.pem`);
      const ext = join(dir, `${name}.ext`);
      writeFileSync(ext, `subjectAltName=${subjectAltName}\n`);
      openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${name}`]);
      openssl(['x509', '-req', '-in', csr, '-CA', caCert, '-CAkey', caKey, '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', ext]);
      return { cert, key };
    },
  };
}

/** Replaces a file's content the way renewal tools do: write aside, then rename over it. */
export function replaceFile(path: string, from: string): void {
  writeFileSync(`${path}.new`, readFileSync(from));
  execFileSync('mv', [`${path}.new`, path]);
}
