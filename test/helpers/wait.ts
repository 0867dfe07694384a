/**
 * Waits for `condition` to hold, checking every few ms; fails after
 * `timeoutMs` saying what it waited for. For state that changes without an
 * event to wait on (a counter, a table's size); where there is an event,
 * wait on the event.
 */
export async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
