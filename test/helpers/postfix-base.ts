/**
 * The core both private Postfix instances share (PostfixRoot in sandbox.ts, PostfixSandbox in
 * postfix.ts): config dir, queue, data dir and log all under one temp root, laid out from
 * Debian's main.cf and the host's master.cf; start, and a stop that waits until the master and
 * every process under the root are gone.
 */
import { existsSync, readFileSync, utimesSync } from 'node:fs';
import { chown, copyFile, mkdir, chmod, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { alive, killPids, mustRun, pidsUnder, run, waitFor } from './proc.js';

async function postfixUser(): Promise<{ uid: number; gid: number }> {
  const line = (await readFile('/etc/passwd', 'utf8')).split('\n').find((l) => l.startsWith('postfix:'));
  if (!line) throw new Error('no postfix user: install Debian\'s postfix package');
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/**
 * A private Postfix needs root and Debian's postfix. `npm test` installs it when run as root;
 * without them the Postfix tests fail with this, rather than pass by being skipped.
 */
export function requirePostfix(): void {
  if (process.getuid?.() !== 0) throw new Error('the Postfix tests run a private Postfix and need root: run npm test as root');
  if (!existsSync('/usr/sbin/postfix') || !existsSync('/usr/share/postfix/main.cf.debian')) {
    throw new Error('Postfix is not installed: apt-get install postfix libsasl2-modules (npm test does it when run as root)');
  }
}

export interface PostfixLayout {
  /** `mynetworks` (left unset when absent). */
  mynetworks?: string;
  /** More `name=value` parameters. */
  params?: readonly string[];
  /** More master.cf services, as `postconf -M` entries. */
  services?: readonly string[];
}

/** A private Postfix under `root`; the root's directories must be traversable by the postfix user. */
export class PostfixBase {
  protected started = false;

  protected constructor(readonly root: string) {}

  /** The config dir (`-c`). */
  get dir(): string {
    return path.join(this.root, 'etc/postfix');
  }
  get mainCf(): string {
    return path.join(this.dir, 'main.cf');
  }
  get queueDir(): string {
    return path.join(this.root, 'var/spool/postfix');
  }
  get maillogFile(): string {
    return path.join(this.root, 'var/log/maillog');
  }

  /** Lay out the root and Postfix's config (its smtp/inet listener off); Postfix is not started. */
  protected async layout(opts: PostfixLayout = {}): Promise<void> {
    requirePostfix();
    const dataDir = path.join(this.root, 'var/lib/postfix');
    const logDir = path.join(this.root, 'var/log');
    for (const d of [this.dir, this.queueDir, dataDir, logDir]) await mkdir(d, { recursive: true, mode: 0o755 });
    for (const d of ['etc', 'var', 'var/spool', 'var/lib', 'var/log']) await chmod(path.join(this.root, d), 0o755);
    const { uid, gid } = await postfixUser();
    await chown(dataDir, uid, gid);
    await copyFile('/usr/share/postfix/main.cf.debian', this.mainCf);
    await copyFile('/etc/postfix/master.cf', path.join(this.dir, 'master.cf'));
    await this.postconf([
      '-e',
      `queue_directory=${this.queueDir}`,
      `data_directory=${dataDir}`,
      'inet_interfaces=loopback-only',
      'inet_protocols=ipv4',
      `maillog_file=${this.maillogFile}`,
      `maillog_file_prefixes=${logDir}`,
      'myhostname=sandbox.test',
      'mydestination=',
      ...(opts.mynetworks !== undefined ? [`mynetworks=${opts.mynetworks}`] : []),
      'compatibility_level=3.6',
      // Local delivery and aliases play no part here; keep Postfix from reading the host's /etc/aliases.
      'alias_maps=',
      'alias_database=',
      ...(opts.params ?? []),
    ]);
    await this.postconf(['-M#', 'smtp/inet']);
    for (const s of opts.services ?? []) await this.postconf(['-M', s]);
    this.backdateMainCf();
  }

  /** postconf on this instance; its stdout. */
  postconf(args: readonly string[]): Promise<string> {
    return mustRun('postconf', ['-c', this.dir, ...args]);
  }

  /**
   * Date main.cf 3 s into the past: Postfix pauses ~2 s ("cool-down") before reading a main.cf
   * changed within the last ~2 s, which a hand edit in a test would otherwise cost every time.
   */
  backdateMainCf(): void {
    const t = new Date(Date.now() - 3_000);
    utimesSync(this.mainCf, t, t);
  }

  async maillog(): Promise<string> {
    return (await readFile(this.maillogFile, 'utf8').catch(() => '')) as string;
  }

  /** The master's pid, when its pid file names a live process. */
  masterPid(): number | undefined {
    try {
      const pid = Number(readFileSync(path.join(this.queueDir, 'pid/master.pid'), 'utf8').trim());
      return Number.isInteger(pid) && pid > 0 && alive(pid) ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  async start(): Promise<void> {
    this.started = true;
    const r = await run('postfix', ['-c', this.dir, 'start'], { timeoutMs: 60_000 });
    if (r.code !== 0) throw new Error(`postfix start failed (${r.code ?? r.signal}): ${r.stdout}${r.stderr}\nmaillog:\n${await this.maillog()}`);
    await waitFor('the Postfix master to run', () => this.masterPid(), 20_000).catch(async (err) => {
      throw new Error(`${(err as Error).message}\nmaillog:\n${await this.maillog()}`);
    });
  }

  /** Stop Postfix and wait until its master and every process under the root are gone. */
  async stop(): Promise<void> {
    if (!this.started) return;
    const pid = this.masterPid();
    await run('postfix', ['-c', this.dir, 'stop'], { timeoutMs: 30_000 }).catch(() => undefined);
    // Ours, found by its own pid file: make sure it goes.
    if (pid !== undefined) await waitFor('the Postfix master to exit', () => (alive(pid) ? undefined : true), 15_000).catch(() => killPids([pid]));
    // The master's children (smtp, qmgr, pickup...) notice it is gone and exit; wait for them.
    await waitFor('every Postfix process under the root to exit', () => (pidsUnder(this.root).length ? undefined : true), 15_000).catch(() => killPids(pidsUnder(this.root)));
    this.started = false;
  }

  /** Stop everything and remove the root. Safe to call twice and after a failed start. */
  async close(): Promise<void> {
    try {
      await this.stop();
    } finally {
      await rm(this.root, { recursive: true, force: true, maxRetries: 3 });
    }
  }
}
