import { readFileSync } from 'node:fs';
import https from 'node:https';

/** An HTTPS GET to 127.0.0.1:`port` for the name localhost, trusting the CA in the PEM file `ca`; resolves with status and body. */
export function httpsGet(port: number, path: string, ca: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    https
      .get({ host: '127.0.0.1', port, path, servername: 'localhost', ca: readFileSync(ca), agent: false }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}
