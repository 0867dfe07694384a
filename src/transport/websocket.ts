import { Duplex } from 'node:stream';
import type net from 'node:net';
import type http from 'node:http';
import { WebSocket, WebSocketServer } from 'ws';
import { RhostError } from '../errors.js';

/** The subprotocol agents ask for, next to `GET /.rhost`: it cannot collide with a user's own WebSocket. */
export const WEBSOCKET_PROTOCOL = 'rhost.v1';

/** Largest WebSocket message either side accepts: the frames of one event-loop turn, with room. */
export const MAX_WEBSOCKET_MESSAGE_BYTES = 4 * 1024 * 1024;

/** Frames written in one turn go out in messages of at most this size. */
const MESSAGE_BYTES = 1024 * 1024;

/**
 * A byte stream over a WebSocket (from `ws`, which does the RFC 6455
 * framing): each write is a binary message, and each message read is the
 * next bytes. Writes gathered by cork() go out as one message. Reading
 * pauses the socket under backpressure; a write completes when `ws` has
 * handed it to the socket.
 */
export class WebSocketDuplex extends Duplex {
  readonly #ws: WebSocket;

  constructor(ws: WebSocket) {
    super({ allowHalfOpen: false });
    this.#ws = ws;
    ws.binaryType = 'nodebuffer';
    ws.on('message', (data: Buffer, isBinary: boolean) => {
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

  override _read(): void {
    this.#ws.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.#send(chunk, callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (err?: Error | null) => void): void {
    const buffers = chunks.map((c) => c.chunk);
    let total = 0;
    let start = 0;
    for (let i = 0; i < buffers.length; i++) {
      total += buffers[i]!.length;
      if (total >= MESSAGE_BYTES && i < buffers.length - 1) {
        this.#send(Buffer.concat(buffers.slice(start, i + 1)), () => {});
        start = i + 1;
        total = 0;
      }
    }
    this.#send(Buffer.concat(buffers.slice(start)), callback);
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.#ws.close(1000);
    callback();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    if (this.#ws.readyState !== WebSocket.CLOSED) this.#ws.terminate();
    callback(err);
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
 * stream of bytes over it. Rejects when the socket closes first: `ws` ends
 * an upgrade it finds invalid by closing the socket, without a callback.
 */
export function acceptWebSocket(wss: WebSocketServer, req: http.IncomingMessage, socket: net.Socket, head: Buffer): Promise<WebSocketDuplex> {
  return new Promise((resolve, reject) => {
    const onClose = (): void => reject(new RhostError('ERR_RHOST_BAD_HANDSHAKE', 'the WebSocket upgrade was refused or abandoned'));
    socket.once('close', onClose);
    wss.handleUpgrade(req, socket, head, (ws) => {
      socket.off('close', onClose);
      resolve(new WebSocketDuplex(ws));
    });
  });
}
