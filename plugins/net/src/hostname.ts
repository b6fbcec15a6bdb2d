import { z } from '@scoped/sdk';

/**
 * Why a name is not a valid fully qualified hostname, or null when it is. The input is
 * expected already lowercased with any trailing dot removed (see normalizeHostname).
 */
export function hostnameProblem(name: string): string | null {
  if (name === '') return 'the hostname is empty';
  if (/[\s\0-\x1f\x7f]/.test(name)) return 'the hostname contains whitespace or a control character';
  if (name.length > 253) return `the hostname is ${name.length} characters long; at most 253 are allowed`;
  const labels = name.split('.');
  if (labels.length < 2) return `"${name}" has no dot; give a fully qualified name such as ${name || 'mail'}.example.com`;
  for (const label of labels) {
    if (label === '') return `"${name}" has an empty label (two dots in a row, or a leading dot)`;
    if (label.length > 63) return `the label "${label.slice(0, 20)}…" is ${label.length} characters long; at most 63 are allowed`;
    if (!/^[a-z0-9-]+$/.test(label)) return `the label "${label}" may contain only letters, digits and hyphens`;
    if (label.startsWith('-') || label.endsWith('-')) return `the label "${label}" may not start or end with a hyphen`;
  }
  // RFC 3696 section 2: a top-level name is never all digits, and Postfix refuses such a myhostname.
  const last = labels[labels.length - 1]!;
  if (/^[0-9]+$/.test(last)) return `"${name}" ends in the all-digit label "${last}", which no top-level domain is; give a name such as mail.example.com`;
  return null;
}

/** Lowercase and drop one trailing dot: `Mail.Example.TEST.` becomes `mail.example.test`. */
export function normalizeHostname(input: string): string {
  const lower = input.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

/** A fully qualified hostname, normalized; refuses anything that is not one, with a reason. */
export const Hostname = z.string().transform((input, ctx) => {
  const name = normalizeHostname(input);
  const problem = hostnameProblem(name);
  if (problem) {
    ctx.addIssue({ code: 'custom', message: problem });
    return z.NEVER;
  }
  return name;
});

/** The hostname var: empty means "not managed by scoped". */
export const HostnameVar = z.union([z.literal(''), Hostname]);
