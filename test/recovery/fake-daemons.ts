/**
 * Stand-in filter daemons inside a sandbox root. On a sandbox root scoped runs the root's own
 * filter daemons (rootDaemons: ROOT/usr/bin/rspamd, ROOT/usr/sbin/spamd and their pid files under
 * ROOT/run), never the host's, so these tests do not depend on whether rspamd or SpamAssassin is
 * installed on the machine. Each stand-in is a small Node program that daemonizes, listens on the
 * port scoped waits for (the root's endpoint: rspamd's milter, spamd's), writes its pid file,
 * counts start attempts and SIGHUPs (reloads) and exits on SIGTERM; with ROOT/etc/fake-NAME.broken
 * present it refuses to start, with the file's text as its complaint.
 */
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { type DaemonSpec, rootDaemons, sandboxEndpoints } from '@scoped/system';
import { alive, killPids, pidsMentioning, waitFor } from '../helpers/proc.js';

/** The services (Debian's unit names) a test can have stand-ins for. */
export type Filter = 'rspamd' | 'spamd';

interface StandIn {
  pidFile: string;
  log: string;
  broken: string;
  starts: string;
  port: number;
  host: string;
}

const script = (s: StandIn) => `#!${process.execPath}
const fs = require('node:fs');
const path = require('node:path');
const s = ${JSON.stringify(s)};
if (process.argv[2] === 'run') {
  require('node:net').createServer((c) => c.end()).listen(s.port, s.host, () => fs.writeFileSync(s.pidFile, process.pid + '\\n'));
  process.on('SIGHUP', () => fs.appendFileSync(s.log, 'reload\\n'));
  process.on('SIGTERM', () => { fs.rmSync(s.pidFile, { force: true }); process.exit(0); });
} else {
  fs.appendFileSync(s.starts, 'start\\n');
  if (fs.existsSync(s.broken)) {
    process.stderr.write(path.basename(__filename) + ': cannot start: ' + fs.readFileSync(s.broken, 'utf8') + '\\n');
    process.exit(1);
  }
  require('node:child_process').spawn(process.execPath, [__filename, 'run'], { detached: true, stdio: 'ignore' }).unref();
}
`;

export class FakeDaemons {
  private constructor(
    readonly root: string,
    private readonly specs: Record<string, DaemonSpec>,
  ) {}

  /** Put stand-ins for these filters into the root: scoped then counts them as installed. */
  static async install(root: string, filters: readonly Filter[]): Promise<FakeDaemons> {
    // The root's ports, chosen now: scoped on this root reads the same file.
    const fakes = new FakeDaemons(root, rootDaemons(root, await sandboxEndpoints(root)));
    await mkdir(path.join(root, 'var/log'), { recursive: true });
    for (const f of filters) {
      const spec = fakes.spec(f);
      await mkdir(path.dirname(spec.program), { recursive: true });
      await mkdir(path.dirname(spec.pidFile), { recursive: true });
      const { host, port } = spec.ready!;
      await writeFile(
        spec.program,
        script({ pidFile: spec.pidFile, log: fakes.log(f, 'reloads'), broken: fakes.brokenFile(f), starts: fakes.log(f, 'starts'), host, port }),
      );
      await chmod(spec.program, 0o755);
      if (f === 'spamd') {
        // SpamAssassin after the queue also needs spamc, which Postfix runs (these tests send no mail through it).
        const spamc = path.join(root, 'usr/bin/spamc');
        await mkdir(path.dirname(spamc), { recursive: true });
        await writeFile(spamc, '#!/bin/sh\nexec cat\n', { mode: 0o755 });
      }
    }
    return fakes;
  }

  private spec(f: Filter): DaemonSpec {
    return this.specs[f]!;
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
