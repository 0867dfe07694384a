import type { Mode } from './args.js';

/** One entry of the help: its flags, what it does, and the modes it belongs to. */
interface Entry {
  flags: string;
  text: string;
  modes: readonly Mode[];
}

const ALL: readonly Mode[] = ['tunnel', 'server', 'client'];
const AGENTS: readonly Mode[] = ['server', 'client'];

const ENTRIES: readonly Entry[] = [
  { flags: '-t, --tunnel ADDR', modes: ['tunnel'], text: 'the port or host:port to listen on [PORT]; default 7000' },
  {
    flags: '-t, --tunnel ADDR',
    modes: AGENTS,
    text: 'the tunnel, as host, host:port, port or a URL: http://, https:// (TLS), ws://, wss:// (WebSocket) [TUNNEL]; default localhost:7000',
  },
  { flags: '-s, --server ADDR', modes: ['server'], text: 'the local service, as port or host:port [SERVER]' },
  { flags: '-c, --client ADDR', modes: ['client'], text: 'where to listen, as port or host:port [CLIENT]; default 7002 on 127.0.0.1' },
  { flags: '-n, --channel NAME', modes: AGENTS, text: 'the channel to register or subscribe to [CHANNEL]; default /' },
  { flags: '-k, --key KEY', modes: ['server'], text: "the channel's key [KEY]; better: --key-file" },
  { flags: '    --key-file FILE', modes: ['server'], text: 'read the key from FILE, out of sight of ps [KEY_FILE]' },
  { flags: '-o, --token TOKEN', modes: ['server'], text: 'the token client agents must prove [TOKEN]; without one, no client agent may subscribe' },
  { flags: '    --public', modes: ['server'], text: "answer by name on the tunnel's --domain: NAME.DOMAIN for channel /NAME [PUBLIC=on]" },
  { flags: '    --allow LIST, --deny LIST', modes: ['server'], text: 'client addresses and CIDR ranges that may, or may not, reach the service; the tunnel enforces them [ALLOW, DENY]' },
  { flags: '    --send-proxy v1|v2', modes: ['server'], text: "start each connection to the service with a PROXY protocol header naming the user [SEND_PROXY]" },
  { flags: '    --http', modes: ['server'], text: 'carry users as HTTP requests: X-Forwarded-For, -Proto, -Host and Forwarded are added [HTTP=on]' },
  { flags: '    --host-header H', modes: ['server'], text: "with --http: the Host the service sees: preserve (the user's, default), rewrite (the service's address) or a value [HOST_HEADER]" },
  { flags: '    --basic-auth USER:PASS', modes: ['server'], text: 'every request must carry one of these credentials (HTTP Basic; implies --http); repeatable [BASIC_AUTH]' },
  { flags: '-o, --token TOKEN', modes: ['client'], text: "the token the channel's server agent set [TOKEN]" },
  { flags: '    --token-file FILE', modes: AGENTS, text: 'read the token from FILE [TOKEN_FILE]' },
  { flags: '-i, --ping MS', modes: ALL, text: 'keepalive interval [PING]; default 8000' },
  { flags: '-e, --keys KEYS', modes: ['tunnel'], text: 'channel keys as JSON, {"/":"k1","/ssh":"k2"}, or a single key for / [KEYS]' },
  { flags: '    --keys_NAME KEY', modes: ['tunnel'], text: 'the key of channel /NAME; --keys_a_b is /a/b [KEYS_NAME]' },
  { flags: '    --keys-file FILE', modes: ['tunnel'], text: 'channel keys from FILE, as KEYS takes them [RHOST_KEYS_FILE]' },
  { flags: '    --open-channel C', modes: ['tunnel'], text: 'let anyone register channel C without a key; repeatable [OPEN_CHANNELS=/,/x]' },
  {
    flags: '    --domain D',
    modes: ['tunnel'],
    text: 'route by Host and TLS SNI: NAME.D reaches /NAME when its server agent is --public, D reaches /; repeatable [DOMAIN=a.com,b.org]',
  },
  { flags: '    --route HOST=CHANNEL', modes: ['tunnel'], text: 'give a host name to a channel: shop.example.org=/app, *.example.org=/app; repeatable [ROUTES]' },
  {
    flags: '    --channel-allow C=CIDRS, --channel-deny C=CIDRS',
    modes: ['tunnel'],
    text: "who may reach channel C (addresses, CIDR ranges), combined with its server agent's lists; /app=10.0.0.0/8,192.0.2.1 [CHANNEL_ALLOW, CHANNEL_DENY: ; between channels]",
  },
  { flags: '    --host ADDR', modes: ['tunnel'], text: 'address to listen on [RHOST_HOST]; default 127.0.0.1, or 0.0.0.0 when PORT is set (a PaaS)' },
  { flags: '    --allow-legacy-auth', modes: ['tunnel'], text: 'also accept agents of protocol 1, which send their key in the clear request (unsafe; warns) [ALLOW_LEGACY_AUTH=on]' },
  { flags: '    --drain-timeout MS', modes: ALL, text: 'on SIGTERM, how long streams may finish [DRAIN_TIMEOUT]; default 30000' },
  { flags: '    --tls-cert FILE, --tls-key FILE', modes: ['tunnel'], text: 'also serve TLS on the port (PEM files, reloaded when they change) [TLS_CERT, TLS_KEY]' },
  { flags: '    --ca FILE', modes: AGENTS, text: "CA certificates to trust for https:// and wss://, on top of the system's [CA]" },
  { flags: '    --insecure', modes: AGENTS, text: 'skip TLS certificate checks (warns)' },
  { flags: '    --proxy URL', modes: AGENTS, text: 'leave through an HTTP proxy, http://[user:pass@]host:port; else HTTPS_PROXY, HTTP_PROXY and NO_PROXY decide' },
  { flags: '    --transport T', modes: AGENTS, text: 'auto (default: the raw upgrade, WebSocket when something on the way refuses it), raw or websocket [TRANSPORT]' },
  {
    flags: '    --trust-proxy LIST',
    modes: ['tunnel'],
    text: 'proxies whose word about the client is believed: addresses, CIDR ranges, loopback, or private (every internal range: a PaaS router) [TRUST_PROXY]',
  },
  { flags: '    --proxy-protocol', modes: ['tunnel'], text: 'trusted proxies send a PROXY v1/v2 header [PROXY_PROTOCOL=on]' },
  {
    flags:
      '    --max-users N, --max-users-per-channel N, --max-users-per-ip N, --max-client-streams N, --user-evict-idle MS, ' +
      '--max-pending N, --max-pending-per-ip N, --max-conn-rate-per-ip N, --conn-burst-per-ip N, --max-clients N, ' +
      '--max-clients-per-ip N, --max-buffered BYTES, --max-streams N, --user-idle-timeout MS, --handshake-timeout MS, ' +
      '--sniff-timeout MS, --max-head-bytes BYTES, --auth-lockout MS, --auth-lockout-max MS',
    modes: ['tunnel'],
    text: 'limits, each also an environment variable in capitals (--max-users: MAX_USERS); see docs/limits.md',
  },
  { flags: '    --max-streams N', modes: AGENTS, text: 'streams one session carries at once [MAX_STREAMS]; default 4096' },
  { flags: '    --log FORMAT', modes: ALL, text: 'pretty or json (one object per line) [LOG]' },
  {
    flags: '    --summary-interval MS',
    modes: ALL,
    text: 'how often the log sums up users per channel; each user has lines of its own at debug level [SUMMARY_INTERVAL]; default 60000',
  },
  { flags: '    --log-level LEVEL', modes: ALL, text: 'debug, info, warn or error [LOG_LEVEL]; default info' },
  { flags: '-h, --help', modes: ALL, text: 'this text' },
  { flags: '-v, --version', modes: ALL, text: 'the version' },
];

const EXAMPLES: Record<Mode, string> = {
  tunnel: `  openssl rand -base64 24 > ssh.key                  # a strong key
  KEYS_SSH=$(cat ssh.key) rhost tunnel --host 0.0.0.0 --tunnel 7000
  RHOST_KEYS_FILE=keys.json rhost tunnel             # {"/": "…", "/ssh": "…"}
  rhost tunnel --keys-file keys.json --domain tunnel.example.com --route shop.example.org=/shop`,
  server: `  rhost server -t tunnel.example.com:7000 -s 8080 --key-file web.key
  rhost server -t https://tunnel.example.com -s 22 -n /ssh --key-file ssh.key --token-file ssh.token
  rhost server -t https://tunnel.example.com -s 3000 -n /blog --public --http --key-file blog.key  # blog.tunnel.example.com`,
  client: `  rhost client -t https://tunnel.example.com -n /ssh --token-file ssh.token -c 7002
  ssh -p 7002 localhost`,
};

const WHAT: Record<Mode, string> = {
  tunnel: 'run the tunnel (the public relay)',
  server: 'expose a local service through the tunnel',
  client: "reach a channel's service on a local port",
};

/** Wraps `text` to lines of at most `width` characters. */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  if (line) lines.push(line);
  return lines;
}

function entryLines(e: Entry): string[] {
  const flags = wrap(e.flags.trimStart(), 74).map((l, i) => `  ${i === 0 && e.flags.startsWith('    ') ? '    ' : ''}${l}`);
  const text = wrap(e.text, 54);
  // Flags that fit in 23 columns share their first line with the text.
  if (flags.length === 1 && flags[0]!.length <= 24) return [`${flags[0]!.padEnd(25)}${text[0]}`, ...text.slice(1).map((t) => `${' '.repeat(25)}${t}`)];
  return [...flags, ...text.map((t) => `${' '.repeat(25)}${t}`)];
}

/** The help of one mode: its own options and examples. */
export function modeHelp(mode: Mode): string {
  const lines = [`rhost ${mode}: ${WHAT[mode]}`, '', `Usage: rhost ${mode} [options]`, '', 'Options (environment variable in brackets; flags win):'];
  for (const e of ENTRIES) if (e.modes.includes(mode)) lines.push(...entryLines(e));
  lines.push('', 'Examples (make each secret with: openssl rand -base64 24 > FILE):', EXAMPLES[mode], '');
  return lines.join('\n');
}

/** The overview: the modes, and where each one's help is. */
export function overviewHelp(): string {
  return [
    'rhost: a reverse tunnel on one port',
    '',
    'Usage:',
    ...(['tunnel', 'server', 'client'] as const).map((m) => `  rhost ${m} [options]`.padEnd(29) + WHAT[m]),
    '',
    'Each mode has its own options: rhost tunnel --help, rhost server --help, rhost client --help.',
    '',
    'Options of every mode:',
    ...ENTRIES.filter((e) => e.modes.length === ALL.length).flatMap(entryLines),
    '',
    'Examples:',
    EXAMPLES.tunnel,
    EXAMPLES.server,
    EXAMPLES.client,
    '',
  ].join('\n');
}
