import type net from 'node:net';

/** One accepted connection and who it really comes from. */
export interface Connection {
  /** What to read and write: the accepted socket, or the TLS socket over it. */
  socket: net.Socket;
  /** The accepted TCP socket, for bookkeeping. */
  raw: net.Socket;
  /** The client's address: the socket's peer, or what a trusted proxy said. */
  ip: string;
  /**
   * The address per-address limits count under: `ip`, or empty when the
   * connection comes from a trusted proxy that did not say for whom (it
   * speaks for many clients; only the overall limits apply).
   */
  limitIp: string;
  port: number;
  /** `ip:port`, for logs. */
  remote: string;
  /** The user's bytes came over TLS the tunnel decrypted. */
  tls: boolean;
}

/** What the tunnel's parts report through the tunnel's events. */
export type Emit = (event: string, ...args: unknown[]) => void;
