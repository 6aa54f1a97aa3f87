// Structured logging: one JSON object per line on stderr. Quiet by default
// (warnings and errors only); `-v`/`--v=N` or KPROXY_LOG=debug|info raise it.

export type Level = 'debug' | 'info' | 'warn' | 'error';
const order: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

let threshold: number = order[(process.env.KPROXY_LOG as Level) in order ? (process.env.KPROXY_LOG as Level) : 'warn'];
let format: 'json' | 'text' = process.env.KPROXY_LOG_FORMAT === 'text' ? 'text' : 'json';

export function setLogLevel(level: Level): void {
  threshold = order[level];
}

export function setLogFormat(f: 'json' | 'text'): void {
  format = f;
}

export function logEnabled(level: Level): boolean {
  return order[level] >= threshold;
}

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

function emit(level: Level, base: Record<string, unknown>, msg: string, fields?: Record<string, unknown>): void {
  if (order[level] < threshold) return;
  const rec: Record<string, unknown> = { ts: new Date().toISOString(), level, msg, ...base, ...fields };
  for (const [k, v] of Object.entries(rec)) if (v instanceof Error) rec[k] = v.message;
  if (format === 'text') {
    const extra = Object.entries(rec)
      .filter(([k]) => !['ts', 'level', 'msg'].includes(k))
      .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
      .join(' ');
    process.stderr.write(`${level.toUpperCase()} ${msg}${extra ? ' ' + extra : ''}\n`);
  } else {
    process.stderr.write(JSON.stringify(rec) + '\n');
  }
}

export function logger(base: Record<string, unknown> = {}): Logger {
  return {
    debug: (m, f) => emit('debug', base, m, f),
    info: (m, f) => emit('info', base, m, f),
    warn: (m, f) => emit('warn', base, m, f),
    error: (m, f) => emit('error', base, m, f),
    child: (f) => logger({ ...base, ...f }),
  };
}

export const log = logger();
