import { escapeControls } from './terminal.js';

/**
 * Plain text for a terminal: a scalar alone on its line, objects as `key: value`, lists as
 * `- item`. Keys and values are shown with their control characters escaped.
 */
export function renderPlain(value: unknown, indent = ''): string {
  if (value === null || value === undefined) return `${indent}null`;
  if (typeof value !== 'object') return `${indent}${escapeControls(String(value))}`;
  if (Array.isArray(value)) {
    if (value.length === 0) return `${indent}[]`;
    return value.map((v) => (isScalar(v) ? `${indent}- ${scalar(v)}` : `${indent}-\n${renderPlain(v, `${indent}  `)}`)).join('\n');
  }
  const entries = Object.entries(value);
  if (entries.length === 0) return `${indent}{}`;
  return entries
    .map(([k, v]) =>
      isScalar(v) || isEmpty(v) ? `${indent}${escapeControls(k)}: ${scalar(v)}` : `${indent}${escapeControls(k)}:\n${renderPlain(v, `${indent}  `)}`,
    )
    .join('\n');
}

const isScalar = (v: unknown): boolean => v === null || typeof v !== 'object';
const isEmpty = (v: unknown): boolean => typeof v === 'object' && v !== null && Object.keys(v).length === 0;
const scalar = (v: unknown): string => (isEmpty(v) ? (Array.isArray(v) ? '[]' : '{}') : v === null || v === undefined ? 'null' : escapeControls(String(v)));

/** Two columns, the first padded to its widest cell; cells are shown with their control characters escaped. */
export function columns(rows: readonly (readonly [string, string])[]): string {
  const safe = rows.map(([a, b]) => [escapeControls(a), escapeControls(b)] as const);
  const width = Math.max(0, ...safe.map(([a]) => a.length));
  return safe.map(([a, b]) => `${a.padEnd(width)}  ${b}`.trimEnd()).join('\n');
}
