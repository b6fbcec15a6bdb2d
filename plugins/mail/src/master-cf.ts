/**
 * The part of master.cf scoped owns: one marked block at the end of the file, between a begin
 * and an end line. Everything outside the block is the operator's and is kept byte for byte,
 * so adding the block and taking it away again leaves master.cf exactly as it was.
 */

export const MASTER_CF = '/etc/postfix/master.cf';

export const BLOCK_BEGIN = '# scoped: spam filter (managed by scoped; do not edit)';
export const BLOCK_END = '# scoped: end of spam filter';

/** Where the block stands in the text: the index of its first character and the index just past its end line. */
function blockSpan(text: string): { start: number; end: number } | null | string {
  const lines = text.split('\n');
  const begins = lines.flatMap((l, i) => (l === BLOCK_BEGIN ? [i] : []));
  const ends = lines.flatMap((l, i) => (l === BLOCK_END ? [i] : []));
  if (!begins.length && !ends.length) return null;
  if (begins.length !== 1 || ends.length !== 1 || ends[0]! < begins[0]!) {
    return `${MASTER_CF} has a damaged scoped block (the lines "${BLOCK_BEGIN}" and "${BLOCK_END}" must each appear once, in that order): remove both and everything between them, then set the filter again`;
  }
  const offset = (line: number) => lines.slice(0, line).reduce((n, l) => n + l.length + 1, 0);
  return { start: offset(begins[0]!), end: Math.min(text.length, offset(ends[0]! + 1)) };
}

/** Why scoped cannot edit this master.cf, or null when it can. */
export function masterCfProblem(text: string): string | null {
  const span = blockSpan(text);
  return typeof span === 'string' ? span : null;
}

/** The lines of scoped's block (without its markers), or null when master.cf has none. */
export function managedBlock(text: string): string[] | null {
  const span = blockSpan(text);
  if (span === null) return null;
  if (typeof span === 'string') throw new Error(span);
  return text.slice(span.start, span.end).replace(/\n$/, '').split('\n').slice(1, -1);
}

/**
 * master.cf with scoped's block set to these lines (null takes it away). A new block goes at the
 * end (after a newline if the file lacks its last one); an existing block is replaced where it
 * stands. A line that would break out of the block (a marker, a NUL) is refused.
 */
export function withManagedBlock(text: string, lines: readonly string[] | null): string {
  for (const l of lines ?? []) {
    if (l === BLOCK_BEGIN || l === BLOCK_END || /[\n\r\0]/.test(l)) throw new Error(`not a master.cf line scoped may write: ${JSON.stringify(l)}`);
  }
  const span = blockSpan(text);
  if (typeof span === 'string') throw new Error(span);
  const block = lines === null ? '' : `${[BLOCK_BEGIN, ...lines, BLOCK_END].join('\n')}\n`;
  if (span === null) {
    if (lines === null) return text;
    return `${text}${text === '' || text.endsWith('\n') ? '' : '\n'}${block}`;
  }
  return text.slice(0, span.start) + block + text.slice(span.end);
}
