import { Duplex } from 'node:stream';
import type net from 'node:net';
import type http from 'node:http';
import { WebSocket, WebSocketServer } from 'ws';
import { RhostError } from '../errors.js';

/** The subprotocol agents ask for, next to `GET /.rhost`: it cannot collide with a user's own WebSocket. */
export const WEBSOCKET_PROTOCOL = 'rhost.v1';

/** Frames written in one turn go out in messages of at most this size. */
export const MESSAGE_BYTES = 1024 * 1024;

/**
 * Largest WebSocket message either side accepts: rhost sends at most 1 MiB;
 * the rest is room for agents of protocol 1, whose messages could pass
 * 1 MiB by one frame (256 KiB).
 */
export const MAX_WEBSOCKET_MESSAGE_BYTES = MESSAGE_BYTES + 512 * 1024;

/**
 * What a session may hold of an unfinished message, once authenticated: one
 * whole message and its framing.
 */
export const MAX_HELD_BYTES = MAX_WEBSOCKET_MESSAGE_BYTES + 64 * 1024;

/**
 * What a WebSocket may hold before its agent proved anything: the AUTH
 * frame (at most 1,033 bytes) and its framing, with room.
 */
export const UNAUTHENTICATED_HELD_BYTES = 8 * 1024;

/** Bytes of a WebSocket frame's header for a payload of `length` (RFC 6455 §5.2). */
function frameHeaderBytes(length: number, masked: boolean): number {
  return 2 + (length > 65_535 ? 8 : length > 125 ? 2 : 0) + (masked ? 4 : 0);
}

/** How a WebSocketDuplex accounts for the bytes it has read but not yet delivered. */
export interface HeldBytes {
  /** The raw socket under the WebSocket, whose reads are counted. */
  socket: Duplex;
  /** Most held at once before the session is dropped (close 1009). */
  limit: number;
  /** Called with every change of what is held, for a memory account (the tunnel's). */
  onChange?: (delta: number) => void;
  /** The peer masks its frames (it is a client): 4 more header bytes per frame. */
  peerMasks: boolean;
}

/**
 * A byte stream over a WebSocket (from `ws`, which does the RFC 6455
 * framing): each write is a binary message, and each message read is the
 * next bytes. Writes gathered by cork() go out as one message, split at
 * exactly 1 MiB. Reading pauses the socket under backpressure; a write
 * completes when `ws` has handed it to the socket.
 *
 * `ws` keeps an unfinished message whole until its last byte arrives. With
 * `held`, what it keeps is counted (bytes read from the socket, less the
 * messages delivered and their framing) into a memory account, and bounded:
 * a peer cannot make the tunnel hold more than one message, nor a stranger
 * who has not proven a key anything beyond its AUTH frame.
 */
export class WebSocketDuplex extends Duplex {
  readonly #ws: WebSocket;
  readonly #held: HeldBytes | undefined;
  #holding = 0;

  constructor(ws: WebSocket, held?: HeldBytes) {
    super({ allowHalfOpen: false });
    this.#ws = ws;
    this.#held = held;
    ws.binaryType = 'nodebuffer';
    // Before ws's own listener: a read is counted in before the messages it completes are counted out.
    if (held) held.socket.prependListener('data', this.#onSocketData);
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (held) this.#hold(-(data.length + frameHeaderBytes(data.length, held.peerMasks)));
      // rhost frames travel in binary messages only (docs/protocol.md §3.5)
      if (!isBinary) return void this.destroy(new RhostError('ERR_RHOST_PROTOCOL', 'a text message on an rhost WebSocket'));
      if (!this.push(data)) ws.pause();
    });
    ws.once('close', () => {
      this.push(null);
      this.destroy();
    });
    ws.on('error', (err) => this.destroy(err));
  }

  /** Raises (or lowers) what may be held: the tunnel lifts it once the agent proved its key. */
  set heldLimit(bytes: number) {
    if (this.#held) this.#held.limit = bytes;
  }

  readonly #onSocketData = (chunk: Buffer): void => {
    this.#hold(chunk.length);
    if (this.#holding > this.#held!.limit && !this.destroyed) {
      this.#ws.close(1009, 'message too big');
      this.destroy(new RhostError('ERR_RHOST_BUSY', `the peer sent more than ${this.#held!.limit} bytes without finishing a WebSocket message`));
    }
  };

  /** Control frames and fragments are counted in but not out: the count errs high, only ever against the peer. */
  #hold(delta: number): void {
    const next = Math.max(0, this.#holding + delta);
    this.#held?.onChange?.(next - this.#holding);
    this.#holding = next;
  }

  override _read(): void {
    this.#ws.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.#sendAll([chunk], callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (err?: Error | null) => void): void {
    this.#sendAll(
      chunks.map((c) => c.chunk),
      callback,
    );
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.#ws.close(1000);
    callback();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.#held?.socket.off('data', this.#onSocketData);
    this.#hold(-this.#holding);
    if (this.#ws.readyState !== WebSocket.CLOSED) this.#ws.terminate();
    callback(err);
  }

  /** Sends the buffers as messages of at most MESSAGE_BYTES each, cutting a buffer where a message fills. */
  #sendAll(buffers: Buffer[], callback: (err?: Error | null) => void): void {
    let message: Buffer[] = [];
    let size = 0;
    for (let buffer of buffers) {
      while (size + buffer.length > MESSAGE_BYTES) {
        const room = MESSAGE_BYTES - size;
        message.push(buffer.subarray(0, room));
        this.#send(Buffer.concat(message), () => {});
        buffer = buffer.subarray(room);
        message = [];
        size = 0;
      }
      if (buffer.length > 0) {
        message.push(buffer);
        size += buffer.length;
      }
    }
    this.#send(message.length === 1 ? message[0]! : Buffer.concat(message), callback);
  }

  #send(data: Buffer, callback: (err?: Error | null) => void): void {
    if (this.#ws.readyState !== WebSocket.OPEN) return callback(new Error('the WebSocket is closed'));
    this.#ws.send(data, { binary: true }, (err) => callback(err ?? null));
  }
}

/** A WebSocket server that only completes upgrades the tunnel already decided to accept. */
export function createUpgrader(onHeaders: (headers: string[], req: http.IncomingMessage) => void): WebSocketServer {
  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    maxPayload: MAX_WEBSOCKET_MESSAGE_BYTES,
    handleProtocols: (protocols) => (protocols.has(WEBSOCKET_PROTOCOL) ? WEBSOCKET_PROTOCOL : false),
  });
  wss.on('headers', onHeaders);
  return wss;
}

/**
 * Completes an agent's WebSocket upgrade on `socket`; resolves with the
 * stream of bytes over it, counting what it holds as `held` says. Rejects
 * when the socket closes first: `ws` ends an upgrade it finds invalid by
 * closing the socket, without a callback.
 */
export function acceptWebSocket(
  wss: WebSocketServer,
  req: http.IncomingMessage,
  socket: net.Socket,
  head: Buffer,
  held?: Omit<HeldBytes, 'socket' | 'peerMasks'>,
): Promise<WebSocketDuplex> {
  return new Promise((resolve, reject) => {
    const onClose = (): void => reject(new RhostError('ERR_RHOST_BAD_HANDSHAKE', 'the WebSocket upgrade was refused or abandoned'));
    socket.once('close', onClose);
    wss.handleUpgrade(req, socket, head, (ws) => {
      socket.off('close', onClose);
      resolve(new WebSocketDuplex(ws, held && { ...held, socket, peerMasks: true }));
    });
  });
}
