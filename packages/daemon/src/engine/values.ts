import { type VarDef, zodText } from '@scoped/sdk';
import { ErrorCodes, type Json, RpcError } from '@scoped/protocol';

/**
 * A value as the wire carries it. Every value the engine answers with or records is JSON: it
 * came over the wire or from the store and passed a zod schema, or it was read by scope code
 * from config files and redacted; this is where that is said once, rather than at each answer.
 */
export const asJson = (value: unknown): Json => value as Json;

/** A JSON object (a JSON Schema, an OpenRPC document), as the wire carries it: see asJson. */
export const asJsonObject = (value: object): Record<string, Json> => value as Record<string, Json>;

/** The most a var's value may take, serialized as JSON: far beyond any real setting, small enough to keep every write and read cheap. */
export const MAX_VAR_BYTES = 64 * 1024;

/** What is wrong with a value and where: a path of keys and indexes, and the problem. */
export interface Fault {
  path: (string | number)[];
  message: string;
  /** How the first path element reads (`argument 2` for CLI words). */
  label?: (first: string | number) => string;
}

/** A lone surrogate (half of a UTF-16 pair): no UTF-8 file can hold it. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
/** NUL ends a C string; U+2028 and U+2029 end a line for some readers (main.cf's among them) and not for others. */
const LINE_BREAKING = /[\0\u2028\u2029]/;

function textProblem(s: string): string | undefined {
  if (LONE_SURROGATE.test(s)) return 'holds a lone UTF-16 surrogate (half of a character), which no config file can hold; send whole characters';
  const m = LINE_BREAKING.exec(s);
  if (!m) return undefined;
  const what = m[0] === '\0' ? 'NUL' : m[0] === '\u2028' ? 'U+2028 (line separator)' : 'U+2029 (paragraph separator)';
  return `holds ${what}, which no config file line can carry; remove it`;
}

/**
 * Whether a value is too big for a var or holds text that no config line can carry, in any
 * string or key at any depth (walked without recursion: a stored value may be arbitrarily deep).
 */
export function valueFault(value: unknown, label?: Fault['label']): Fault | undefined {
  const bytes = Buffer.byteLength(JSON.stringify(value) ?? '');
  if (bytes > MAX_VAR_BYTES)
    return { path: [], message: `the value takes ${bytes} bytes as JSON; a var holds at most ${MAX_VAR_BYTES} (64 KiB)`, ...(label ? { label } : {}) };
  const stack: [unknown, (string | number)[]][] = [[value, []]];
  while (stack.length) {
    const [v, path] = stack.pop()!;
    const problem = typeof v === 'string' ? textProblem(v) : undefined;
    if (problem) return { path, message: problem, ...(label ? { label } : {}) };
    if (v === null || typeof v !== 'object') continue;
    for (const [k, child] of Object.entries(v)) {
      const key = Array.isArray(v) ? Number(k) : k;
      const keyProblem = Array.isArray(v) ? undefined : textProblem(k);
      if (keyProblem) return { path: [...path, key], message: `its key ${keyProblem}`, ...(label ? { label } : {}) };
      stack.push([child, [...path, key]]);
    }
  }
  return undefined;
}

export function faultText(f: Fault): string {
  const [first, ...rest] = f.path;
  const where = first === undefined ? [] : [f.label ? f.label(first) : String(first), ...rest.map(String)];
  return where.length ? `${where.join('.')}: ${f.message}` : f.message;
}

/** A fault as invalid params naming the scope or var and the field, never echoing the value. */
export function faultError(name: string, f: Fault): RpcError {
  return new RpcError(ErrorCodes.InvalidParams, `invalid value for ${name}: ${faultText(f)}`, { issues: [{ path: f.path, message: f.message }] });
}

/** Why a var cannot hold a value (as a set would refuse it), or undefined. */
export function valueProblem(def: VarDef, value: unknown): string | undefined {
  const fault = valueFault(value);
  if (fault) return faultText(fault);
  const r = def.schema.safeParse(value);
  return r.success ? undefined : zodText(r.error);
}
