import { parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { escapeControls, terminalJson, terminalYaml } from './terminal.js';

/** Characters a terminal may act on: ESC, BEL, DEL, C1 CSI, a line separator, a bidi override. */
const HOSTILE = 'a\x1b[2J\x07\x7f\x9b31m\u2028\u202eb';
const RAW = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

describe('terminal output', () => {
  it('escapes every control character in cli text, DEL included', () => {
    expect(escapeControls(HOSTILE)).not.toMatch(RAW);
    expect(escapeControls('a\x7fb')).toBe('a\\x7fb');
  });

  it('prints JSON and YAML with no raw control character, and both parse back to the same value', async () => {
    const value = { v: HOSTILE, [HOSTILE]: 1 };
    const json = terminalJson(value);
    const yaml = await terminalYaml(value);
    for (const text of [json, yaml]) expect(text).not.toMatch(RAW);
    expect(JSON.parse(json)).toEqual(value);
    expect(parseYaml(yaml)).toEqual(value);
  });
});
