import type { RhostProcess } from './cli.js';

/**
 * Resolves with a server agent's `serving` line; fails as soon as the agent
 * says it is retrying instead (or exits), so that a transport that does not
 * work fails the test at once, with the agent's reason, not at the test's
 * timeout.
 */
export function untilServing(agent: RhostProcess): Promise<Record<string, unknown>> {
  const retrying = agent.waitForEvent('retrying').then((e) => Promise.reject(new Error(`the agent retries instead of serving: ${String(e.msg)}`)));
  return Promise.race([agent.waitForEvent('serving'), retrying]);
}

/** Resolves with the exit code, or fails as soon as the agent says it is retrying instead of giving up. */
export function untilExit(agent: RhostProcess): Promise<number | null> {
  const retrying = agent.waitForEvent('retrying').then((e) => Promise.reject(new Error(`the agent retries instead of exiting: ${String(e.msg)}`)));
  retrying.catch(() => {}); // once it has exited, this one rejects too, unobserved
  return Promise.race([agent.exited, retrying]);
}
