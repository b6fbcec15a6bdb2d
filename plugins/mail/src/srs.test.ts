import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { withManagedBlock } from '@scoped/sdk';
import { postfixRoot } from '@scoped/testing';
import { describe, expect, it } from 'vitest';
import { LOCAL_CLEANUP, masterEntry, srsBlockLines, srsDomain } from './srs.js';

/** What Postfix itself reads from master.cf for these services (`postconf -M`, one line per service). */
function postconfM(dir: string, ...services: string[]): string[] {
  return execFileSync('postconf', ['-c', dir, '-M', ...services], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
    .trim()
    .split('\n');
}

describe('srsDomain', () => {
  it('is the hostname without its first label, or the hostname itself when it has two', () => {
    expect(srsDomain('mx.forwarder.test')).toBe('forwarder.test');
    expect(srsDomain('mail.example.co.uk')).toBe('example.co.uk');
    expect(srsDomain('example.com')).toBe('example.com');
    expect(srsDomain('localhost')).toBeNull();
    expect(srsDomain('')).toBeNull();
  });
});

describe('the SRS block in master.cf, as Postfix reads it', () => {
  it("adds a cleanup without sender rewriting, and pickup (the admin's entry, the last one wins) handing mail to it", () => {
    const root = postfixRoot();
    try {
      const dir = path.join(root, 'etc/postfix');
      const file = path.join(dir, 'master.cf');
      const before = readFileSync(file, 'utf8');
      const [pickupBefore] = postconfM(dir, 'pickup/unix');
      writeFileSync(file, withManagedBlock(before, srsBlockLines(before), 'srs'));
      const [local] = postconfM(dir, `${LOCAL_CLEANUP}/unix`);
      expect(local!.replace(/\s+/g, ' ')).toMatch(
        new RegExp(`^${LOCAL_CLEANUP} unix n - y - 0 cleanup -o syslog_name=postfix/${LOCAL_CLEANUP} -o sender_canonical_maps=$`),
      );
      // The admin's pickup stays as it was; the block's entry comes after it, and master(5) keeps the last of the same name and type.
      const pickups = postconfM(dir, 'pickup/unix').map((l) => l.replace(/\s+/g, ' '));
      expect(pickups).toEqual([pickupBefore!.replace(/\s+/g, ' '), `${pickupBefore!.replace(/\s+/g, ' ')} -o cleanup_service_name=${LOCAL_CLEANUP}`]);
      // Read again from the file with the block in it, the admin's entries are still found outside it.
      const again = readFileSync(file, 'utf8');
      expect(srsBlockLines(again)).toEqual(srsBlockLines(before));
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('finds the last entry of a service, with its continuation lines, and skips comments and scoped blocks', () => {
    const text = [
      '# pickup unix n - y 60 1 pickup',
      'pickup    unix  n       -       y       60      1       pickup',
      'cleanup   unix  n       -       y       -       0       cleanup',
      '  -o header_checks=regexp:/etc/postfix/header_checks',
      '# a comment inside',
      '  -o nested_header_checks=',
      'pickup    unix  n       -       n       60      1       pickup',
      '# scoped: other (managed by scoped; do not edit)',
      'cleanup   unix  n       -       n       -       0       cleanup',
      '# scoped: end of other',
      '',
    ].join('\n');
    expect(masterEntry(text, 'pickup', 'unix')?.lines).toEqual(['pickup    unix  n       -       n       60      1       pickup']);
    expect(masterEntry(text, 'cleanup', 'unix')?.lines).toEqual([
      'cleanup   unix  n       -       y       -       0       cleanup',
      '  -o header_checks=regexp:/etc/postfix/header_checks',
      '  -o nested_header_checks=',
    ]);
    expect(masterEntry(text, 'qmgr', 'unix')).toBeNull();
  });
});
