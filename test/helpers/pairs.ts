import { Duplex } from 'node:stream';
import net from 'node:net';
import { once } from 'node:events';

/**
 * An in-memory duplex pair with real backpressure: a write completes only
 * when the other side's reader has room. Destroying one side ends the other,
 * as closing a TCP socket does.
 */
class MemorySide extends Duplex {
  peer!: MemorySide;
  waiting: (() => void) | null = null;
  /** False once the link is cut: nothing crosses it any more, not even a close. */
  linked = true;

  constructor(highWaterMark: number) {
    super({ highWaterMark, allowHalfOpen: false });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    if (!this.linked) return callback();
    if (this.peer.destroyed) return callback(Object.assign(new Error('peer closed'), { code: 'EPIPE' }));
    if (this.peer.push(chunk)) callback();
    else this.peer.waiting = () => callback();
  }

  override _final(callback: (err?: Error | null) => void): void {
    if (this.linked && !this.peer.destroyed) this.peer.push(null);
    callback();
  }

  override _read(): void {
    const release = this.waiting;
    this.waiting = null;
    release?.();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    const peer = this.peer;
    const release = this.waiting;
    this.waiting = null;
    release?.();
    process.nextTick(() => {
      if (this.linked && !peer.destroyed) {
        peer.push(null);
        peer.destroy();
      }
    });
    callback(err);
  }
}

/** Two connected in-memory Duplexes. */
export function memoryPair(highWaterMark = 64 * 1024): [Duplex, Duplex] {
  const a = new MemorySide(highWaterMark);
  const b = new MemorySide(highWaterMark);
  a.peer = b;
  b.peer = a;
  return [a, b];
}

/** Two connected TCP sockets on loopback, from a listener on port 0 that is closed before returning. */
export async function tcpPair(): Promise<[net.Socket, net.Socket]> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const client = net.connect(port, '127.0.0.1');
  await once(client, 'connect');
  const [serverSide] = await accepted;
  server.close();
  client.setNoDelay(true);
  serverSide.setNoDelay(true);
  return [client, serverSide];
}

export type PairKind = 'memory' | 'tcp';

/** A connected pair of the given kind: the suite runs once per kind (hashicorp testConnTypes). */
export async function makePair(kind: PairKind): Promise<[Duplex, Duplex]> {
  return kind === 'memory' ? memoryPair() : tcpPair();
}

/**
 * An in-memory pair whose link can be cut: after `cut()`, bytes written either
 * way vanish while both ends stay open, like a peer that lost power behind a
 * NAT. Nothing is closed, so only keepalive can notice.
 */
export function cuttablePair(): { a: Duplex; b: Duplex; cut: () => void } {
  const [a, b] = memoryPair() as [MemorySide, MemorySide];
  return { a, b, cut: () => void (a.linked = b.linked = false) };
}
