/**
 * rhost's public API. Everything the CLI does is available here:
 *
 * ```ts
 * import { createTunnel, createServerAgent, createClientAgent } from 'rhost';
 * const tunnel = createTunnel({ port: 7000, keys: { '/ssh': 'k' } });
 * await tunnel.listen();
 * ```
 *
 * Everything not exported here is internal.
 */
import { Tunnel } from './relay/tunnel.js';
import type { TunnelConfig } from './relay/config.js';
import { ServerAgent, type ServerAgentConfig } from './agent/server-agent.js';
import { ClientAgent, type ClientAgentConfig } from './agent/client-agent.js';

/** Creates a tunnel; call `listen()` to start it. */
export function createTunnel(options?: Partial<TunnelConfig>): Tunnel {
  return new Tunnel(options);
}

/** Creates a server agent that exposes `options.target`; call `start()`. */
export function createServerAgent(options: Partial<ServerAgentConfig> & Pick<ServerAgentConfig, 'target'>): ServerAgent {
  return new ServerAgent(options);
}

/** Creates a client agent that serves a channel on a local port; call `listen()`. */
export function createClientAgent(options: Partial<ClientAgentConfig>): ClientAgent {
  return new ClientAgent(options);
}

export { Tunnel, type TunnelAddressInfo, type TunnelStats, type AgentInfo, type TunnelEvents } from './relay/tunnel.js';
export { DEFAULT_TUNNEL_CONFIG, type TunnelConfig } from './relay/config.js';
export { ServerAgent, DEFAULT_SERVER_AGENT_CONFIG, type ServerAgentConfig, type ServerAgentEvents } from './agent/server-agent.js';
export { ClientAgent, DEFAULT_CLIENT_AGENT_CONFIG, type ClientAgentConfig, type ClientAgentEvents } from './agent/client-agent.js';
export type { AgentConfig } from './agent/config.js';
export { Session, type SessionOptions, type SessionStats, type SessionEvents } from './mux/session.js';
export { Stream } from './mux/stream.js';
export { DEFAULT_SESSION_CONFIG, type SessionConfig } from './mux/config.js';
export { type SpliceEnd } from './mux/splice.js';
export { IncomingStream } from './mux/incoming-stream.js';
export { relayStream } from './mux/relay.js';
export { RhostError, ERROR_CODES, isRhostError, type RhostErrorCode } from './errors.js';
export { ProtocolError, PeerError, WireError, Role, PROTOCOL_VERSION, INITIAL_WINDOW_BYTES } from './protocol/index.js';
export { silentLogger, type Logger, type LogFields, type LogLevel } from './log.js';
export { isValidChannel } from './protocol/index.js';
export { splitHostPort } from './transport/address.js';
export { VERSION } from './version.js';
