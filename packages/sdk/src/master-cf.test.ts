import { describe, expect, it } from 'vitest';
import { BLOCK_BEGIN, BLOCK_END, blockBegin, managedBlock, masterBlockChange, masterCfProblem, withManagedBlock } from './master-cf.js';

/** The head of Debian's master.cf, comments and continuation lines included. */
const DEBIAN = [
  '#',
  '# Postfix master process configuration file.',
  '# ==========================================================================',
  '# service type  private unpriv  chroot  wakeup  maxproc command + args',
  'smtp      inet  n       -       y       -       -       smtpd',
  'pickup    unix  n       -       y       60      1       pickup',
  'cleanup   unix  n       -       y       -       0       cleanup',
  'maildrop  unix  -       n       n       -       -       pipe',
  '  flags=DRXhu user=vmail argv=/usr/bin/maildrop -d ${recipient}',
  '',
].join('\n');
const LINES = ['scoped-spamassassin unix - n n - 10 pipe', '  flags=Rq user=debian-spamd argv=/x ${sender} ${recipient}'];

describe('master.cf block', () => {
  it('adding the block and taking it away leaves master.cf byte for byte as it was', () => {
    const on = withManagedBlock(DEBIAN, LINES);
    expect(on.startsWith(DEBIAN)).toBe(true);
    expect(on.slice(DEBIAN.length)).toBe(`${BLOCK_BEGIN}\n${LINES.join('\n')}\n${BLOCK_END}\n`);
    expect(managedBlock(on)).toEqual(LINES);
    expect(withManagedBlock(on, null)).toBe(DEBIAN);
  });

  it('replaces the block where it stands and keeps what the operator added after it', () => {
    const on = `${withManagedBlock(DEBIAN, LINES)}mine unix - n n - - pipe\n  argv=/bin/true\n`;
    const changed = withManagedBlock(on, ['other unix - n n - - pipe']);
    expect(managedBlock(changed)).toEqual(['other unix - n n - - pipe']);
    expect(changed.endsWith(`${BLOCK_END}\nmine unix - n n - - pipe\n  argv=/bin/true\n`)).toBe(true);
    expect(withManagedBlock(changed, null)).toBe(`${DEBIAN}mine unix - n n - - pipe\n  argv=/bin/true\n`);
  });

  it('adds a missing last newline before a new block, and changes nothing without a block to remove', () => {
    expect(withManagedBlock('smtp inet n - y - - smtpd', ['x'])).toBe(`smtp inet n - y - - smtpd\n${BLOCK_BEGIN}\nx\n${BLOCK_END}\n`);
    expect(withManagedBlock(DEBIAN, null)).toBe(DEBIAN);
    expect(managedBlock(DEBIAN)).toBeNull();
    expect(withManagedBlock(withManagedBlock(DEBIAN, LINES), LINES)).toBe(withManagedBlock(DEBIAN, LINES));
  });

  it('a block without its end, or twice, is a problem named for the operator, and is never edited', () => {
    for (const damaged of [
      `${DEBIAN}${BLOCK_BEGIN}\nx\n`,
      `${DEBIAN}${BLOCK_END}\n${BLOCK_BEGIN}\n`,
      withManagedBlock(DEBIAN, LINES) + withManagedBlock('', LINES),
    ]) {
      expect(masterCfProblem(damaged)).toMatch(/damaged scoped block.*remove both/);
      expect(() => withManagedBlock(damaged, null)).toThrow(/damaged/);
    }
    expect(masterCfProblem(withManagedBlock(DEBIAN, LINES))).toBeNull();
  });

  it('refuses a line that would break out of the block', () => {
    expect(() => withManagedBlock(DEBIAN, ['a\nb'])).toThrow(/not a master.cf line/);
    expect(() => withManagedBlock(DEBIAN, [BLOCK_END])).toThrow(/not a master.cf line/);
  });

  it('named blocks stand side by side: each is set and taken away alone, and the rest stays byte for byte', () => {
    const both = withManagedBlock(withManagedBlock(DEBIAN, LINES), ['relaylim unix - - n - - smtp'], 'transport');
    expect(managedBlock(both)).toEqual(LINES);
    expect(managedBlock(both, 'transport')).toEqual(['relaylim unix - - n - - smtp']);
    expect(both).toContain(`${blockBegin('transport')}\nrelaylim unix - - n - - smtp\n# scoped: end of transport\n`);
    expect(withManagedBlock(both, null)).toBe(withManagedBlock(DEBIAN, ['relaylim unix - - n - - smtp'], 'transport'));
    expect(withManagedBlock(withManagedBlock(both, null, 'transport'), null)).toBe(DEBIAN);
    // A line of another block's marker would confuse that block: refused too.
    expect(() => withManagedBlock(DEBIAN, [blockBegin('transport')])).toThrow(/not a master.cf line/);
    expect(() => withManagedBlock(DEBIAN, ['x'], 'Bad\nName')).toThrow(/not a master.cf block name/);
  });

  it('masterBlockChange: the change to a block, none when it already is so, none on a missing file or a damaged block', () => {
    const on = withManagedBlock(DEBIAN, LINES);
    expect(masterBlockChange(DEBIAN, 'spam filter', LINES, 'spamfilter')).toEqual({
      kind: 'master.block',
      name: 'spam filter',
      lines: LINES,
      current: null,
      var: 'spamfilter',
    });
    expect(masterBlockChange(on, 'spam filter', LINES)).toBeUndefined();
    expect(masterBlockChange(on, 'spam filter', null)).toEqual({ kind: 'master.block', name: 'spam filter', lines: null, current: LINES });
    expect(masterBlockChange(DEBIAN, 'spam filter', null)).toBeUndefined();
    expect(masterBlockChange(null, 'spam filter', LINES)).toBeUndefined();
    expect(masterBlockChange(`${DEBIAN}${BLOCK_BEGIN}\nx\n`, 'spam filter', LINES)).toBeUndefined();
  });
});
