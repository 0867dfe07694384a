/** The wire protocol: pure code, no sockets, timers or logging. See docs/protocol.md. */
export * from './addresses.js';
export * from './constants.js';
export * from './errors.js';
export * from './frame.js';
export * from './decoder.js';
export * from './handshake.js';
export * from './policy.js';
export * from './proof.js';
export * from './proxy-header.js';
