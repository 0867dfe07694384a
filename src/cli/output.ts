import type { LogFields, Logger, LogLevel } from '../index.js';

type Level = LogLevel;
const RANK: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Field names never printed, whatever a caller passes: secrets stay out of logs. */
const SECRET_FIELDS = new Set(['key', 'token', 'keys', 'authorization', 'password']);

function clean(fields: LogFields): LogFields {
  const out: LogFields = {};
  for (const [k, v] of Object.entries(fields)) if (!SECRET_FIELDS.has(k.toLowerCase())) out[k] = v;
  return out;
}

/**
 * The CLI's logger: one line per event on `out`, either for humans
 * (`12:00:01.234 info  message`) or as one JSON object per line.
 */
export function createLogger(format: 'pretty' | 'json', level: Level, out: (line: string) => void, context: LogFields = {}): Logger {
  const min = RANK[level];
  const write = (lvl: Level, msg: string, fields?: LogFields): void => {
    if (RANK[lvl] < min) return;
    const all = fields ? { ...context, ...clean(fields) } : context;
    if (format === 'json') {
      out(JSON.stringify({ time: new Date().toISOString(), level: lvl, msg, ...all }));
    } else {
      const time = new Date().toISOString().slice(11, 23);
      out(`${time} ${lvl.padEnd(5)} ${msg}`);
    }
  };
  return {
    debug: (msg, fields) => write('debug', msg, fields),
    info: (msg, fields) => write('info', msg, fields),
    warn: (msg, fields) => write('warn', msg, fields),
    error: (msg, fields) => write('error', msg, fields),
    child: (fields) => createLogger(format, level, out, { ...context, ...clean(fields) }),
    enabled: (lvl) => RANK[lvl] >= min,
  };
}
