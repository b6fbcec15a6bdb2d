/**
 * Stand-in spam daemons inside a sandbox root. On a sandbox root scoped runs the root's own
 * spam daemons (rootDaemons: ROOT/usr/bin/rspamd, ROOT/usr/sbin/spamd and their pid files under
 * ROOT/run), never the host's, so these tests do not depend on whether rspamd or SpamAssassin is
 * installed on the machine. Each stand-in is a small shell script that daemonizes, writes its pid
 * file, counts start attempts and SIGHUPs (reloads) and exits on SIGTERM; with ROOT/etc/fake-NAME.broken present it
 * refuses to start, with the file's text as its complaint.
 */
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { rootDaemons } from '@scoped/system';
import { alive, killPids, pidsMentioning, waitFor } from '../helpers/proc.js';

export type Filter = 'rspamd' | 'spamassassin';

const script = (pidFile: string, log: string, broken: string, starts: string) => `#!/bin/sh
if [ "$1" = run ]; then
  echo $$ > '${pidFile}'
  trap 'rm -f "${pidFile}"; exit 0' TERM
  trap 'echo reload >> "${log}"' HUP
  while :; do sleep 1 & wait $!; done
fi
echo start >> '${starts}'
if [ -e '${broken}' ]; then echo "$(basename "$0"): cannot start: $(cat '${broken}')" >&2; exit 1; fi
"$0" run </dev/null >/dev/null 2>&1 &
exit 0
`;

export class FakeDaemons {
  private constructor(readonly root: string) {}

  /** Put stand-ins for these filters into the root: scoped then counts them as installed. */
  static async install(root: string, filters: readonly Filter[]): Promise<FakeDaemons> {
    const fakes = new FakeDaemons(root);
    for (const f of filters) {
      const spec = fakes.spec(f);
      await mkdir(path.dirname(spec.program), { recursive: true });
      await mkdir(path.dirname(spec.pidFile), { recursive: true });
      await writeFile(spec.program, script(spec.pidFile, fakes.log(f, 'reloads'), fakes.brokenFile(f), fakes.log(f, 'starts')));
      await chmod(spec.program, 0o755);
    }
    return fakes;
  }

  private spec(f: Filter) {
    return rootDaemons(this.root)[f]!;
  }

  private log(f: Filter, what: 'reloads' | 'starts'): string {
    return path.join(this.root, `var/log/fake-${f}.${what}`);
  }

  private count(file: string): number {
    return existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean).length : 0;
  }

  private brokenFile(f: Filter): string {
    return path.join(this.root, `etc/fake-${f}.broken`);
  }

  /** From now on the filter's program refuses to start, saying why. */
  async breakStart(f: Filter, why: string): Promise<void> {
    await writeFile(this.brokenFile(f), why);
  }

  async mend(f: Filter): Promise<void> {
    await rm(this.brokenFile(f), { force: true });
  }

  /** The live pid of the filter's daemon, when it runs. */
  pid(f: Filter): number | undefined {
    const file = this.spec(f).pidFile;
    if (!existsSync(file)) return undefined;
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 && alive(pid) ? pid : undefined;
  }

  running(f: Filter): boolean {
    return this.pid(f) !== undefined;
  }

  /** How many reloads (SIGHUP) the filter's daemon has had. */
  reloads(f: Filter): number {
    return this.count(this.log(f, 'reloads'));
  }

  /** How many times the filter's program was run to start it (whether or not it started). */
  starts(f: Filter): number {
    return this.count(this.log(f, 'starts'));
  }

  /** Stop every stand-in still running (SIGTERM, then SIGKILL), found by the root in their command lines. */
  async stopAll(): Promise<void> {
    const pids = pidsMentioning(path.join(this.root, 'usr/'));
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // gone
      }
    }
    await waitFor('the stand-in daemons to exit', () => (pids.some(alive) ? undefined : true), 5_000).catch(() => killPids(pids));
  }
}
