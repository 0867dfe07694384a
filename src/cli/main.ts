import { createClientAgent, createServerAgent, createTunnel, isRhostError, splitHostPort, VERSION, type Logger, type TunnelConfig } from '../index.js';
import { parseArgs, parseKeys, UsageError, type CliOptions } from './args.js';
import { modeHelp, overviewHelp } from './help.js';
import { readSecretFile, secretFrom } from './secrets.js';
import { createLogger } from './output.js';

/** Exit codes: 0 clean, 1 a runtime failure (refused, cannot listen), 2 a bad command line, 70 a bug (EX_SOFTWARE). */
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;
const EXIT_BUG = 70;

/** The exit code an error that stopped a mode stands for. */
function exitCodeOf(err: unknown): number {
  if (err instanceof UsageError || (isRhostError(err) && err.code === 'ERR_RHOST_BAD_OPTION')) return EXIT_USAGE;
  if (!isRhostError(err) || err.code === 'ERR_RHOST_BUG') return EXIT_BUG;
  return EXIT_FAILURE;
}

interface Running {
  close(): Promise<void>;
  /** Resolves with an error when the mode stopped on its own (a fatal refusal). */
  stopped: Promise<Error>;
}

async function runTunnel(o: CliOptions, log: Logger): Promise<Running> {
  const listen = o.tunnel ?? o.port ?? '7000';
  // A bare name would be a host with the default port: almost surely an agent's --tunnel given to the tunnel.
  if (!/^\d+$/.test(listen.trim()) && !listen.includes(':')) {
    const source = o.tunnel !== undefined ? '--tunnel' : 'PORT';
    throw new UsageError(`${source} ${JSON.stringify(listen)} is not an address to listen on: the tunnel takes a port, or host:port (agents take the tunnel's URL)`);
  }
  const { host: fromAddress, port } = splitHostPort('tunnel', listen, '', 7000);
  const host = o.host ?? (fromAddress || (o.port !== undefined ? '0.0.0.0' : '127.0.0.1'));
  const { maxStreams, ...limits } = o.limits;
  // Keys from the file fill in channels; a key given for a channel on the command line or in the environment wins.
  const fromFile = o.keysFile === undefined ? {} : parseKeys(readSecretFile(o.keysFile, 'keys-file', log), `--keys-file ${o.keysFile}`);
  const tunnel = createTunnel({
    ...(limits as Partial<TunnelConfig>), // types are checked by the tunnel's option verification
    port,
    host,
    keys: { ...fromFile, ...o.keys },
    openChannels: o.openChannels,
    domains: o.domains,
    routes: o.routes,
    channelPolicies: o.channelPolicies,
    session: {
      ...(o.ping !== undefined ? { pingIntervalMs: o.ping } : {}),
      ...(maxStreams !== undefined ? { maxStreams: maxStreams as number } : {}),
    },
    tlsCert: o.tlsCert,
    tlsKey: o.tlsKey,
    ...(o.drainTimeoutMs !== undefined ? { drainTimeoutMs: o.drainTimeoutMs } : {}),
    ...(o.summaryIntervalMs !== undefined ? { summaryIntervalMs: o.summaryIntervalMs } : {}),
    logger: log,
  });
  await tunnel.listen();
  return { close: () => tunnel.close(), stopped: new Promise(() => {}) };
}

/** Options both agents take from the command line. */
function agentOptions(o: CliOptions, log: Logger) {
  return {
    ...(o.tunnel !== undefined ? { tunnel: o.tunnel } : {}),
    ...(o.channel !== undefined ? { channel: o.channel } : {}),
    ...(o.ping !== undefined ? { pingIntervalMs: o.ping } : {}),
    ...(o.limits.maxStreams !== undefined ? { session: { maxStreams: o.limits.maxStreams as number } } : {}),
    ...(o.transport !== undefined ? { transport: o.transport as 'auto' } : {}),
    ...(o.summaryIntervalMs !== undefined ? { summaryIntervalMs: o.summaryIntervalMs } : {}),
    ca: o.ca,
    insecure: o.insecure,
    proxy: o.proxy,
    logger: log,
  };
}

async function runServer(o: CliOptions, log: Logger): Promise<Running> {
  if (o.server === undefined) throw new UsageError('server mode needs --server: the local service to expose, e.g. --server 8080');
  const key = secretFrom(o.key, o.keyFile, 'key', log);
  const token = secretFrom(o.token, o.tokenFile, 'token', log);
  const agent = createServerAgent({
    ...agentOptions(o, log),
    target: o.server,
    key,
    token,
    public: o.public,
    allow: o.allow,
    deny: o.deny,
    sendProxy: o.sendProxy as 'v1' | undefined, // checked by the agent's option verification
    http: o.http,
    ...(o.hostHeader !== undefined ? { hostHeader: o.hostHeader } : {}),
    basicAuth: o.basicAuth,
  });
  const stopped = new Promise<Error>((resolve) => agent.once('fatal', resolve));
  log.info(`server agent for ${agent.config.channel} → ${o.server}, via the tunnel at ${agent.config.tunnel}`);
  agent.start().catch(() => {}); // a refusal arrives as `fatal`; transient failures are retried
  return { close: () => agent.close({ drainTimeoutMs: o.drainTimeoutMs }), stopped };
}

async function runClient(o: CliOptions, log: Logger): Promise<Running> {
  const token = secretFrom(o.token, o.tokenFile, 'token', log);
  const agent = createClientAgent({ ...agentOptions(o, log), ...(o.client !== undefined ? { listen: o.client } : {}), token });
  const stopped = new Promise<Error>((resolve) => agent.once('fatal', resolve));
  await agent.listen();
  return { close: () => agent.close({ drainTimeoutMs: o.drainTimeoutMs }), stopped };
}

/** Runs the CLI; resolves with the exit code. */
export async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  let options: CliOptions;
  try {
    options = parseArgs(argv, env);
  } catch (err) {
    process.stderr.write(`rhost: ${(err as Error).message}\n`);
    return EXIT_USAGE;
  }
  if (options.help) {
    process.stdout.write(options.mode ? modeHelp(options.mode) : overviewHelp());
    return 0;
  }
  if (options.version) {
    process.stdout.write(`rhost ${VERSION}\n`);
    return 0;
  }
  if (options.mode === undefined) {
    process.stderr.write('rhost: which mode? rhost tunnel | server | client (see rhost --help)\n');
    return EXIT_USAGE;
  }
  const log = createLogger(options.log, options.logLevel, (line) => process.stdout.write(`${line}\n`));
  let finish!: (code: number) => void;
  const done = new Promise<number>((resolve) => (finish = resolve));
  let running: Running | null = null;
  let stopping: string | null = null;
  const stop = (signal: string): void => {
    if (stopping !== null) {
      log.warn(`${signal} again: exiting without waiting`);
      finish(EXIT_FAILURE);
      return;
    }
    stopping = signal;
    if (!running) return; // still starting: stops as soon as it has started
    log.info(`${signal}: shutting down (send it again to force)`);
    running.close().then(
      () => finish(0),
      (err) => {
        log.error(`shutdown failed: ${(err as Error).message}`);
        finish(EXIT_FAILURE);
      },
    );
  };
  // Installed before anything listens, so a signal during startup is never the default (abrupt) one.
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  try {
    const run = { tunnel: runTunnel, server: runServer, client: runClient }[options.mode];
    running = await run(options, log);
  } catch (err) {
    const code = exitCodeOf(err);
    // A failure with no code of ours (not EADDRINUSE and the like, which have one of Node's) is a bug: its stack helps.
    const bug = code === EXIT_BUG && !(err as NodeJS.ErrnoException).code;
    process.stderr.write(`rhost: ${bug ? `unexpected error (a bug; please report it): ${(err as Error).stack}` : (err as Error).message}\n`);
    return bug ? EXIT_BUG : code === EXIT_BUG ? EXIT_FAILURE : code;
  }
  const started = running;
  if (stopping !== null) {
    const signal = stopping;
    stopping = null;
    stop(signal);
  }
  started.stopped.then(async (err) => {
    process.stderr.write(`rhost: ${err.message}\n`);
    await started.close().catch(() => {});
    finish(exitCodeOf(err));
  });
  return done;
}
