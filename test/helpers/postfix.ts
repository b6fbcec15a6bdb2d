/**
 * A real, private Postfix for end-to-end tests: its config dir, queue, data dir and log all
 * live under one root (the same root the scoped daemon manages, so `${root}/etc/postfix` is the
 * config dir both work on), laid out from Debian's main.cf and the host's master.cf. With
 * `smtpd`, its only listener is a smtpd on a free loopback port and mail can flow; without it,
 * it has no listener at all (enough for every test that only reads and writes its config).
 *
 * `scoped({ postfix: true })` makes one and owns it; nothing runs a shell: every program gets
 * an argument array.
 */
import { existsSync, readFileSync, statSync, utimesSync } from 'node:fs';
import { chmod, chown, copyFile, mkdir, readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { alive, freePort, killPids, mustRun, pidsUnder, run, waitFor } from './proc.js';

async function postfixUser(): Promise<{ uid: number; gid: number }> {
  const line = (await readFile('/etc/passwd', 'utf8')).split('\n').find((l) => l.startsWith('postfix:'));
  if (!line) throw new Error("no postfix user: install Debian's postfix package");
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/** A private Postfix needs root and Debian's postfix. `npm test` installs it when run as root. */
export function requirePostfix(): void {
  if (process.getuid?.() !== 0) throw new Error('the Postfix tests run a private Postfix and need root: run npm test as root');
  if (!existsSync('/usr/sbin/postfix') || !existsSync('/usr/share/postfix/main.cf.debian')) {
    throw new Error('Postfix is not installed: apt-get install postfix libsasl2-modules (npm test does it when run as root)');
  }
}

/** The postfix user must traverse every directory above a root; a private TMPDIR (0700) would fail obscurely. */
export function requireTraversable(dir: string): void {
  for (let d = dir; ; d = path.dirname(d)) {
    const mode = statSync(d).mode;
    if ((mode & 0o001) === 0)
      throw new Error(
        `${d} is not traversable by others (mode ${(mode & 0o777).toString(8)}); the postfix user could not reach a root under it: point TMPDIR elsewhere`,
      );
    if (d === path.dirname(d)) break;
  }
}

export interface PostfixOptions {
  /** A smtpd on a free loopback port (mynetworks 127.0.0.0/8, short retry times): mail can be submitted and relayed. */
  smtpd?: boolean;
}

/** `postconf -n` output as a map. */
function parseParams(out: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of out.split('\n')) {
    const i = line.indexOf(' = ');
    if (i > 0) m.set(line.slice(0, i), line.slice(i + 3));
    else if (line.endsWith(' =')) m.set(line.slice(0, -2), '');
  }
  return m;
}

/** A private Postfix under `root`; the root's directories must be traversable by the postfix user. */
export class Postfix {
  private started = false;

  private constructor(
    readonly root: string,
    /** The port of its own smtpd on 127.0.0.1, with `smtpd`; 0 otherwise. */
    readonly smtpPort: number,
  ) {}

  /** Lay out the root and Postfix's config; Postfix is not started. */
  static async create(root: string, opts: PostfixOptions = {}): Promise<Postfix> {
    requirePostfix();
    requireTraversable(tmpdir());
    const box = new Postfix(root, opts.smtpd ? await freePort() : 0);
    await box.layout(opts);
    return box;
  }

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
  /** The smart host's credentials map and its database. */
  get authMap(): string {
    return path.join(this.dir, 'smarthost-auth');
  }
  get authDb(): string {
    return path.join(this.dir, 'smarthost-auth.db');
  }

  private async layout(opts: PostfixOptions): Promise<void> {
    const dataDir = path.join(this.root, 'var/lib/postfix');
    const logDir = path.join(this.root, 'var/log');
    for (const d of [this.dir, this.queueDir, dataDir, logDir]) await mkdir(d, { recursive: true, mode: 0o755 });
    for (const d of ['etc', 'var', 'var/spool', 'var/lib', 'var/log']) await chmod(path.join(this.root, d), 0o755);
    const { uid, gid } = await postfixUser();
    await chown(dataDir, uid, gid);
    await copyFile('/usr/share/postfix/main.cf.debian', this.mainCf);
    await copyFile('/etc/postfix/master.cf', path.join(this.dir, 'master.cf'));
    const listen = `127.0.0.1:${this.smtpPort}`;
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
      'compatibility_level=3.6',
      // Local delivery and aliases play no part here; keep Postfix from reading the host's /etc/aliases.
      'alias_maps=',
      'alias_database=',
      // A deferred message is retried on flush, never behind a long backoff.
      ...(opts.smtpd ? ['mynetworks=127.0.0.0/8', 'minimal_backoff_time=1s', 'maximal_backoff_time=2s', 'queue_run_delay=1s'] : []),
    ]);
    await this.postconf(['-M#', 'smtp/inet']);
    if (opts.smtpd) await this.postconf(['-M', `${listen}/inet=${listen} inet n - y - - smtpd`]);
    this.backdateMainCf();
  }

  /** postconf on this instance; its stdout. */
  postconf(args: readonly string[]): Promise<string> {
    return mustRun('postconf', ['-c', this.dir, ...args]);
  }

  /** `postconf -n` as a map. */
  async params(): Promise<Map<string, string>> {
    return parseParams(await this.postconf(['-n']));
  }

  /** One parameter as `postconf -h` prints it. */
  async param(name: string): Promise<string> {
    return (await this.postconf(['-h', name])).trim();
  }

  /** A hand edit, as an operator would make it: `postconf -e name=value`, then backdated. */
  async handEdit(...assignments: string[]): Promise<void> {
    await this.postconf(['-e', ...assignments]);
    this.backdateMainCf();
  }

  /**
   * Date main.cf 3 s into the past: Postfix pauses ~2 s ("cool-down") before reading a main.cf
   * changed within the last ~2 s, which a hand edit in a test would otherwise cost every time.
   */
  backdateMainCf(): void {
    const t = new Date(Date.now() - 3_000);
    utimesSync(this.mainCf, t, t);
  }

  /** A file's mode under the config dir, or null when it is missing. */
  fileMode(rel: string): number | null {
    const p = path.join(this.dir, rel);
    return existsSync(p) ? statSync(p).mode & 0o7777 : null;
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

  /** Stop Postfix and wait until its master and every process under the root are gone; safe to call twice. */
  async stop(): Promise<void> {
    if (!this.started) return;
    const pid = this.masterPid();
    await run('postfix', ['-c', this.dir, 'stop'], { timeoutMs: 30_000 }).catch(() => undefined);
    // Ours, found by its own pid file: make sure it goes.
    if (pid !== undefined) await waitFor('the Postfix master to exit', () => (alive(pid) ? undefined : true), 15_000).catch(() => killPids([pid]));
    // The master's children (smtp, qmgr, pickup...) notice it is gone and exit; wait for them.
    await waitFor('every Postfix process under the root to exit', () => (pidsUnder(this.root).length ? undefined : true), 15_000).catch(() =>
      killPids(pidsUnder(this.root)),
    );
    this.started = false;
  }

  // -------------------------------------------------------------------------------------------
  // mail through it (with `smtpd`)

  /** Submit a message through sendmail (pickup); returns the Message-ID the test set. */
  async sendmail(opts: { from?: string; to?: string; subject?: string } = {}): Promise<string> {
    const id = `<${Date.now()}.${Math.random().toString(36).slice(2)}@sandbox.test>`;
    const from = opts.from ?? 'sender@sandbox.test';
    const to = opts.to ?? 'rcpt@remote.test';
    const body = [`From: ${from}`, `To: ${to}`, `Subject: ${opts.subject ?? 'e2e'}`, `Message-ID: ${id}`, '', 'Hello through the smart host.', ''].join('\n');
    await mustRun('sendmail', ['-C', this.dir, '-f', from, to], { input: body });
    return id;
  }

  /**
   * Submit a message over SMTP to the smtpd, as a client on 127.0.0.1 would, without logging
   * in. Resolves with every reply line; the caller judges them.
   */
  smtpSubmit(opts: { from?: string; to?: string; id?: string } = {}): Promise<string[]> {
    if (!this.smtpPort) throw new Error('this Postfix has no smtpd: scoped({ postfix: { smtpd: true } })');
    const from = opts.from ?? 'sender@sandbox.test';
    const to = opts.to ?? 'rcpt@remote.test';
    const id = opts.id ?? `<${Date.now()}.${Math.random().toString(36).slice(2)}@sandbox.test>`;
    const data = [`From: ${from}`, `To: ${to}`, 'Subject: e2e by smtp', `Message-ID: ${id}`, '', 'Hello by SMTP.', '.'].join('\r\n');
    const script = ['EHLO client.sandbox.test', `MAIL FROM:<${from}>`, `RCPT TO:<${to}>`, 'DATA', data, 'QUIT'];
    return new Promise((resolve, reject) => {
      const replies: string[] = [];
      const sock = connect({ host: '127.0.0.1', port: this.smtpPort });
      const timer = setTimeout(() => sock.destroy(new Error(`no complete SMTP dialogue within 20 s: ${replies.join(' | ')}`)), 20_000);
      let buffer = '';
      let step = 0;
      sock.setEncoding('utf8');
      sock.on('data', (chunk: string) => {
        buffer += chunk;
        let nl: number;
        while ((nl = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, nl).replace(/\r$/, '');
          buffer = buffer.slice(nl + 1);
          if (/^\d{3}-/.test(line)) continue;
          replies.push(line);
          const code = Number(line.slice(0, 3));
          // After a refusal, skip to QUIT; after QUIT, we are done.
          if (step >= script.length) continue;
          if (code >= 400 && script[step] !== 'QUIT') step = script.length - 1;
          sock.write(`${script[step++]}\r\n`);
        }
      });
      sock.once('error', (err) => (clearTimeout(timer), reject(err)));
      sock.once('close', () => (clearTimeout(timer), resolve(replies)));
    });
  }

  /** `postqueue -p`. */
  queue(): Promise<string> {
    return mustRun('postqueue', ['-c', this.dir, '-p']);
  }

  async queueEmpty(): Promise<boolean> {
    return /Mail queue is empty/.test(await this.queue());
  }

  /** `postqueue -f`: ask for immediate delivery of everything queued. */
  async flush(): Promise<void> {
    await mustRun('postqueue', ['-c', this.dir, '-f']);
  }
}
