import { run, sleep } from './procs.js';

/** What wrk measured. */
export interface WrkResult {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

function ms(value: string, unit: string): number {
  const v = Number(value);
  return unit === 'us' ? v / 1000 : unit === 's' ? v * 1000 : unit === 'm' ? v * 60_000 : v;
}

/** Runs wrk (one thread, like the reference figures) and parses its report. */
export async function wrk(url: string, seconds: number, connections: number, close = false, headers: string[] = []): Promise<WrkResult> {
  const args = ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', '--timeout', '5s', ...headers.flatMap((h) => ['-H', h])];
  if (close) args.push('-H', 'Connection: close');
  const out = await run('wrk', [...args, url], (seconds + 30) * 1000);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0);
  const p50 = /\s50%\s+([\d.]+)(us|ms|s|m)/.exec(out);
  const p99 = /\s99%\s+([\d.]+)(us|ms|s|m)/.exec(out);
  const err = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const errors = (err ? err.slice(1).reduce((s, n) => s + Number(n), 0) : 0) + non2xx;
  return { rps, p50Ms: p50 ? ms(p50[1]!, p50[2]!) : NaN, p99Ms: p99 ? ms(p99[1]!, p99[2]!) : NaN, errors };
}

/** Runs one iperf3 stream for `seconds`; `reverse`: the server (the service) sends. Resolves with Gbit/s received. */
export async function iperf(port: number, seconds: number, reverse: boolean): Promise<number> {
  const args = ['-c', '127.0.0.1', '-p', String(port), '-t', String(seconds), '-J', '-P', '1'];
  if (reverse) args.push('-R');
  let last = '';
  // iperf3's server runs one test at a time; a readiness probe that reached it can fail the next test.
  for (let attempt = 0; attempt < 3; attempt++) {
    let out = '';
    try {
      out = await run('iperf3', args, (seconds + 30) * 1000);
    } catch (err) {
      out = (err as Error).message;
    }
    const match = /\{[^]*\}/.exec(out);
    const report = match ? (JSON.parse(match[0]) as { error?: string; end?: { sum_received?: { bits_per_second: number } } }) : null;
    const bps = report?.end?.sum_received?.bits_per_second;
    if (bps !== undefined && !report?.error) return bps / 1e9;
    last = report?.error ?? out.slice(0, 200);
    await sleep(500);
  }
  throw new Error(`iperf3 failed: ${last}`);
}
