import path from 'node:path';

/** A structured logger: one JSON object a line on stderr. */
export interface Logger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export type LogLevel = 'info' | 'warn' | 'error' | 'silent';

const rank: Record<LogLevel, number> = { info: 0, warn: 1, error: 2, silent: 3 };

/**
 * JSON lines on a stream. Lines are written as they were built: what may hold a secret is kept
 * out of them by structure (see thrownSummary), not searched for in their text.
 */
export function jsonLogger(opts: { level?: LogLevel; stream?: NodeJS.WritableStream } = {}): Logger {
  const min = rank[opts.level ?? 'info'];
  const stream = opts.stream ?? process.stderr;
  const write = (level: Exclude<LogLevel, 'silent'>, msg: string, fields?: Record<string, unknown>) => {
    if (rank[level] < min) return;
    stream.write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields })}\n`);
  };
  return {
    info: (m, f) => write('info', m, f),
    warn: (m, f) => write('warn', m, f),
    error: (m, f) => write('error', m, f),
  };
}

/**
 * What a thrown value is, from its structure only, never its message: a program that failed
 * and how (`postmap exited with 1`), a system call's error code (`EACCES in open`), or the
 * error's class. For errors whose message may carry a secret or other text from outside.
 */
export function thrownSummary(err: unknown): string {
  if (!(err instanceof Error)) return typeof err;
  const e = err as Error & { command?: unknown; code?: unknown; syscall?: unknown };
  if (e.name === 'ExecError' && typeof e.command === 'string') {
    const program = path.basename(e.command);
    if (e.code === 'ENOENT') return `${program} was not found`;
    return typeof e.code === 'number' ? `${program} exited with ${e.code}` : `${program} failed${typeof e.code === 'string' ? ` (${e.code})` : ''}`;
  }
  if (typeof e.code === 'string' && /^[A-Z][A-Z0-9_]*$/.test(e.code)) return `${e.code}${typeof e.syscall === 'string' ? ` in ${e.syscall}` : ''}`;
  return e.name;
}

/** Where an error was thrown: its stack without the first line, which repeats the message. */
export function stackFrames(err: unknown): string[] {
  const stack = err instanceof Error ? err.stack : undefined;
  return (stack ?? '')
    .split('\n')
    .filter((l) => /^\s+at /.test(l))
    .map((l) => l.trim())
    .slice(0, 10);
}
