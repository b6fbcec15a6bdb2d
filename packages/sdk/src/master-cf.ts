/**
 * The parts of master.cf scoped owns: marked blocks, each named by what it serves (`spam filter`,
 * `transport`, ...), between a begin and an end line. Everything outside the blocks is the
 * operator's and is kept byte for byte, so adding a block and taking it away again leaves
 * master.cf exactly as it was. Units change a block with a `master.block` change, which the
 * engine applies to master.cf as it is when it writes, so two units' blocks never overwrite each other.
 */

import type { Change } from './changes.js';

export const MASTER_CF = '/etc/postfix/master.cf';

/** A block's name: lowercase words, digits and dashes, as it appears in its marker lines. */
const BLOCK_NAME = /^[a-z0-9][a-z0-9 -]{0,40}$/;

/** The first line of the named block. */
export const blockBegin = (name: string): string => `# scoped: ${name} (managed by scoped; do not edit)`;
/** The last line of the named block. */
export const blockEnd = (name: string): string => `# scoped: end of ${name}`;

/** The markers of the spam filter's block (the first block scoped wrote). */
export const BLOCK_BEGIN = blockBegin('spam filter');
export const BLOCK_END = blockEnd('spam filter');

function checkName(name: string): void {
  if (!BLOCK_NAME.test(name)) throw new Error(`not a master.cf block name: ${JSON.stringify(name)} (lowercase words, digits and dashes)`);
}

/** Where the block stands in the text: the index of its first character and the index just past its end line. */
function blockSpan(text: string, name: string): { start: number; end: number } | null | string {
  checkName(name);
  const begin = blockBegin(name);
  const end = blockEnd(name);
  const lines = text.split('\n');
  const begins = lines.flatMap((l, i) => (l === begin ? [i] : []));
  const ends = lines.flatMap((l, i) => (l === end ? [i] : []));
  if (!begins.length && !ends.length) return null;
  if (begins.length !== 1 || ends.length !== 1 || ends[0]! < begins[0]!) {
    return `${MASTER_CF} has a damaged scoped block (the lines "${begin}" and "${end}" must each appear once, in that order): remove both and everything between them, then set the scope again`;
  }
  const offset = (line: number) => lines.slice(0, line).reduce((n, l) => n + l.length + 1, 0);
  return { start: offset(begins[0]!), end: Math.min(text.length, offset(ends[0]! + 1)) };
}

/** Why scoped cannot edit this block of master.cf, or null when it can. */
export function masterCfProblem(text: string, name = 'spam filter'): string | null {
  const span = blockSpan(text, name);
  return typeof span === 'string' ? span : null;
}

/** The lines of the named block (without its markers), or null when master.cf has none. */
export function managedBlock(text: string, name = 'spam filter'): string[] | null {
  const span = blockSpan(text, name);
  if (span === null) return null;
  if (typeof span === 'string') throw new Error(span);
  return text.slice(span.start, span.end).replace(/\n$/, '').split('\n').slice(1, -1);
}

/** Why a line may not go into a block, or null: one line, no NUL, and no line of any scoped marker. */
export function blockLineProblem(line: string): string | null {
  if (/[\n\r\0]/.test(line) || /^# scoped: /.test(line)) return `not a master.cf line scoped may write: ${JSON.stringify(line)}`;
  return null;
}

/**
 * master.cf with the named block set to these lines (null takes it away). A new block goes at
 * the end (after a newline if the file lacks its last one); an existing block is replaced where
 * it stands. A line that would break out of the block (a marker, a NUL) is refused.
 */
export function withManagedBlock(text: string, lines: readonly string[] | null, name = 'spam filter'): string {
  for (const l of lines ?? []) {
    const problem = blockLineProblem(l);
    if (problem) throw new Error(problem);
  }
  const span = blockSpan(text, name);
  if (typeof span === 'string') throw new Error(span);
  const block = lines === null ? '' : `${[blockBegin(name), ...lines, blockEnd(name)].join('\n')}\n`;
  if (span === null) {
    if (lines === null) return text;
    return `${text}${text === '' || text.endsWith('\n') ? '' : '\n'}${block}`;
  }
  return text.slice(0, span.start) + block + text.slice(span.end);
}

/**
 * The change that sets the named block of this master.cf to `lines` (null takes it away), or
 * undefined when the block already is so, or when master.cf is missing or the block damaged
 * (the unit's validate says why; masterCfProblem).
 */
export function masterBlockChange(masterCf: string | null, name: string, lines: readonly string[] | null, variable?: string): Change | undefined {
  if (masterCf === null || masterCfProblem(masterCf, name) !== null) return undefined;
  const current = managedBlock(masterCf, name);
  if (JSON.stringify(current) === JSON.stringify(lines)) return undefined;
  return { kind: 'master.block', name, lines, current, ...(variable ? { var: variable } : {}) };
}
