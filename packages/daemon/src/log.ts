/** A structured logger: one JSON object a line on stderr. */
export interface Logger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export type LogLevel = 'info' | 'warn' | 'error' | 'silent';

const rank: Record<LogLevel, number> = { info: 0, warn: 1, error: 2, silent: 3 };

/**
 * JSON lines on a stream. `scrub` runs over every line last, so a secret that slipped into
 * a message or a field is replaced before it is written.
 */
export function jsonLogger(opts: { level?: LogLevel; stream?: NodeJS.WritableStream; scrub?: (line: string) => string } = {}): Logger {
  const min = rank[opts.level ?? 'info'];
  const stream = opts.stream ?? process.stderr;
  const write = (level: Exclude<LogLevel, 'silent'>, msg: string, fields?: Record<string, unknown>) => {
    if (rank[level] < min) return;
    const line = JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields });
    stream.write(`${opts.scrub ? opts.scrub(line) : line}\n`);
  };
  return {
    info: (m, f) => write('info', m, f),
    warn: (m, f) => write('warn', m, f),
    error: (m, f) => write('error', m, f),
  };
}
