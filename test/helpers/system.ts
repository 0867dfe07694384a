import { execFileSync } from 'node:child_process';
import type { TestContext } from 'node:test';

/** Where a system binary is, or null. */
export function which(name: string): string | null {
  for (const dir of ['/usr/sbin', '/usr/bin', '/sbin', '/bin', '/usr/local/bin']) {
    try {
      execFileSync('test', ['-x', `${dir}/${name}`]);
      return `${dir}/${name}`;
    } catch {
      // not here
    }
  }
  return null;
}

/**
 * Checks that real peers from Debian are installed. In CI
 * (RHOST_REQUIRE_SYSTEM=1) a missing one fails the test; on a developer's
 * machine the test is skipped and says why.
 */
export function requireBinaries(t: TestContext, ...names: string[]): boolean {
  const missing = names.filter((n) => which(n) === null);
  if (missing.length === 0) return true;
  const why = `needs ${missing.join(', ')} (apt-get install ${missing.join(' ')}; .ci/run does)`;
  if (process.env.RHOST_REQUIRE_SYSTEM === '1') throw new Error(why);
  t.skip(why);
  return false;
}

/** Memory the process holds for JavaScript: the heap plus Buffers (which live outside it). */
export function usedMemory(): number {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}
