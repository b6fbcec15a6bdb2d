import { REDACTED } from '@scoped/protocol';

/**
 * A copy of `value` with its secret parts replaced by the redaction marker: the whole value
 * when `secret` is true, or the named keys of an object (at any depth). Empty and null
 * secrets stay as they are, so "no password" is still visible as such.
 */
export function redactValue(value: unknown, secret: true | readonly string[] | undefined): unknown {
  if (secret === undefined) return value;
  if (secret === true) return value === null || value === '' || value === undefined ? value : REDACTED;
  if (Array.isArray(value)) return value.map((v) => redactValue(v, secret));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = secret.includes(k) ? redactValue(v, true) : redactValue(v, secret);
    }
    return out;
  }
  return value;
}
