import { type ErrorCode, ErrorCodes } from '@scoped/protocol/errors';
import { escapeControls } from './terminal.js';

/** Exit codes, one per class of error; documented in the README. */
export const ExitCodes = {
  ok: 0,
  internal: 1,
  usage: 2,
  drift: 3,
  unreachable: 4,
  unauthorized: 5,
  invalid: 6,
  notFound: 7,
  conflict: 8,
  convergeFailed: 9,
  busy: 10,
  plugin: 11,
} as const;

/** An error cpcmd prints as one line, with a hint and the exit code of its class. */
export class CliError extends Error {
  override readonly name = 'CliError';
  constructor(
    message: string,
    readonly exitCode: number,
    readonly suggestion?: string,
  ) {
    super(message);
  }
}

type ExitCode = (typeof ExitCodes)[keyof typeof ExitCodes];

/** The exit code of each error code; every code must have one (checked when built). */
const EXIT_BY_CODE = {
  [ErrorCodes.ParseError]: ExitCodes.internal,
  [ErrorCodes.InvalidRequest]: ExitCodes.internal,
  [ErrorCodes.InternalError]: ExitCodes.internal,
  [ErrorCodes.InvalidParams]: ExitCodes.invalid,
  [ErrorCodes.TooLarge]: ExitCodes.invalid,
  [ErrorCodes.MethodNotFound]: ExitCodes.notFound,
  [ErrorCodes.ScopeNotFound]: ExitCodes.notFound,
  [ErrorCodes.NotFound]: ExitCodes.notFound,
  [ErrorCodes.Unauthorized]: ExitCodes.unauthorized,
  [ErrorCodes.Forbidden]: ExitCodes.unauthorized,
  [ErrorCodes.Conflict]: ExitCodes.conflict,
  [ErrorCodes.ConvergeFailed]: ExitCodes.convergeFailed,
  [ErrorCodes.Timeout]: ExitCodes.busy,
  [ErrorCodes.Busy]: ExitCodes.busy,
  [ErrorCodes.PluginError]: ExitCodes.plugin,
} as const satisfies Record<ErrorCode, ExitCode>;
/** EXIT_BY_CODE by any code an answer carries. */
const byRpcCode: Partial<Record<number, ExitCode>> = EXIT_BY_CODE;

/** The exit code for any error that reached the top. */
export function exitCodeOf(err: unknown): number {
  if (err instanceof CliError) return err.exitCode;
  const e = err as { name?: string; code?: unknown };
  if (e?.name === 'RpcError' && typeof e.code === 'number') return byRpcCode[e.code] ?? ExitCodes.internal;
  if (e?.name === 'TransportError') {
    const status = (err as { status?: number }).status;
    return status === 401 ? ExitCodes.unauthorized : status === 429 || status === 503 ? ExitCodes.busy : ExitCodes.unreachable;
  }
  if (e?.name === 'ArgumentSyntaxError') return ExitCodes.usage;
  return ExitCodes.internal;
}

/**
 * The one line (two with a hint) cpcmd prints for an error; the stack only with DEBUG=1. The
 * message may quote a daemon's or a relay's text, so its control characters (newlines too:
 * it stays one line) are shown escaped.
 */
export function formatError(err: unknown): string {
  const e = err as { message?: string; suggestion?: string; stack?: string };
  const lines = [`cpcmd: ${escapeControls(e?.message ?? String(err))}`];
  if (e?.suggestion) lines.push(`hint: ${escapeControls(e.suggestion)}`);
  if (process.env.DEBUG === '1' && e?.stack) lines.push(escapeControls(e.stack, true));
  return `${lines.join('\n')}\n`;
}
