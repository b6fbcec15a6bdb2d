import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { editMainCf, parseMainCf } from './maincf.js';

const sample = `# a comment
myhostname = host.example
relayhost =
smtpd_recipient_restrictions = permit_mynetworks,
    reject_unauth_destination
  # an indented comment inside nothing
mydestination = a, b
relayhost = [late]:25
`;

describe('parseMainCf', () => {
  it('joins continuation lines and lets the last definition win', () => {
    const p = parseMainCf(sample);
    expect(p.get('smtpd_recipient_restrictions')).toBe('permit_mynetworks, reject_unauth_destination');
    expect(p.get('relayhost')).toBe('[late]:25');
    expect(p.get('myhostname')).toBe('host.example');
  });

  it('reads what postconf -n reads', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'maincf-'));
    try {
      writeFileSync(path.join(dir, 'main.cf'), sample);
      const past = new Date(Date.now() - 5_000); // spare postconf its cool-down pause
      utimesSync(path.join(dir, 'main.cf'), past, past);
      const out = execFileSync('postconf', ['-c', dir, '-n'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
      const fromPostconf = new Map(
        out
          .trim()
          .split('\n')
          .map((l) => l.split(/ = ?/, 2) as [string, string]),
      );
      fromPostconf.delete('config_directory'); // postconf -c reports the directory it was given
      expect(parseMainCf(sample)).toEqual(new Map([...fromPostconf].map(([k, v]) => [k, v ?? ''])));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('editMainCf', () => {
  it('replaces in place, drops later duplicates and continuation lines, appends new names', () => {
    const out = editMainCf(
      sample,
      new Map([
        ['relayhost', '[relay]:587'],
        ['smtpd_recipient_restrictions', 'reject'],
        ['new_param', 'x'],
      ]),
    );
    expect(out).toBe(`# a comment
myhostname = host.example
relayhost = [relay]:587
smtpd_recipient_restrictions = reject
  # an indented comment inside nothing
mydestination = a, b
new_param = x
`);
  });

  it('removes every definition of a name', () => {
    const out = editMainCf(sample, new Map([['relayhost', null]]));
    expect(parseMainCf(out).has('relayhost')).toBe(false);
    expect(out.split('\n')).toHaveLength(sample.split('\n').length - 2);
  });

  it('leaves text byte-identical when nothing is edited', () => {
    expect(editMainCf(sample, new Map())).toBe(sample);
  });

  it('refuses a value with a line break, so no second parameter can be injected', () => {
    expect(() => editMainCf(sample, new Map([['relayhost', 'x\nmynetworks = 0.0.0.0/0']]))).toThrow(/line break/);
    expect(() => editMainCf(sample, new Map([['bad name', 'x']]))).toThrow(/parameter name/);
  });
});
