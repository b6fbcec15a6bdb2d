/**
 * Text from the daemon (stored values, audit entries, a relay's replies, error messages) can
 * hold whatever an attacker put there. A terminal acts on some characters instead of showing
 * them: ESC and the C1 controls start sequences that move the cursor, clear the screen, set the
 * title or write the clipboard (OSC 52); BEL, CR and backspace hide text; line separators and
 * bidi overrides and isolates reorder what is shown. cpcmd prints them as visible escapes.
 */

/** C0 but tab and newline, DEL, C1, the Unicode line and paragraph separators, bidi marks, embeddings, overrides and isolates. */
const UNSAFE = '\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f\\u061c\\u200e\\u200f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069';
const IN_TEXT = new RegExp(`[${UNSAFE}]`, 'g');
const IN_VALUE = new RegExp(`[\\t\\n${UNSAFE}]`, 'g');

/** The visible form of one character: \x1b for ASCII controls, \u009b for the rest. */
const visible = (c: string): string => {
  const code = c.charCodeAt(0);
  return code < 0x80 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
};

/**
 * `text` safe to print on a terminal, every control character shown as an escape. A value
 * (`layout` false, the default) has its tabs and newlines escaped too, so it cannot fake a line
 * of output; whole output (`layout` true) keeps the tabs and newlines cpcmd itself wrote.
 */
export function escapeControls(text: string, layout = false): string {
  return text.replace(layout ? IN_TEXT : IN_VALUE, visible);
}

/** The characters JSON.stringify leaves raw that a terminal may still act on (C1, separators, bidi), as \uXXXX. */
const JSON_UNSAFE = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** JSON text safe for a terminal; it parses back to the same value. */
export function terminalJson(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(JSON_UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** YAML text safe for a terminal; it parses back to the same value. */
export async function terminalYaml(value: unknown): Promise<string> {
  const { Document, visit } = await import('yaml');
  const doc = new Document(value);
  // The yaml library escapes C0 in double quotes but leaves C1, separators and bidi raw: such strings are double-quoted, then escaped.
  visit(doc, {
    Scalar(_key, node) {
      if (typeof node.value === 'string' && new RegExp(JSON_UNSAFE.source).test(node.value)) node.type = 'QUOTE_DOUBLE';
    },
  });
  return String(doc).replace(JSON_UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
