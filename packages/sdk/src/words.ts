import type { ScopeContext } from './define.js';

/**
 * The text argument `i` was typed as, for a scope that wants a string there: `1.50` rather than
 * the number 1.5, `-0` rather than 0, `TRUE` rather than true, a quoted word as it was inside its
 * quotes. Without words (a JSON-RPC caller that sent args alone), a string as it is and a number
 * or a boolean as its JSON text. Undefined for a list, a map, a missing argument, and a null sent
 * without its text.
 */
export function argText(args: readonly unknown[], i: number, ctx: Pick<ScopeContext, 'words'>): string | undefined {
  if (i < 0 || i >= args.length) return undefined;
  const arg = args[i];
  if (arg !== null && typeof arg === 'object') return undefined;
  const word = ctx.words?.[i];
  if (typeof word === 'string') return word;
  if (typeof arg === 'string') return arg;
  if (typeof arg === 'number' || typeof arg === 'boolean') return String(arg);
  return undefined;
}
