/**
 * The real spam filters (and PostSRSd) inside a sandbox root. On a root other than `/` scoped runs the root's
 * own programs (ROOT/usr/bin/rspamd and so on), so a test that wants the real daemons links
 * Debian's installed programs into its root, and a test that wants one absent leaves it out.
 * The test set-up (scripts/prepare.mjs) installs the packages; a missing one is an error that
 * names the package, never a skipped test.
 */
import { existsSync } from 'node:fs';
import { mkdir, symlink } from 'node:fs/promises';
import path from 'node:path';

/** Each filter's programs as Debian installs them, and the package that brings them. */
export const FILTER_PROGRAMS = {
  rspamd: { package: 'rspamd', programs: ['/usr/bin/rspamd', '/usr/bin/rspamadm', '/usr/bin/rspamc'] },
  spamd: { package: 'spamd', programs: ['/usr/sbin/spamd'] },
  spamc: { package: 'spamc', programs: ['/usr/bin/spamc'] },
  spamassassin: { package: 'spamassassin', programs: ['/usr/bin/spamassassin'] },
  'redis-server': { package: 'redis-server', programs: ['/usr/bin/redis-server'] },
  postsrsd: { package: 'postsrsd', programs: ['/usr/sbin/postsrsd'] },
} as const;

export type FilterProgram = keyof typeof FILTER_PROGRAMS;

/** Link the host's programs of these packages into the root (all of them by default). */
export async function linkFilterPrograms(root: string, which: readonly FilterProgram[] = Object.keys(FILTER_PROGRAMS) as FilterProgram[]): Promise<void> {
  for (const name of which) {
    const { package: pkg, programs } = FILTER_PROGRAMS[name];
    for (const program of programs) {
      if (!existsSync(program))
        throw new Error(`${program} is missing: install Debian's ${pkg} (npm test installs it as root: node scripts/prepare.mjs --test)`);
      const inRoot = path.join(root, program);
      await mkdir(path.dirname(inRoot), { recursive: true });
      if (!existsSync(inRoot)) await symlink(program, inRoot);
    }
  }
}
