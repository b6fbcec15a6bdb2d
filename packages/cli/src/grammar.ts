/**
 * The argument grammar of `cpcmd`: every shell word is one argument, read as a
 * scalar (null, boolean, number, string), a quoted string, or a bracketed
 * list/map such as `[a,b]` or `[nice:[soft:19,hard:5]]`.
 */

/** A value an argument word can denote. */
export type ArgValue = null | boolean | number | string | ArgValue[] | { [key: string]: ArgValue };

/** Thrown when a word cannot be read; `word` is the whole offending argument. */
export class ArgumentSyntaxError extends Error {
  override readonly name = 'ArgumentSyntaxError';
  /** The argument word that failed to parse. */
  readonly word: string;
  /** A word to pass instead (as parseWord receives it, before shell quoting), when there is an obvious one. */
  readonly suggestion?: string;

  constructor(message: string, word: string, suggestion?: string) {
    super(message);
    this.word = word;
    if (suggestion !== undefined) this.suggestion = suggestion;
  }
}

const NULLS = new Set(['null', 'None', 'NULL']);
const INT = /^-?(?:0|[1-9]\d*)$/;
const FLOAT = /^-?\d+\.\d+$/;
const IN_LIST_STOPS = ',:]';

/** Reads an unquoted, unescaped scalar; anything that is not clearly a null, boolean or number stays a string. */
function coerce(text: string): ArgValue {
  if (NULLS.has(text)) return null;
  if (/^(?:true|false)$/i.test(text)) return text.toLowerCase() === 'true';
  if (INT.test(text)) {
    const n = Number(text);
    if (Number.isSafeInteger(n)) return n + 0; // `-0` is the integer 0
  } else if (FLOAT.test(text)) {
    const n = Number(text);
    if (Number.isFinite(n)) return n;
  }
  return text;
}

/** A scalar as written: quotes or escapes make it literal, i.e. never coerced. */
class Raw {
  constructor(
    readonly text: string,
    readonly literal: boolean,
  ) {}

  value(): ArgValue {
    return this.literal ? this.text : coerce(this.text);
  }
}

/** Wraps a word in double quotes for a POSIX shell, for error messages. */
function shellQuote(s: string): string {
  return `"${s.replace(/["\\$`]/g, '\\$&')}"`;
}

class Parser {
  private pos = 0;

  constructor(private readonly word: string) {}

  parse(): TypedWord {
    if (this.word.startsWith('[')) {
      const list = this.list();
      // ApisCP silently drops whatever follows the list, e.g. the port in `[relay]:587`.
      if (this.pos < this.word.length) throw this.quoteIt('unquoted brackets');
      return { value: list, text: null };
    }
    const raw = this.scalar(false);
    if (this.pos < this.word.length) throw this.textAfter('closing quote');
    return { value: raw.value(), text: raw.text };
  }

  private list(): ArgValue {
    this.pos++; // the '['
    const items: ArgValue[] = [];
    const entries: [string, ArgValue][] = [];
    this.skipSpaces();
    if (this.peek() === ']') {
      this.pos++;
      return items;
    }
    for (;;) {
      const first = this.item();
      if (this.peek() === ':') {
        this.pos++;
        if (!(first instanceof Raw)) throw this.fail(`a map key must be a string, not a list, in ${this.word}`);
        if (entries.some(([key]) => key === first.text)) throw this.fail(`duplicate key ${first.text} in ${this.word}`);
        const value = this.item();
        if (this.peek() === ':') throw this.fail(`unexpected : after a map value in ${this.word}: escape it as \\: or quote the value`);
        entries.push([first.text, value instanceof Raw ? value.value() : value]);
      } else {
        items.push(first instanceof Raw ? first.value() : first);
      }
      if (items.length > 0 && entries.length > 0) throw this.fail(`cannot mix list items and key:value pairs in ${this.word}`);
      const c = this.peek();
      this.pos++;
      // fromEntries defines own properties, so a `__proto__` key stays an ordinary key.
      if (c === ']') return entries.length > 0 ? Object.fromEntries(entries) : items;
      if (c !== ',') throw this.quoteIt('unclosed [');
    }
  }

  /** One list item, map key or map value; leaves the position on `,`, `:`, `]` or the end. */
  private item(): ArgValue | Raw {
    this.skipSpaces();
    if (this.peek() === undefined) throw this.quoteIt('unclosed [');
    const item = this.peek() === '[' ? this.list() : this.scalar(true);
    if (item instanceof Raw && !item.literal && item.text === '') {
      throw this.fail(`empty item in ${this.word}: write '' for an empty string`);
    }
    const c = this.peek();
    if (c !== undefined && !IN_LIST_STOPS.includes(c)) throw this.textAfter(item instanceof Raw ? 'closing quote' : ']');
    return item;
  }

  private scalar(inList: boolean): Raw {
    const quote = this.peek();
    if (quote === "'" || quote === '"') {
      this.pos++;
      let text = '';
      for (let c = this.word[this.pos++]; c !== quote; c = this.word[this.pos++]) {
        if (c === undefined) throw this.fail(`unterminated ${quote} quote in ${this.word}`);
        text += c === '\\' ? this.escaped() : c;
      }
      return new Raw(text, true);
    }
    let text = '';
    let literal = false;
    for (let c = this.peek(); c !== undefined && !(inList && IN_LIST_STOPS.includes(c)); c = this.peek()) {
      this.pos++;
      if (c === '\\') {
        text += this.escaped();
        literal = true;
      } else {
        text += c;
      }
    }
    return new Raw(text, literal);
  }

  private escaped(): string {
    const c = this.word[this.pos++];
    if (c === undefined) throw this.fail(`trailing \\ in ${this.word}: write \\\\ for a literal backslash`);
    return c;
  }

  private skipSpaces(): void {
    while (this.peek() === ' ') this.pos++;
  }

  private peek(): string | undefined {
    return this.word[this.pos];
  }

  private fail(message: string): ArgumentSyntaxError {
    return new ArgumentSyntaxError(message, this.word);
  }

  private textAfter(what: string): ArgumentSyntaxError {
    return this.fail(`unexpected text after ${what} at position ${this.pos} in ${this.word}`);
  }

  private quoteIt(problem: string): ArgumentSyntaxError {
    const suggestion = formatWord(this.word);
    return new ArgumentSyntaxError(`${problem} in ${this.word}: quote it as ${shellQuote(suggestion)} so it is read as a string`, this.word, suggestion);
  }
}

/**
 * One argument word read: its value, and for a scalar the text it was typed as, quotes and
 * escapes removed (`1.50` for the number 1.5, `TRUE` for true, `-0` for 0). A scope that wants a
 * string takes the text, so what the user typed is what it gets. Null for a list or a map.
 */
export interface TypedWord {
  value: ArgValue;
  text: string | null;
}

/**
 * Parses one argument word (already split by the shell), keeping the text of a scalar beside its value.
 * @throws {ArgumentSyntaxError} on unquoted trailing text after a list, unclosed brackets or quotes,
 *   lists mixing items and `key:value` pairs, empty list items, duplicate keys and a trailing backslash.
 */
export function readWord(word: string): TypedWord {
  return new Parser(word).parse();
}

/** Parses one argument word to its value; see {@link readWord}. */
export function parseWord(word: string): ArgValue {
  return readWord(word).value;
}

/** Parses every argument word; see {@link parseWord}. */
export function parseArgs(words: readonly string[]): ArgValue[] {
  return words.map((word) => parseWord(word));
}

/**
 * Parses every argument word into the `args` and `words` of a scope.set or scope.get call:
 * each value, and beside it the text of each scalar as typed (null for a list or map).
 */
export function readArgs(words: readonly string[]): { args: ArgValue[]; words: (string | null)[] } {
  const read = words.map((word) => readWord(word));
  return { args: read.map((r) => r.value), words: read.map((r) => r.text) };
}

/**
 * Formats a value as one word that {@link parseWord} reads back to the same value. Strings are
 * quoted as `'...'` (with `\'` and `\\` inside) when they would otherwise be coerced or contain
 * brackets, commas, colons, quotes, backslashes or whitespace. The one lossy case is the empty
 * map `{}`, written `[]` (an empty list), as the grammar has no empty-map form.
 * @throws {RangeError} for NaN and infinities, which no word denotes.
 */
export function formatWord(value: ArgValue): string {
  if (value === null || typeof value === 'boolean') return String(value);
  if (typeof value === 'number') return formatNumber(value);
  if (typeof value === 'string') return formatString(value, true);
  if (Array.isArray(value)) return `[${value.map((item) => formatWord(item)).join(',')}]`;
  const pairs = Object.entries(value).map(([key, item]) => `${formatString(key, false)}:${formatWord(item)}`);
  return `[${pairs.join(',')}]`;
}

function formatString(s: string, coercible: boolean): string {
  const plain = s !== '' && !/[[\],:'"\\\s]/.test(s) && !(coercible && coerce(s) !== s);
  return plain ? s : `'${s.replace(/['\\]/g, '\\$&')}'`;
}

/** Writes numbers in the only shapes parseWord reads: `-?\d+` (safe integers) or `-?\d+\.\d+`. */
function formatNumber(n: number): string {
  if (!Number.isFinite(n)) throw new RangeError(`${n} cannot be written as an argument`);
  if (Object.is(n, -0)) return '-0.0';
  if (Number.isSafeInteger(n)) return String(n);
  if (Number.isInteger(n)) return `${BigInt(n)}.0`;
  // Non-integers only use exponent notation below 1e-6, e.g. 1.5e-7.
  const m = /^(-?)(\d)(?:\.(\d+))?e-(\d+)$/.exec(String(n));
  return m ? `${m[1]}0.${'0'.repeat(Number(m[4]) - 1)}${m[2]}${m[3] ?? ''}` : String(n);
}
