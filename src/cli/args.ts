import { isValidChannel, RhostError } from '../index.js';

/** The three modes of the seed. `proxy` is the seed's older name for `tunnel`. */
export type Mode = 'tunnel' | 'server' | 'client';

/** Everything the command line and the environment said, before any defaults. */
export interface CliOptions {
  mode: Mode | undefined;
  help: boolean;
  version: boolean;
  tunnel?: string;
  server?: string;
  client?: string;
  channel?: string;
  key?: string;
  token?: string;
  /** Files holding the key, the token, and (tunnel) the channel keys: kept out of `ps`. */
  keyFile?: string;
  tokenFile?: string;
  keysFile?: string;
  ping?: number;
  keys: Record<string, string>;
  openChannels: string[];
  host?: string;
  /** PORT from the environment: what a PaaS gives the tunnel. */
  port?: string;
  log: 'pretty' | 'json';
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  drainTimeoutMs?: number;
  summaryIntervalMs?: number;
  tlsCert?: string;
  tlsKey?: string;
  ca?: string;
  insecure: boolean;
  proxy?: string;
  transport?: string;
  /** Tunnel limits and proxy settings, by their TunnelConfig names (maxStreams: per session). */
  limits: Partial<Record<LimitName, number | boolean | string[]>>;
  /** Tunnel: host routing, and the operator's lists per channel. */
  domains: string[];
  routes: Record<string, string>;
  channelPolicies: Record<string, { allow?: string[]; deny?: string[] }>;
  /** Server agent: who may come in, and how users reach the service. */
  public: boolean;
  allow: string[];
  deny: string[];
  sendProxy?: string;
  http: boolean;
  hostHeader?: string;
  basicAuth: string[];
}

/** Tunnel options the CLI exposes directly (docs/limits.md). */
export type LimitName =
  | 'maxUsers'
  | 'maxUsersPerChannel'
  | 'maxUsersPerIp'
  | 'maxClientStreams'
  | 'userEvictIdleMs'
  | 'maxPendingHandshakes'
  | 'maxPendingHandshakesPerIp'
  | 'maxConnRatePerIp'
  | 'connBurstPerIp'
  | 'maxClientsPerChannel'
  | 'maxClientsPerIp'
  | 'allowLegacyAuth'
  | 'maxBufferedBytes'
  | 'maxStreams'
  | 'trustProxy'
  | 'proxyProtocol'
  | 'userIdleTimeoutMs'
  | 'handshakeTimeoutMs'
  | 'sniffTimeoutMs'
  | 'maxHeadBytes'
  | 'authLockoutMs'
  | 'authLockoutMaxMs';

/** Thrown for a bad command line: exit code 2, one line. */
export class UsageError extends RhostError {
  constructor(message: string) {
    super('ERR_RHOST_BAD_OPTION', message);
    this.name = 'UsageError';
  }
}

interface Flag {
  key: keyof CliOptions | 'keysJson' | 'openChannel' | 'domain' | 'route' | 'channelAllow' | 'channelDeny' | LimitName;
  short?: string;
  env?: string;
  boolean?: boolean;
  /** A tunnel limit: a whole number, a comma-separated list, or on/off. */
  limit?: 'number' | 'list' | 'switch';
}

const FLAGS: Record<string, Flag> = {
  tunnel: { key: 'tunnel', short: 't', env: 'TUNNEL' },
  server: { key: 'server', short: 's', env: 'SERVER' },
  client: { key: 'client', short: 'c', env: 'CLIENT' },
  channel: { key: 'channel', short: 'n', env: 'CHANNEL' },
  key: { key: 'key', short: 'k', env: 'KEY' },
  token: { key: 'token', short: 'o', env: 'TOKEN' },
  'key-file': { key: 'keyFile', env: 'KEY_FILE' },
  'token-file': { key: 'tokenFile', env: 'TOKEN_FILE' },
  // Not KEYS_FILE: by the KEYS_NAME rule, that is the key of channel /file.
  'keys-file': { key: 'keysFile', env: 'RHOST_KEYS_FILE' },
  ping: { key: 'ping', short: 'i', env: 'PING' },
  keys: { key: 'keysJson', short: 'e', env: 'KEYS' },
  'open-channel': { key: 'openChannel', env: 'OPEN_CHANNELS' },
  host: { key: 'host', env: 'RHOST_HOST' },
  log: { key: 'log', env: 'LOG' },
  'log-level': { key: 'logLevel', env: 'LOG_LEVEL' },
  'drain-timeout': { key: 'drainTimeoutMs', env: 'DRAIN_TIMEOUT' },
  'summary-interval': { key: 'summaryIntervalMs', env: 'SUMMARY_INTERVAL' },
  'max-users': { key: 'maxUsers', env: 'MAX_USERS', limit: 'number' },
  'max-users-per-channel': { key: 'maxUsersPerChannel', env: 'MAX_USERS_PER_CHANNEL', limit: 'number' },
  'max-users-per-ip': { key: 'maxUsersPerIp', env: 'MAX_USERS_PER_IP', limit: 'number' },
  'max-client-streams': { key: 'maxClientStreams', env: 'MAX_CLIENT_STREAMS', limit: 'number' },
  'user-evict-idle': { key: 'userEvictIdleMs', env: 'USER_EVICT_IDLE', limit: 'number' },
  'max-pending': { key: 'maxPendingHandshakes', env: 'MAX_PENDING', limit: 'number' },
  'max-pending-per-ip': { key: 'maxPendingHandshakesPerIp', env: 'MAX_PENDING_PER_IP', limit: 'number' },
  'max-conn-rate-per-ip': { key: 'maxConnRatePerIp', env: 'MAX_CONN_RATE_PER_IP', limit: 'number' },
  'conn-burst-per-ip': { key: 'connBurstPerIp', env: 'CONN_BURST_PER_IP', limit: 'number' },
  'max-clients': { key: 'maxClientsPerChannel', env: 'MAX_CLIENTS', limit: 'number' },
  'max-clients-per-ip': { key: 'maxClientsPerIp', env: 'MAX_CLIENTS_PER_IP', limit: 'number' },
  'allow-legacy-auth': { key: 'allowLegacyAuth', env: 'ALLOW_LEGACY_AUTH', limit: 'switch' },
  'max-buffered': { key: 'maxBufferedBytes', env: 'MAX_BUFFERED', limit: 'number' },
  'max-streams': { key: 'maxStreams', env: 'MAX_STREAMS', limit: 'number' },
  'trust-proxy': { key: 'trustProxy', env: 'TRUST_PROXY', limit: 'list' },
  'proxy-protocol': { key: 'proxyProtocol', env: 'PROXY_PROTOCOL', limit: 'switch' },
  'user-idle-timeout': { key: 'userIdleTimeoutMs', env: 'USER_IDLE_TIMEOUT', limit: 'number' },
  'handshake-timeout': { key: 'handshakeTimeoutMs', env: 'HANDSHAKE_TIMEOUT', limit: 'number' },
  'sniff-timeout': { key: 'sniffTimeoutMs', env: 'SNIFF_TIMEOUT', limit: 'number' },
  'max-head-bytes': { key: 'maxHeadBytes', env: 'MAX_HEAD_BYTES', limit: 'number' },
  'auth-lockout': { key: 'authLockoutMs', env: 'AUTH_LOCKOUT', limit: 'number' },
  'auth-lockout-max': { key: 'authLockoutMaxMs', env: 'AUTH_LOCKOUT_MAX', limit: 'number' },
  domain: { key: 'domain', env: 'DOMAIN' },
  route: { key: 'route', env: 'ROUTES' },
  'channel-allow': { key: 'channelAllow', env: 'CHANNEL_ALLOW' },
  'channel-deny': { key: 'channelDeny', env: 'CHANNEL_DENY' },
  public: { key: 'public', env: 'PUBLIC', boolean: true },
  allow: { key: 'allow', env: 'ALLOW' },
  deny: { key: 'deny', env: 'DENY' },
  'send-proxy': { key: 'sendProxy', env: 'SEND_PROXY' },
  http: { key: 'http', env: 'HTTP', boolean: true },
  'host-header': { key: 'hostHeader', env: 'HOST_HEADER' },
  'basic-auth': { key: 'basicAuth', env: 'BASIC_AUTH' },
  'tls-cert': { key: 'tlsCert', env: 'TLS_CERT' },
  'tls-key': { key: 'tlsKey', env: 'TLS_KEY' },
  ca: { key: 'ca', env: 'CA' },
  insecure: { key: 'insecure', boolean: true },
  proxy: { key: 'proxy' },
  transport: { key: 'transport', env: 'TRANSPORT' },
  help: { key: 'help', short: 'h', boolean: true },
  version: { key: 'version', short: 'v', boolean: true },
};

const SHORT = new Map(Object.entries(FLAGS).flatMap(([name, f]) => (f.short ? [[f.short, name] as const] : [])));

/** `ssh` → `/ssh`, `a_b` → `/a/b`, `` → `/`: the seed's --keys_NAME and KEYS_NAME. */
export function channelFromSuffix(suffix: string): string {
  const channel = `/${suffix.toLowerCase().split('_').filter(Boolean).join('/')}`;
  if (!isValidChannel(channel)) throw new UsageError(`keys_${suffix} does not name a valid channel`);
  return channel;
}

/** KEYS: a JSON object of channel keys, or (not starting with `{`) the key of channel `/`. */
export function parseKeys(text: string, where: string): Record<string, string> {
  const trimmed = text.trim();
  if (!trimmed.startsWith('{')) return { '/': trimmed };
  let parsed: unknown;
  try {
    parsed = JSON.parse(trimmed);
  } catch {
    throw new UsageError(`${where} is not valid JSON: expected {"/": "key", "/ssh": "key"}`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new UsageError(`${where} must be a JSON object of channel keys`);
  const keys: Record<string, string> = {};
  for (const [channel, key] of Object.entries(parsed)) {
    if (typeof key !== 'string') throw new UsageError(`${where}: the key for ${channel} must be a string`);
    keys[channel] = key;
  }
  return keys;
}

function number(name: string, text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n)) throw new UsageError(`--${name} must be a positive whole number (or 0), got ${JSON.stringify(text)}`);
  return n;
}

/** Edit distance, for "did you mean": small strings only. */
function distance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    row = next;
  }
  return row[b.length]!;
}

/** The flag a mistyped one most likely meant, if one is close. */
function suggest(name: string): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(name.length / 4)) + 1;
  for (const candidate of Object.keys(FLAGS)) {
    const d = distance(name, candidate);
    if (d < bestDistance || (d === bestDistance - 1 && candidate.startsWith(name))) {
      best = candidate;
      bestDistance = d;
    }
  }
  if (!best && name.length >= 3) best = Object.keys(FLAGS).find((c) => c.startsWith(name));
  return best;
}

function assign(out: CliOptions, name: string, flag: Flag, value: string): void {
  if (flag.limit) {
    const limit = flag.key as LimitName;
    if (flag.limit === 'number') out.limits[limit] = number(name, value);
    else if (flag.limit === 'list') out.limits[limit] = value.split(',').map((v) => v.trim()).filter(Boolean);
    else out.limits[limit] = onOff(name, value);
    return;
  }
  switch (flag.key) {
    case 'keysJson':
      Object.assign(out.keys, parseKeys(value, `--${name}`));
      return;
    case 'openChannel':
      out.openChannels.push(...list(value));
      return;
    case 'domain':
      out.domains.push(...list(value));
      return;
    case 'allow':
    case 'deny':
      out[flag.key].push(...list(value));
      return;
    case 'basicAuth':
      out.basicAuth.push(...list(value));
      return;
    case 'route':
      for (const entry of list(value)) {
        const [host, channel] = pair(name, entry, 'HOST=CHANNEL, e.g. shop.example.org=/app');
        out.routes[host] = channel;
      }
      return;
    case 'channelAllow':
    case 'channelDeny':
      // CHANNEL=CIDR[,CIDR…]; several channels are separated by `;` (or given as separate flags)
      for (const entry of value.split(';').map((e) => e.trim()).filter(Boolean)) {
        const [channel, cidrs] = pair(name, entry, 'CHANNEL=CIDR[,CIDR…], e.g. /app=10.0.0.0/8');
        const policy = (out.channelPolicies[channel] ??= {});
        (flag.key === 'channelAllow' ? (policy.allow ??= []) : (policy.deny ??= [])).push(...list(cidrs));
      }
      return;
    case 'ping':
      out.ping = number(name, value);
      return;
    case 'drainTimeoutMs':
    case 'summaryIntervalMs':
      out[flag.key] = number(name, value);
      return;
    case 'log':
      if (value !== 'pretty' && value !== 'json') throw new UsageError('--log must be pretty or json');
      out.log = value;
      return;
    case 'logLevel':
      if (!['debug', 'info', 'warn', 'error'].includes(value)) throw new UsageError('--log-level must be debug, info, warn or error');
      out.logLevel = value as CliOptions['logLevel'];
      return;
    default:
      (out as unknown as Record<string, string>)[flag.key] = value;
  }
}

function list(value: string): string[] {
  return value.split(',').map((v) => v.trim()).filter(Boolean);
}

/** `LEFT=RIGHT`, both non-empty. */
function pair(name: string, entry: string, form: string): [string, string] {
  const eq = entry.indexOf('=');
  if (eq < 1 || eq === entry.length - 1) throw new UsageError(`--${name} takes ${form}; got ${JSON.stringify(entry)}`);
  return [entry.slice(0, eq).trim(), entry.slice(eq + 1).trim()];
}

/** `on`/`off` and their usual spellings, for switches given a value (`--insecure=false`). */
function onOff(name: string, value: string): boolean {
  if (/^(1|true|yes|on)$/i.test(value)) return true;
  if (/^(0|false|no|off)$/i.test(value)) return false;
  throw new UsageError(`--${name} must be on or off`);
}

/**
 * Reads the command line, then the environment for whatever the command line
 * left unset (flags win). Throws UsageError with one clear line.
 */
export function parseArgs(argv: readonly string[], env: NodeJS.ProcessEnv): CliOptions {
  const out: CliOptions = {
    mode: undefined,
    help: false,
    version: false,
    insecure: false,
    keys: {},
    openChannels: [],
    log: 'pretty',
    logLevel: 'info',
    limits: {},
    domains: [],
    routes: {},
    channelPolicies: {},
    public: false,
    allow: [],
    deny: [],
    http: false,
    basicAuth: [],
  };
  const seen = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('-') || arg === '-') {
      if (out.mode !== undefined) throw new UsageError(`unexpected argument ${JSON.stringify(arg)}`);
      const mode = arg === 'proxy' ? 'tunnel' : arg;
      if (mode !== 'tunnel' && mode !== 'server' && mode !== 'client') throw new UsageError(`unknown mode ${JSON.stringify(arg)}: use tunnel, server or client`);
      out.mode = mode;
      continue;
    }
    const long = arg.startsWith('--');
    const eq = arg.indexOf('=');
    const rawName = long ? arg.slice(2, eq > 0 ? eq : undefined) : arg.slice(1, 2);
    const name = long ? rawName : SHORT.get(rawName);
    const inline = long && eq > 0 ? arg.slice(eq + 1) : !long && arg.length > 2 ? arg.slice(2) : undefined;
    if (name?.startsWith('keys_')) {
      const value = inline ?? argv[++i];
      if (value === undefined) throw new UsageError(`--${name} needs a value`);
      out.keys[channelFromSuffix(name.slice(5))] = value;
      continue;
    }
    const flag = name === undefined ? undefined : FLAGS[name];
    if (!flag || name === undefined) {
      const guess = long ? suggest(rawName) : undefined;
      throw new UsageError(`unknown option ${arg}${guess ? `: did you mean --${guess}?` : ''} (see rhost ${out.mode ?? ''}${out.mode ? ' ' : ''}--help)`);
    }
    seen.add(flag.key);
    if (flag.boolean) {
      (out as unknown as Record<string, boolean>)[flag.key] = inline === undefined ? true : onOff(name, inline);
      continue;
    }
    if (flag.limit === 'switch' && inline === undefined) {
      out.limits[flag.key as LimitName] = true;
      continue;
    }
    const value = inline ?? argv[++i];
    if (value === undefined) throw new UsageError(`--${name} needs a value`);
    assign(out, name, flag, value);
  }
  for (const [name, flag] of Object.entries(FLAGS)) {
    if (flag.env === undefined || seen.has(flag.key)) continue;
    const value = env[flag.env];
    if (value === undefined || value === '') continue;
    if (flag.key === 'keysJson') {
      // KEYS fills in channels, never replaces a key given by a --keys_NAME flag
      for (const [channel, key] of Object.entries(parseKeys(value, flag.env))) if (!(channel in out.keys)) out.keys[channel] = key;
      continue;
    }
    if (flag.boolean) {
      (out as unknown as Record<string, boolean>)[flag.key] = onOff(name, value);
      continue;
    }
    assign(out, name, flag, value);
  }
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('KEYS_') || value === undefined || value === '') continue;
    const channel = channelFromSuffix(name.slice(5));
    if (!(channel in out.keys)) out.keys[channel] = value;
  }
  if (env.PORT !== undefined && env.PORT !== '') out.port = env.PORT;
  return out;
}
