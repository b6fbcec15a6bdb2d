/**
 * Assertions the end-to-end tests share, on the project's own tables: the protocol's JSON-RPC
 * error codes (`ErrorCodes`, by name) and cpcmd's exit codes (`ExitCodes`, by name), never a
 * local copy of either.
 *
 *     expectExit(await d.cpcmd(['scope:get', 'net.hostname']), 'ok');
 *     expectRefused(await d.cpcmd(['scope:set', 'mail.spam-filter', 'rspamd']), 'invalid', /apt-get install rspamd/);
 *     expectRpcError(await d.call('scope.get', { name: 'nope' }), 'ScopeNotFound');
 *     expect(r).toExitWith('notFound');
 */
import { ExitCodes } from '@scoped/cli';
import { type ErrorCodeName, ErrorCodes } from '@scoped/protocol';
import { expect } from 'vitest';
import type { RunResult } from './proc.js';

export { ErrorCodes, ExitCodes };
export type ExitCodeName = keyof typeof ExitCodes;

/** What a run said, for a failure message. */
const said = (r: RunResult) => `exit ${r.code ?? r.signal}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;

/** A run exited with the named exit code (its whole output in the failure message). */
export function expectExit(r: RunResult, code: ExitCodeName): void {
  expect(r.code, said(r)).toBe(ExitCodes[code]);
}

/**
 * A refusal as cpcmd prints it: the named exit code, nothing on stdout, and one line on stderr
 * starting "cpcmd: " (plus an optional "hint: " line) matching `why`. Returns the first line.
 */
export function expectRefused(r: RunResult, code: ExitCodeName, why?: RegExp): string {
  expectExit(r, code);
  expect(r.stdout, said(r)).toBe('');
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines[0], said(r)).toMatch(/^cpcmd: \S/);
  expect(lines.length, said(r)).toBeLessThanOrEqual(2);
  if (lines.length === 2) expect(lines[1], said(r)).toMatch(/^hint: /);
  if (why) expect(lines[0], said(r)).toMatch(why);
  return lines[0]!;
}

/** A JSON-RPC answer that is an error with the named code (and a message matching `why`); returns the error. */
export function expectRpcError(answer: unknown, code: ErrorCodeName, why?: RegExp): { code: number; message: string; data?: any } {
  const a = answer as { error?: { code: number; message: string; data?: unknown } };
  expect(a?.error, JSON.stringify(answer)).toMatchObject({ code: ErrorCodes[code], message: why ? expect.stringMatching(why) : expect.any(String) });
  return a.error!;
}

/** The JSON-RPC 2.0 codes and the domain range the spec reserves for implementations. */
function isAllowedErrorCode(code: unknown): boolean {
  return typeof code === 'number' && Number.isInteger(code) && ([-32700, -32600, -32601, -32602, -32603].includes(code) || (code >= -32099 && code <= -32000));
}

interface RpcResponse {
  jsonrpc?: unknown;
  id?: unknown;
  result?: unknown;
  error?: { code?: unknown; message?: unknown; data?: unknown };
}

/**
 * Problems with a response object by the spec: jsonrpc "2.0", an id, exactly one of result
 * and error, an error with an allowed integer code (never 0) and a message. Empty when fine.
 */
export function responseProblems(value: unknown): string[] {
  const list = Array.isArray(value) ? value : [value];
  const problems: string[] = [];
  for (const r of list as RpcResponse[]) {
    const show = JSON.stringify(r);
    if (r === null || typeof r !== 'object' || Array.isArray(r)) {
      problems.push(`not a response object: ${show}`);
      continue;
    }
    if (r.jsonrpc !== '2.0') problems.push(`jsonrpc is not "2.0": ${show}`);
    if (!('id' in r)) problems.push(`no id: ${show}`);
    if ('result' in r === 'error' in r) problems.push(`needs exactly one of result and error: ${show}`);
    if ('error' in r) {
      if (!isAllowedErrorCode(r.error?.code)) problems.push(`error code ${String(r.error?.code)} is neither a JSON-RPC code nor in -32000..-32099: ${show}`);
      if (typeof r.error?.message !== 'string' || r.error.message === '') problems.push(`error without a message: ${show}`);
    }
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------
// matchers

interface ScopedMatchers<R = unknown> {
  /** A cpcmd run exited with the named code: `expect(r).toExitWith('invalid')`. */
  toExitWith(code: ExitCodeName): R;
  /** A JSON-RPC answer is an error with the named code: `expect(a).toBeRpcError('Forbidden')`. */
  toBeRpcError(code: ErrorCodeName): R;
}

declare module 'vitest' {
  interface Matchers<T = any> extends ScopedMatchers<T> {}
}

expect.extend({
  toExitWith(received: RunResult, code: ExitCodeName) {
    const want = ExitCodes[code];
    if (want === undefined) throw new Error(`no exit code named ${code}: one of ${Object.keys(ExitCodes).join(', ')}`);
    return {
      pass: received?.code === want,
      message: () => `expected cpcmd to exit ${want} (${code})${this.isNot ? ' not' : ''}, got ${said(received)}`,
    };
  },
  toBeRpcError(received: unknown, code: ErrorCodeName) {
    const want = ErrorCodes[code];
    if (want === undefined) throw new Error(`no error code named ${code}: one of ${Object.keys(ErrorCodes).join(', ')}`);
    const got = (received as { error?: { code?: unknown } })?.error?.code;
    return {
      pass: got === want,
      message: () => `expected a JSON-RPC error ${want} (${code})${this.isNot ? ' not' : ''}, got ${JSON.stringify(received)}`,
    };
  },
});
