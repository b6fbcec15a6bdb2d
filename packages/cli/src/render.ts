/** Plain text for a terminal: a scalar alone on its line, objects as `key: value`, lists as `- item`. */
export function renderPlain(value: unknown, indent = ''): string {
  if (value === null || value === undefined) return `${indent}null`;
  if (typeof value !== 'object') return `${indent}${String(value)}`;
  if (Array.isArray(value)) {
    if (value.length === 0) return `${indent}[]`;
    return value.map((v) => (isScalar(v) ? `${indent}- ${scalar(v)}` : `${indent}-\n${renderPlain(v, `${indent}  `)}`)).join('\n');
  }
  const entries = Object.entries(value);
  if (entries.length === 0) return `${indent}{}`;
  return entries.map(([k, v]) => (isScalar(v) || isEmpty(v) ? `${indent}${k}: ${scalar(v)}` : `${indent}${k}:\n${renderPlain(v, `${indent}  `)}`)).join('\n');
}

const isScalar = (v: unknown): boolean => v === null || typeof v !== 'object';
const isEmpty = (v: unknown): boolean => typeof v === 'object' && v !== null && Object.keys(v).length === 0;
const scalar = (v: unknown): string => (isEmpty(v) ? (Array.isArray(v) ? '[]' : '{}') : v === null || v === undefined ? 'null' : String(v));

/** Two columns, the first padded to its widest cell. */
export function columns(rows: readonly (readonly [string, string])[]): string {
  const width = Math.max(0, ...rows.map(([a]) => a.length));
  return rows.map(([a, b]) => `${a.padEnd(width)}  ${b}`.trimEnd()).join('\n');
}
