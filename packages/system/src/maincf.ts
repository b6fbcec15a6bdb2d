/**
 * main.cf as text: parse it the way Postfix reads it, and edit parameters in place while
 * keeping every comment and every other line byte for byte.
 *
 * Postfix's rules: a logical line starts with non-whitespace; a line starting with
 * whitespace continues the previous one; blank lines and lines whose first non-blank
 * character is `#` are comments. The last definition of a name wins.
 */

interface Entry {
  name: string;
  value: string;
  /** Index of the first physical line and the number of physical lines. */
  start: number;
  count: number;
}

const isComment = (line: string): boolean => /^\s*(#|$)/.test(line);

function entries(lines: readonly string[]): Entry[] {
  const out: Entry[] = [];
  let current: Entry | undefined;
  lines.forEach((line, i) => {
    if (isComment(line)) return;
    if (/^\s/.test(line)) {
      if (current) {
        current.value = `${current.value} ${line.trim()}`.trim();
        current.count = i - current.start + 1;
      }
      return;
    }
    const m = /^([^=\s]+)\s*=\s*(.*)$/.exec(line);
    current = m ? { name: m[1]!, value: m[2]!.trim(), start: i, count: 1 } : undefined;
    if (current) out.push(current);
  });
  return out;
}

/** The parameters a main.cf sets, last definition winning, values unexpanded (as `postconf -n`). */
export function parseMainCf(text: string): Map<string, string> {
  const params = new Map<string, string>();
  for (const e of entries(text.split('\n'))) params.set(e.name, e.value);
  return params;
}

/** Refuses a value that could break out of its line; callers validate first, this is the last guard. */
export function assertSafeParam(name: string, value: string | null): void {
  if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw new Error(`not a main.cf parameter name: ${JSON.stringify(name)}`);
  if (value !== null && /[\r\n\0]/.test(value)) throw new Error(`main.cf value of ${name} contains a line break or NUL`);
}

/**
 * Apply sets (string) and removals (null) to main.cf text. A set replaces the first
 * definition in place and drops any later ones; a new name is appended. Nothing else moves.
 */
export function editMainCf(text: string, edits: ReadonlyMap<string, string | null>): string {
  for (const [name, value] of edits) assertSafeParam(name, value);
  const lines = text.split('\n');
  const trailingNewline = text.endsWith('\n');
  if (trailingNewline) lines.pop();
  const replace = new Map<number, string | null>();
  const done = new Set<string>();
  for (const e of entries(lines)) {
    if (!edits.has(e.name)) continue;
    const value = edits.get(e.name)!;
    const first = value !== null && !done.has(e.name);
    replace.set(e.start, first ? `${e.name} = ${value}` : null);
    for (let i = e.start + 1; i < e.start + e.count; i++) replace.set(i, null);
    done.add(e.name);
  }
  const out: string[] = [];
  lines.forEach((line, i) => {
    if (!replace.has(i)) {
      out.push(line);
      return;
    }
    const r = replace.get(i);
    if (r !== null && r !== undefined) out.push(r);
  });
  for (const [name, value] of edits) if (value !== null && !done.has(name)) out.push(`${name} = ${value}`);
  return out.length ? `${out.join('\n')}\n` : '';
}
