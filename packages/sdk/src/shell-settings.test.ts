import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { shellSettings, withShellSetting } from './shell-settings.js';

/** What the shell itself makes of the file: each key's value after sourcing it. */
function sourced(text: string, keys: string[]): Record<string, string> {
  const script = `${text}\nprintf '%s\\0' ${keys.map((k) => `"$${k}"`).join(' ')}`;
  const out = execFileSync('/bin/sh', ['-c', script], { encoding: 'utf8' }).split('\0');
  return Object.fromEntries(keys.map((k, i) => [k, out[i]!]));
}

const DEBIAN = [
  '# Default settings for PostSRSd',
  '',
  'SRS_DOMAIN=localdomain',
  '#SRS_EXCLUDE_DOMAINS=.example.com,example.org',
  'SRS_SEPARATOR==',
  'SRS_SECRET=/etc/postsrsd.secret',
  'RUN_AS="postsrsd"',
  "CHROOT='/var/lib/postsrsd'",
  '',
].join('\n');

describe('shell settings (/etc/default files)', () => {
  it('reads plain, double- and single-quoted assignments as the shell does, and skips comments', () => {
    const s = shellSettings(DEBIAN);
    const keys = ['SRS_DOMAIN', 'SRS_SEPARATOR', 'SRS_SECRET', 'RUN_AS', 'CHROOT'];
    expect(Object.fromEntries(keys.map((k) => [k, s.get(k)]))).toEqual(sourced(DEBIAN, keys));
    expect(s.has('SRS_EXCLUDE_DOMAINS')).toBe(false);
  });

  it('sets a key on its own line and keeps every other line byte for byte', () => {
    const next = withShellSetting(DEBIAN, 'SRS_DOMAIN', 'example.com');
    expect(next).toBe(DEBIAN.replace('SRS_DOMAIN=localdomain', 'SRS_DOMAIN=example.com'));
    expect(sourced(next, ['SRS_DOMAIN']).SRS_DOMAIN).toBe('example.com');
  });

  it('adds a missing key at the end, and makes a file from nothing', () => {
    expect(withShellSetting('A=1', 'SRS_DOMAIN', 'example.com')).toBe('A=1\nSRS_DOMAIN=example.com\n');
    expect(withShellSetting(null, 'SRS_DOMAIN', 'example.com')).toBe('SRS_DOMAIN=example.com\n');
  });

  it('refuses a value the shell would expand or split, and a key that is no shell name', () => {
    for (const bad of ['a b', '$(id)', '`id`', 'a;b', 'a\nB=1', '"x"']) expect(() => withShellSetting(DEBIAN, 'SRS_DOMAIN', bad)).toThrow(/not a plain value/);
    expect(() => withShellSetting(DEBIAN, 'srs domain', 'x')).toThrow(/not a settings key/);
  });
});
