import { describe, expect, it } from 'vitest';
import { scopeGet, scopeSet } from './methods.js';

const issues = (params: unknown) => {
  const r = scopeSet.params.safeParse(params);
  return r.success ? [] : r.error.issues.map((i) => i.path.join('.'));
};

describe('words beside args in scope.set and scope.get', () => {
  it('takes args alone, as JSON-RPC callers send them', () => {
    expect(scopeSet.params.safeParse({ name: 'mail.smart-host', args: ['relay.example', 'alice', 1.5] }).success).toBe(true);
    expect(scopeGet.params.safeParse({ name: 'cp.bootstrapper', args: ['system_hostname'] }).success).toBe(true);
  });

  it('takes the text each argument was typed as', () => {
    const params = {
      name: 'mail.smart-host',
      args: ['relay.example', 'alice', 1.5, 0, true, null, ['a']],
      words: ['relay.example', 'alice', '1.50', '-0', 'TRUE', 'None', null],
    };
    expect(issues(params)).toEqual([]);
  });

  it('refuses words that are not the text of their argument, naming which', () => {
    expect(issues({ name: 'x.y', args: [1.5], words: ['9'] })).toEqual(['words.0']);
    expect(issues({ name: 'x.y', args: [1.5], words: ['1.5\n'] })).toEqual(['words.0']);
    expect(issues({ name: 'x.y', args: ['a', 'b'], words: ['a', 'c'] })).toEqual(['words.1']);
    expect(issues({ name: 'x.y', args: [true], words: ['yes'] })).toEqual(['words.0']);
    expect(issues({ name: 'x.y', args: [['a']], words: ['[a]'] })).toEqual(['words.0']);
    expect(issues({ name: 'x.y', args: [null], words: ['nothing'] })).toEqual(['words.0']);
  });

  it('refuses words without args, or of another length', () => {
    expect(issues({ name: 'x.y', words: ['a'] })).toEqual(['words']);
    expect(issues({ name: 'x.y', args: ['a', 'b'], words: ['a'] })).toEqual(['words']);
    expect(scopeGet.params.safeParse({ name: 'x.y', args: ['a'], words: ['a', 'b'] }).success).toBe(false);
  });
});
