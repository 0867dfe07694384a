import { createHash } from 'node:crypto';
import { addressEntryProblem } from './addresses.js';

/**
 * What a server agent declares about who may reach its service (protocol
 * 3, docs/protocol.md §3.9): whether its channel answers by host name on
 * the public port, and which client addresses may come in. The tunnel
 * enforces it; the agent's proof covers it, so nothing on the way can
 * change it unseen. Pure: no sockets.
 */

/** Entries an allow or a deny list may have. */
export const MAX_POLICY_ENTRIES = 64;

export interface ServicePolicy {
  /** The channel answers by Host and SNI under the tunnel's domains. */
  public: boolean;
  /** Addresses and ranges that may come in (empty: everyone not denied). */
  allow: readonly string[];
  /** Addresses and ranges that may not. */
  deny: readonly string[];
}

export const OPEN_POLICY: ServicePolicy = Object.freeze({ public: false, allow: [], deny: [] });

/** Why a list is not a valid allow or deny list, or null. */
export function policyListProblem(name: string, list: readonly string[]): string | null {
  if (list.length > MAX_POLICY_ENTRIES) return `${name} has ${list.length} entries; at most ${MAX_POLICY_ENTRIES}`;
  for (const entry of list) {
    const problem = addressEntryProblem(entry);
    if (problem) return `${name} has ${problem}`;
  }
  return null;
}

/** The request headers that carry a policy; none for the open policy. */
export function policyHeaders(policy: ServicePolicy): Array<[string, string]> {
  const headers: Array<[string, string]> = [];
  if (policy.public) headers.push(['Rhost-Public', 'on']);
  if (policy.allow.length) headers.push(['Rhost-Allow', policy.allow.join(', ')]);
  if (policy.deny.length) headers.push(['Rhost-Deny', policy.deny.join(', ')]);
  return headers;
}

/** Reads a policy from request headers (names lower-case); throws TypeError saying what is wrong. */
export function parsePolicy(get: (name: string) => string | undefined): ServicePolicy {
  const flag = get('rhost-public');
  if (flag !== undefined && flag !== 'on') throw new TypeError('Rhost-Public must be on, when present');
  const list = (name: string): string[] => {
    const value = get(name.toLowerCase());
    if (value === undefined) return [];
    const entries = value.split(',').map((e) => e.trim());
    if (entries.some((e) => e === '')) throw new TypeError(`${name} has an empty entry`);
    const problem = policyListProblem(name, entries);
    if (problem) throw new TypeError(problem);
    return entries;
  };
  return { public: flag === 'on', allow: list('Rhost-Allow'), deny: list('Rhost-Deny') };
}

/**
 * What the proofs sign of a policy: SHA-256 of its canonical text
 * (`public=0|1;allow=A|B;deny=C`, entries as sent), base64url. The open
 * policy signs too, so a stripped header fails the proof.
 */
export function policyDigest(policy: ServicePolicy): string {
  const text = `public=${policy.public ? 1 : 0};allow=${policy.allow.join('|')};deny=${policy.deny.join('|')}`;
  return createHash('sha256').update(text, 'utf8').digest('base64url');
}
