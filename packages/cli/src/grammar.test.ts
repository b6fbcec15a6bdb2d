import { scopeGet, scopeSet } from '@scoped/protocol';
import { describe, it, expect } from 'vitest';
import { ArgumentSyntaxError, formatWord, parseArgs, parseWord, readArgs, readWord, type ArgValue } from './grammar.js';

function syntaxError(word: string): ArgumentSyntaxError {
  try {
    parseWord(word);
  } catch (error) {
    expect(error).toBeInstanceOf(ArgumentSyntaxError);
    return error as ArgumentSyntaxError;
  }
  throw new Error(`expected ${word} to be rejected`);
}

describe('scalars', () => {
  it('reads null, None and NULL as null, other spellings as strings', () => {
    expect(parseArgs(['null', 'None', 'NULL'])).toEqual([null, null, null]);
    expect(parseArgs(['Null', 'none', 'nil'])).toEqual(['Null', 'none', 'nil']);
  });

  it('reads integers, including negative ones and zero', () => {
    expect(parseArgs(['42', '-7', '0', '-0'])).toEqual([42, -7, 0, 0]);
    expect(Object.is(parseWord('-0'), 0)).toBe(true);
    expect(parseWord(String(Number.MAX_SAFE_INTEGER))).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('reads floats when there is a dot', () => {
    expect(parseArgs(['1.5', '-0.25', '10.0'])).toEqual([1.5, -0.25, 10]);
  });

  it('keeps number-like words that are not plain decimals as strings', () => {
    const words = ['1e5', '0x10', '007', '1.2.3', '12abc', '.5', '5.', '+1', '--1', '9007199254740993'];
    expect(parseArgs(words)).toEqual(words);
  });

  it('reads true and false in any case', () => {
    expect(parseArgs(['true', 'FALSE', 'True', 'fAlSe'])).toEqual([true, false, true, false]);
    expect(parseArgs(['yes', 'truee'])).toEqual(['yes', 'truee']);
  });

  it('keeps other words, and the empty word, as strings', () => {
    expect(parseArgs(['example.com', 'relay:587', '', "it's", 'a b'])).toEqual(['example.com', 'relay:587', '', "it's", 'a b']);
  });
});

describe('quotes', () => {
  it('strips single quotes and never coerces the content', () => {
    expect(parseArgs(["'[relay]:587'", "'null'", "'42'", "'true'", "''"])).toEqual(['[relay]:587', 'null', '42', 'true', '']);
  });

  it('strips double quotes the same way', () => {
    expect(parseArgs(['"[relay]:587"', '"None"', '"1.5"', '"a,b"'])).toEqual(['[relay]:587', 'None', '1.5', 'a,b']);
  });

  it('allows escaped quotes inside quotes', () => {
    expect(parseWord("'it\\'s'")).toBe("it's");
    expect(parseWord('"say \\"hi\\""')).toBe('say "hi"');
    expect(parseWord('"it\'s"')).toBe("it's");
  });

  it('rejects an unterminated quote', () => {
    const error = syntaxError("'abc");
    expect(error.message).toBe("unterminated ' quote in 'abc");
    expect(error.word).toBe("'abc");
    expect(error.suggestion).toBeUndefined();
    expect(syntaxError('"abc').message).toContain('unterminated " quote');
    expect(syntaxError("'").message).toContain('unterminated');
  });

  it('rejects text after the closing quote', () => {
    expect(syntaxError("'a'b").message).toContain('unexpected text after closing quote');
    expect(syntaxError("'a'b'").message).toContain('unexpected text after closing quote');
  });
});

describe('escapes', () => {
  it('escapes the next character anywhere', () => {
    expect(parseWord('\\[x')).toBe('[x');
    expect(parseWord('a\\\\b')).toBe('a\\b');
    expect(parseWord('[a\\,b,c]')).toEqual(['a,b', 'c']);
    expect(parseWord('[a\\:b]')).toEqual(['a:b']);
    expect(parseWord('[a\\]b]')).toEqual(['a]b']);
    expect(parseWord('[\\[x]')).toEqual(['[x']);
  });

  it('makes an escaped word a literal string', () => {
    expect(parseArgs(['\\42', 'nul\\l', '\\true'])).toEqual(['42', 'null', 'true']);
  });

  it('rejects a trailing backslash', () => {
    expect(syntaxError('abc\\').message).toBe('trailing \\ in abc\\: write \\\\ for a literal backslash');
  });
});

describe('lists and maps', () => {
  it('reads lists of strings', () => {
    expect(parseWord('[a,b,c]')).toEqual(['a', 'b', 'c']);
  });

  it('reads the empty list', () => {
    expect(parseWord('[]')).toEqual([]);
    expect(parseWord('[ ]')).toEqual([]);
  });

  it('coerces list items like scalars', () => {
    expect(parseWord('[1,2]')).toEqual([1, 2]);
    expect(parseWord('[null,None,TRUE,-1.5,\'7\',"null",x]')).toEqual([null, null, true, -1.5, '7', 'null', 'x']);
  });

  it('skips spaces after commas and opening brackets', () => {
    expect(parseWord('[a, b,   c]')).toEqual(['a', 'b', 'c']);
    expect(parseWord('[ 1, 2]')).toEqual([1, 2]);
    expect(parseWord('[a: 1, b: x y]')).toEqual({ a: 1, b: 'x y' });
  });

  it('reads key:value pairs as a map with coerced values', () => {
    expect(parseWord('[a:1,b:true]')).toEqual({ a: 1, b: true });
    expect(parseWord("[host:'[relay]:587',port:'25',x:null]")).toEqual({ host: '[relay]:587', port: '25', x: null });
  });

  it('keeps keys as written, without coercion', () => {
    expect(parseWord("[1:a,null:b,'c d':e]")).toEqual({ '1': 'a', null: 'b', 'c d': 'e' });
  });

  it('keeps __proto__ as an ordinary key', () => {
    const value = parseWord('[__proto__:1]') as Record<string, ArgValue>;
    expect(Object.keys(value)).toEqual(['__proto__']);
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
  });

  it('nests lists and maps', () => {
    expect(parseWord('[nice:[soft:19,hard:5]]')).toEqual({ nice: { soft: 19, hard: 5 } });
    expect(parseWord('[[1,2],[a:[]],[]]')).toEqual([[1, 2], { a: [] }, []]);
  });

  it('keeps a bracket inside a word literal', () => {
    expect(parseWord('a[b]')).toBe('a[b]');
    expect(parseWord('[a[b]')).toEqual(['a[b']);
  });

  it('keeps commas and stray closing brackets outside lists in the string', () => {
    expect(parseWord('a,b')).toBe('a,b');
    expect(parseWord('a]')).toBe('a]');
  });

  it('rejects mixing items and pairs', () => {
    expect(syntaxError('[a,b:1]').message).toBe('cannot mix list items and key:value pairs in [a,b:1]');
    expect(syntaxError('[a:1,b]').message).toContain('cannot mix');
  });

  it('rejects empty items, duplicate keys, list keys and a second colon', () => {
    expect(syntaxError('[a,,b]').message).toBe("empty item in [a,,b]: write '' for an empty string");
    expect(syntaxError('[a,]').message).toContain('empty item');
    expect(syntaxError('[:1]').message).toContain('empty item');
    expect(syntaxError('[a:1,a:2]').message).toBe('duplicate key a in [a:1,a:2]');
    expect(syntaxError('[[a]:1]').message).toContain('map key must be a string');
    expect(syntaxError('[url:http://x]').message).toContain('unexpected : after a map value');
  });

  it('rejects text glued to a nested list or a quoted item', () => {
    expect(syntaxError('[[a]b]').message).toContain('unexpected text after ]');
    expect(syntaxError("['a'b]").message).toContain('unexpected text after closing quote');
  });
});

describe('bracket errors', () => {
  it('rejects text after a top-level list and suggests the quoted form', () => {
    const error = syntaxError('[relay]:587');
    expect(error.name).toBe('ArgumentSyntaxError');
    expect(error.message).toBe(`unquoted brackets in [relay]:587: quote it as "'[relay]:587'" so it is read as a string`);
    expect(error.word).toBe('[relay]:587');
    expect(error.suggestion).toBe("'[relay]:587'");
    expect(parseWord(error.suggestion ?? '')).toBe('[relay]:587');
    expect(syntaxError('[a]b').message).toBe(`unquoted brackets in [a]b: quote it as "'[a]b'" so it is read as a string`);
    expect(syntaxError('[a]]').suggestion).toBe("'[a]]'");
  });

  it('shell-quotes the suggestion in the message when it needs escaping', () => {
    const error = syntaxError('[a]"$x');
    expect(error.suggestion).toBe(`'[a]"$x'`);
    expect(error.message).toContain(`quote it as "'[a]\\"\\$x'"`);
  });

  it('rejects an unclosed bracket and suggests quoting', () => {
    const error = syntaxError('[a,b');
    expect(error.message).toBe(`unclosed [ in [a,b: quote it as "'[a,b'" so it is read as a string`);
    expect(error.suggestion).toBe("'[a,b'");
    for (const word of ['[', '[a', '[a,', '[a:', '[a,[b]', '[a:[b:1]']) {
      expect(syntaxError(word).message).toContain(`unclosed [ in ${word}:`);
    }
  });

  it('is an Error with the offending word', () => {
    const error = syntaxError('[x');
    expect(error).toBeInstanceOf(Error);
    expect(error.word).toBe('[x');
  });

  it('reports the whole word from parseArgs', () => {
    expect(() => parseArgs(['ok', '[relay]:587'])).toThrow(/unquoted brackets in \[relay\]:587/);
  });
});

describe('formatWord', () => {
  it('writes plain words bare and quotes the rest', () => {
    expect(formatWord('example.com')).toBe('example.com');
    expect(formatWord('[relay]:587')).toBe("'[relay]:587'");
    expect(formatWord('42')).toBe("'42'");
    expect(formatWord('None')).toBe("'None'");
    expect(formatWord('True')).toBe("'True'");
    expect(formatWord('')).toBe("''");
    expect(formatWord("it's \\")).toBe("'it\\'s \\\\'");
  });

  it('writes lists, maps and scalars', () => {
    expect(formatWord({ nice: { soft: 19, hard: 5 } })).toBe('[nice:[soft:19,hard:5]]');
    expect(formatWord(['a', 1, 1.5, null, true, []])).toBe('[a,1,1.5,null,true,[]]');
    expect(formatWord({ '1': 'x' })).toBe('[1:x]');
  });

  it('writes numbers in decimal notation', () => {
    expect(formatWord(1e-7)).toBe('0.0000001');
    expect(formatWord(-1.5e-7)).toBe('-0.00000015');
    expect(formatWord(2 ** 53)).toBe('9007199254740992.0');
    expect(formatWord(-0)).toBe('-0.0');
  });

  it('writes the empty map as an empty list, the grammar having no empty-map form', () => {
    expect(formatWord({})).toBe('[]');
  });

  it('refuses NaN and infinities', () => {
    expect(() => formatWord(Number.NaN)).toThrow(RangeError);
    expect(() => formatWord(Number.POSITIVE_INFINITY)).toThrow(RangeError);
  });
});

describe('round trip', () => {
  // A small seeded PRNG (mulberry32) keeps the property check deterministic.
  function random(seed: number): () => number {
    return () => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  const specials = ['[', ']', ',', ':', "'", '"', '\\', ' ', '\t', '\n'];
  const strings = [
    ...specials,
    specials.join(''),
    '',
    ' lead',
    'trail ',
    'null',
    'None',
    'NULL',
    'true',
    'FALSE',
    '42',
    '-7',
    '1.5',
    '-0',
    '1e5',
    '007',
    '[relay]:587',
    "'quoted'",
    '"dq"',
    'a\\',
    '__proto__',
    'héllo 🌍',
    'plain',
  ];
  const numbers = [0, -0, 1, -1, 42, -7, 1.5, -0.25, 0.1, 1e-7, -1.5e-7, 2 ** 53, 1e300, -1e21, 123.456, Number.MAX_SAFE_INTEGER, Number.MIN_VALUE];

  function generate(next: () => number, depth: number): ArgValue {
    const pick = <T>(values: readonly T[]): T => values[Math.floor(next() * values.length)] as T;
    const kind = Math.floor(next() * (depth > 0 ? 7 : 5));
    switch (kind) {
      case 0:
        return null;
      case 1:
        return next() < 0.5;
      case 2:
        return pick(numbers);
      case 3:
      case 4: {
        let s = '';
        for (let i = Math.floor(next() * 3); i >= 0; i--) s += pick(strings);
        return s;
      }
      case 5:
        return Array.from({ length: Math.floor(next() * 4) }, () => generate(next, depth - 1));
      default: {
        // At least one entry: the empty map is written as [] and reads back as a list.
        const entries = Array.from({ length: 1 + Math.floor(next() * 3) }, (): [string, ArgValue] => [pick(strings), generate(next, depth - 1)]);
        return Object.fromEntries(entries);
      }
    }
  }

  it('reads every special string back', () => {
    for (const s of strings) expect(parseWord(formatWord(s))).toBe(s);
  });

  it('reads every number back exactly', () => {
    for (const n of numbers) expect(Object.is(parseWord(formatWord(n)), n)).toBe(true);
  });

  it('reads generated values back to the same value', () => {
    const next = random(0x5eed);
    for (let i = 0; i < 2000; i++) {
      const value = generate(next, 3);
      const word = formatWord(value);
      expect(parseWord(word), word).toEqual(value);
      // The text kept beside it is what the daemon takes as the text of that value.
      expect(scopeSet.params.safeParse({ name: 'x.y', ...readArgs([word]) }).success, word).toBe(true);
    }
  });
});

describe('the text of each word as typed', () => {
  it('keeps the text of typed numbers, booleans and nulls beside their values', () => {
    const typed = ['1.50', '-0', '1.0', '007', 'TRUE', 'fAlSe', 'None', 'NULL', '42'];
    expect(readArgs(typed)).toEqual({ args: [1.5, 0, 1, '007', true, false, null, null, 42], words: typed });
  });

  it('gives the content of quotes and the word without its escapes', () => {
    expect(readWord("'1.50'")).toEqual({ value: '1.50', text: '1.50' });
    expect(readWord('"it\\"s"')).toEqual({ value: 'it"s', text: 'it"s' });
    expect(readWord("''")).toEqual({ value: '', text: '' });
    expect(readWord('1\\.50')).toEqual({ value: '1.50', text: '1.50' });
    expect(readWord('\\-0')).toEqual({ value: '-0', text: '-0' });
  });

  it('has no text for a list or a map', () => {
    expect(readWord('[1.50,a]')).toEqual({ value: [1.5, 'a'], text: null });
    expect(readWord('[k:1.0]')).toEqual({ value: { k: 1 }, text: null });
    expect(readArgs(['[]', 'x'])).toEqual({ args: [[], 'x'], words: [null, 'x'] });
  });

  it('reads the same values as parseWord', () => {
    const words = ['1.50', "'x'", '[a,[b:c]]', 'null', 'true', '-7', 'a\\ b', '9007199254740993'];
    expect(readArgs(words).args).toEqual(parseArgs(words));
  });

  it('gives back the string a formatted string word stands for', () => {
    const samples = ['1.50', '-0', 'TRUE', 'None', "it's", 'a b', '[relay]:587', '', 'plain', 'a\\'];
    for (const s of samples) expect(readWord(formatWord(s)).text, formatWord(s)).toBe(s);
  });

  it('sends words the daemon accepts beside their args, in scope.set and scope.get', () => {
    const words = ['1.50', '-0', '1.0', 'TRUE', 'None', 'NULL', "'1.50'", '[a,1.0]', '[k:v]', 'x\\:y', '9007199254740993', '-0.0', "''"];
    for (const w of words) {
      const params = { name: 'mail.smart-host', ...readArgs([w]) };
      expect(scopeSet.params.safeParse(params).success, w).toBe(true);
      expect(scopeGet.params.safeParse(params).success, w).toBe(true);
    }
  });
});
