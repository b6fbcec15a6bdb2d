/**
 * Debian's /etc/default files: shell assignments (`KEY=value`, `KEY="value"`) read by a unit's
 * launcher. scoped reads them as the shell would for plain assignments, and sets one key by
 * editing its own line, so every other line (comments, the admin's settings) stays byte for byte.
 */

const ASSIGNMENT = /^\s*(?:export\s+)?([A-Z_][A-Z0-9_]*)=(.*?)\s*$/;

/** The settings of a defaults file, quotes taken off; a key set twice counts as the last. */
export function shellSettings(text: string | null): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of (text ?? '').split('\n')) {
    const m = ASSIGNMENT.exec(line);
    if (!m) continue;
    const raw = m[2]!;
    const quoted = /^"(.*)"$/.exec(raw) ?? /^'(.*)'$/.exec(raw);
    out.set(m[1]!, quoted ? quoted[1]! : raw);
  }
  return out;
}

/** A value the file can hold as a plain word: no quoting, expansion or second command. */
const PLAIN = /^[A-Za-z0-9._@:,+=/-]*$/;

/**
 * The file with KEY set to this value: its last assignment line rewritten in place, or a line
 * added at the end. Only plain words are written (a value the shell would expand is refused).
 */
export function withShellSetting(text: string | null, key: string, value: string): string {
  if (!/^[A-Z_][A-Z0-9_]*$/.test(key)) throw new Error(`not a settings key: ${JSON.stringify(key)}`);
  if (!PLAIN.test(value)) throw new Error(`not a plain value for ${key}: ${JSON.stringify(value)}`);
  const lines = (text ?? '').split('\n');
  let last = -1;
  lines.forEach((l, i) => {
    if (ASSIGNMENT.exec(l)?.[1] === key) last = i;
  });
  if (last >= 0) {
    lines[last] = `${key}=${value}`;
    return lines.join('\n');
  }
  const base = text ?? '';
  return `${base}${base === '' || base.endsWith('\n') ? '' : '\n'}${key}=${value}\n`;
}
