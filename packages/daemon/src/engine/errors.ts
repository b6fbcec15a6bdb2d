import { ErrorCodes, type Issue, RpcError } from '@scoped/protocol';
import { ScopeInputError, zodText } from '@scoped/sdk';
import type { z } from 'zod';
import { type Logger, stackFrames, thrownSummary } from '../log.js';

/** What a caller is told of an error nobody expected; the log has where it was thrown. */
export const INTERNAL_ERROR = 'Internal error (the daemon log has the detail)';

/**
 * Anything thrown, as the error that crosses the wire: an RpcError as it is, a scope's
 * ScopeInputError as invalid params (or not found, when it names something that does not
 * exist), anything else InternalError. An unexpected error's message may hold anything, so the
 * log gets what it is and where it was thrown, never what it said.
 */
export function toRpcError(err: unknown, log: Logger, context?: Record<string, unknown>): RpcError {
  if (err instanceof RpcError) return err;
  if (err instanceof ScopeInputError) {
    if (err.kind === 'not-found') return new RpcError(ErrorCodes.ScopeNotFound, err.message);
    return new RpcError(ErrorCodes.InvalidParams, err.message, { issues: [{ path: err.path, message: err.message }] });
  }
  log.error('internal error', { ...context, error: thrownSummary(err), at: stackFrames(err) });
  return new RpcError(ErrorCodes.InternalError, INTERNAL_ERROR);
}

/** A zod failure's issues as `error.data.issues` carries them. */
export const zodIssues = (error: z.ZodError): Issue[] =>
  error.issues.map((i) => ({ path: i.path.map((p) => (typeof p === 'symbol' ? String(p) : p)), message: i.message }));

/** A zod failure as invalid params, with its issues in data and a readable message. */
export function invalid(prefix: string, error: z.ZodError, usage?: string): RpcError {
  return new RpcError(ErrorCodes.InvalidParams, `${prefix}: ${zodText(error)}${usage ? ` (usage: ${usage})` : ''}`, { issues: zodIssues(error) });
}

/** Runs scope code, turning its ScopeInputError into the error a caller gets (toRpcError); anything else it throws is left as it is. */
export function inputErrors<T>(fn: () => T | Promise<T>): Promise<T> {
  const convert = (err: unknown): never => {
    if (err instanceof ScopeInputError) throw fromInput(err);
    throw err;
  };
  try {
    return Promise.resolve(fn()).catch(convert);
  } catch (err) {
    return Promise.reject(err).catch(convert);
  }
}

const quiet: Logger = { info() {}, warn() {}, error() {} };
/** A ScopeInputError never reaches the log: it is the caller's mistake. */
const fromInput = (err: ScopeInputError) => toRpcError(err, quiet);
