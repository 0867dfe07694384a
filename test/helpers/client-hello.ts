import { once } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';

/**
 * The first bytes a real TLS client (Node's OpenSSL) sends: its ClientHello
 * records, for `servername` (none when null), captured on a loopback
 * server that never answers.
 */
export async function captureClientHello(servername: string | null, options: tls.ConnectionOptions = {}): Promise<Buffer> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const got = new Promise<Buffer>((resolve) => {
    server.once('connection', (s) => {
      const parts: Buffer[] = [];
      s.on('data', (d: Buffer) => {
        parts.push(d);
        const all = Buffer.concat(parts);
        // A whole ClientHello: the records' lengths add up to what arrived.
        let at = 0;
        while (at + 5 <= all.length) at += 5 + all.readUInt16BE(at + 3);
        if (at === all.length) {
          s.destroy();
          resolve(all);
        }
      });
    });
  });
  const client = tls.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', ...(servername ? { servername } : {}), rejectUnauthorized: false, ...options });
  client.on('error', () => {});
  const bytes = await got;
  client.destroy();
  server.close();
  return bytes;
}
