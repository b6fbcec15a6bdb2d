/**
 * A real, private Postfix instance for end-to-end tests, and the two processes the tests
 * drive it through: the scoped daemon (with its --root on the sandbox) and the cpcmd binary.
 *
 * Every resource here has one owner that closes it: `PostfixSandbox.close()` stops Postfix
 * (waiting until its master and every process under the sandbox are gone) and removes the
 * sandbox; `ScopedDaemon.stop()` sends SIGTERM and awaits the exit. Nothing runs a shell:
 * every program gets an argument array. Everything is asynchronous, because the SMTP sink the
 * tests talk to lives in the test's own process and must keep answering meanwhile.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readlinkSync, readFileSync, statSync, utimesSync } from 'node:fs';
import { chmod, chown, copyFile, mkdir, mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { createServer, request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SCOPED_BIN = path.join(REPO, 'packages/daemon/bin/scoped.js');
const CPCMD_BIN = path.join(REPO, 'packages/cli/bin/cpcmd.js');

/** What a finished program left behind. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run a program (never through a shell) and collect its output; rejects only when it cannot start or times out. */
export function run(file: string, args: readonly string[], opts: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timeoutMs = opts.timeoutMs ?? 60_000;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${file} ${args.join(' ')} did not finish within ${timeoutMs} ms; stdout: ${stdout} stderr: ${stderr}`));
    }, timeoutMs);
    child.once('error', (err) => (clearTimeout(timer), reject(err)));
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

/** Run a program that must succeed; its output otherwise goes into the error. */
export async function mustRun(file: string, args: readonly string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<string> {
  const r = await run(file, args, opts);
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

/** Poll `probe` until it returns a value other than undefined, or fail with `what` after `timeoutMs`. */
export async function waitFor<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 20_000, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${String(lastError)}` : ''}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** A loopback TCP port that was free a moment ago (bind port 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Pids whose working directory or root lies inside `dir`: Postfix's daemons run chrooted or chdir'ed into the queue. */
function pidsUnder(dir: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    for (const link of ['cwd', 'root']) {
      try {
        const target = readlinkSync(`/proc/${entry}/${link}`);
        if (target === dir || target.startsWith(`${dir}/`)) {
          out.push(Number(entry));
          break;
        }
      } catch {
        // gone, or not ours to read
      }
    }
  }
  return out;
}

/**
 * A private Postfix: its config dir, queue, data dir and log all live under one temporary
 * root, and its only listener is a smtpd on a free loopback port. `root` is the same root the
 * scoped daemon manages, so `${root}/etc/postfix` is the config dir both work on.
 */
export class PostfixSandbox {
  private constructor(
    readonly root: string,
    /** The port of the sandbox's own smtpd on 127.0.0.1. */
    readonly smtpPort: number,
  ) {}

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

  /** Lay out a sandbox and its config; Postfix is not started yet. */
  static async create(): Promise<PostfixSandbox> {
    // The postfix user must traverse every directory above the sandbox; a private TMPDIR (0700) would fail obscurely.
    for (let d = tmpdir(); ; d = path.dirname(d)) {
      if ((statSync(d).mode & 0o001) === 0) throw new Error(`${d} is not traversable by others (mode ${(statSync(d).mode & 0o777).toString(8)}); the postfix user could not reach a sandbox under it: point TMPDIR elsewhere`);
      if (d === path.dirname(d)) break;
    }
    const root = await mkdtemp(path.join(tmpdir(), 'scoped-mail-e2e-'));
    // mkdtemp makes 0700; the postfix user must be able to traverse it.
    await chmod(root, 0o755);
    try {
      const port = await freePort();
      const box = new PostfixSandbox(root, port);
      await box.layout();
      return box;
    } catch (err) {
      await rm(root, { recursive: true, force: true });
      throw err;
    }
  }

  private async layout(): Promise<void> {
    const dataDir = path.join(this.root, 'var/lib/postfix');
    const logDir = path.join(this.root, 'var/log');
    for (const d of [this.dir, this.queueDir, dataDir, logDir, path.join(this.root, 'etc')]) await mkdir(d, { recursive: true, mode: 0o755 });
    for (const d of ['var', 'var/spool', 'var/lib', 'var/log', 'etc']) await chmod(path.join(this.root, d), 0o755);
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
      'mynetworks=127.0.0.0/8',
      'compatibility_level=3.6',
      // Local delivery and aliases play no part here; keep Postfix from reading the host's /etc/aliases.
      'alias_maps=',
      'alias_database=',
      // A deferred message is retried on flush, never behind a long backoff.
      'minimal_backoff_time=1s',
      'maximal_backoff_time=2s',
      'queue_run_delay=1s',
    ]);
    await this.postconf(['-M#', 'smtp/inet']);
    const listen = `127.0.0.1:${this.smtpPort}`;
    await this.postconf(['-M', `${listen}/inet=${listen} inet n - y - - smtpd`]);
    this.backdateMainCf();
  }

  /** postconf on this sandbox; its stdout. */
  postconf(args: readonly string[]): Promise<string> {
    return mustRun('postconf', ['-c', this.dir, ...args]);
  }

  /** `postconf -n` as a map. */
  async params(): Promise<Map<string, string>> {
    const out = await this.postconf(['-n']);
    const m = new Map<string, string>();
    for (const line of out.split('\n')) {
      const i = line.indexOf(' = ');
      if (i > 0) m.set(line.slice(0, i), line.slice(i + 3));
      else if (line.endsWith(' =')) m.set(line.slice(0, -2), '');
    }
    return m;
  }

  /**
   * Date main.cf 3 s into the past: Postfix pauses ~2 s ("cool-down") before reading a main.cf
   * changed within the last ~2 s, which a hand edit in a test would otherwise cost every time.
   */
  backdateMainCf(): void {
    const t = new Date(Date.now() - 3_000);
    utimesSync(this.mainCf, t, t);
  }

  /** A hand edit, as an operator would make it: `postconf -e name=value`, then backdated. */
  async handEdit(...assignments: string[]): Promise<void> {
    await this.postconf(['-e', ...assignments]);
    this.backdateMainCf();
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

  private started = false;

  async start(): Promise<void> {
    this.started = true;
    const r = await run('postfix', ['-c', this.dir, 'start'], { timeoutMs: 60_000 });
    if (r.code !== 0) throw new Error(`postfix start failed (${r.code}): ${r.stdout}${r.stderr}\nmaillog:\n${await this.maillog()}`);
    await waitFor('the Postfix master to run', async () => ((await run('postfix', ['-c', this.dir, 'status'])).code === 0 ? true : undefined), 20_000).catch(async (err) => {
      throw new Error(`${(err as Error).message}\nmaillog:\n${await this.maillog()}`);
    });
  }

  /** Stop Postfix and wait until its master and every process under the sandbox are gone. */
  async stop(): Promise<void> {
    if (!this.started) return;
    const pid = this.masterPid();
    await run('postfix', ['-c', this.dir, 'stop'], { timeoutMs: 30_000 }).catch(() => undefined);
    if (pid !== undefined) {
      try {
        await waitFor('the Postfix master to exit', () => (alive(pid) ? undefined : true), 15_000);
      } catch {
        // Ours, found by its own pid file: make sure it goes.
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    // The master's children (smtp, qmgr, pickup...) notice it is gone and exit; wait for them.
    try {
      await waitFor('every Postfix process under the sandbox to exit', () => (pidsUnder(this.root).length === 0 ? true : undefined), 15_000);
    } catch {
      for (const p of pidsUnder(this.root)) {
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    this.started = false;
  }

  /** Stop everything and remove the sandbox. Safe to call twice and after a failed start. */
  async close(): Promise<void> {
    try {
      await this.stop();
    } finally {
      await rm(this.root, { recursive: true, force: true, maxRetries: 3 });
    }
  }

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
   * Submit a message over SMTP to the sandbox's smtpd, as a client on 127.0.0.1 would, without
   * logging in. Resolves with every reply line; the caller judges them.
   */
  smtpSubmit(opts: { from?: string; to?: string; id?: string } = {}): Promise<string[]> {
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
  async queue(): Promise<string> {
    return mustRun('postqueue', ['-c', this.dir, '-p']);
  }

  /** Whether the queue is empty. */
  async queueEmpty(): Promise<boolean> {
    return /Mail queue is empty/.test(await this.queue());
  }

  /** `postqueue -f`: ask for immediate delivery of everything queued. */
  async flush(): Promise<void> {
    await mustRun('postqueue', ['-c', this.dir, '-f']);
  }

  /** Every file under the config dir with its bytes and mode, to prove a refusal wrote nothing. */
  async snapshot(): Promise<Map<string, { content: string; mode: number; mtimeMs: number }>> {
    const out = new Map<string, { content: string; mode: number; mtimeMs: number }>();
    const walk = async (dir: string): Promise<void> => {
      for (const e of await readdir(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) await walk(p);
        else {
          const st = await stat(p);
          out.set(path.relative(this.dir, p), { content: (await readFile(p)).toString('base64'), mode: st.mode & 0o7777, mtimeMs: st.mtimeMs });
        }
      }
    };
    await walk(this.dir);
    return out;
  }

  fileMode(rel: string): number | null {
    const p = path.join(this.dir, rel);
    return existsSync(p) ? statSync(p).mode & 0o7777 : null;
  }
}

async function postfixUser(): Promise<{ uid: number; gid: number }> {
  const passwd = await readFile('/etc/passwd', 'utf8');
  const line = passwd.split('\n').find((l) => l.startsWith('postfix:'));
  if (!line) throw new Error('no postfix user: install Debian\'s postfix package');
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/** Whether this machine can run the sandbox at all: root, and Postfix installed. */
export function postfixAvailable(): boolean {
  return process.getuid?.() === 0 && existsSync('/usr/sbin/postfix') && existsSync('/usr/share/postfix/main.cf.debian');
}

/**
 * A scoped daemon on a sandbox root, started as the real binary. Its stderr (JSON lines) is
 * kept for assertions; stop() sends SIGTERM and awaits the exit.
 */
export class ScopedDaemon {
  private stderrText = '';
  private stdoutText = '';
  private exited: Promise<void>;

  private constructor(
    readonly root: string,
    private readonly child: ChildProcess,
  ) {
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (this.stderrText += d));
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (this.stdoutText += d));
  }

  get socket(): string {
    return path.join(this.root, 'run/scoped/scoped.sock');
  }

  /** Everything the daemon wrote to stderr so far. */
  get stderr(): string {
    return this.stderrText;
  }

  get stdout(): string {
    return this.stdoutText;
  }

  /** The stderr log as parsed JSON lines (a line that is not JSON fails the parse loudly). */
  logLines(): Record<string, unknown>[] {
    return this.stderrText
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  /** `args` are more scoped flags, such as `--plugin DIR` or `--config FILE`. */
  static async start(root: string, opts: { args?: readonly string[] } = {}): Promise<ScopedDaemon> {
    const child = spawn(process.execPath, [SCOPED_BIN, '--root', root, '--listen', 'none', '--log-level', 'info', ...(opts.args ?? [])], { stdio: ['ignore', 'pipe', 'pipe'] });
    const d = new ScopedDaemon(root, child);
    let exitCode: number | null = null;
    child.once('exit', (code) => (exitCode = code ?? -1));
    try {
      await waitFor(
        'scoped to listen',
        () => {
          if (exitCode !== null) throw new Error(`scoped exited ${exitCode}: ${d.stderrText}`);
          if (!existsSync(d.socket)) return undefined;
          const lines = d.stderrText.split('\n').slice(0, -1).map((l) => JSON.parse(l) as { msg?: string });
          const at = lines.findIndex((l) => l.msg === 'listening');
          if (at < 0) return undefined;
          // Only a plugin loaded with --plugin or the config may log before "listening".
          const early = lines.slice(0, at).find((l) => l.msg !== 'plugin loaded');
          if (early) throw new Error(`scoped logged before "listening": ${JSON.stringify(early)}`);
          return true;
        },
        30_000,
        50,
      );
    } catch (err) {
      await d.stop();
      throw err;
    }
    return d;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGTERM');
      const killed = setTimeout(() => this.child.kill('SIGKILL'), 15_000);
      await this.exited;
      clearTimeout(killed);
    }
  }

  /** Run the real cpcmd against this daemon. */
  cpcmd(...args: string[]): Promise<RunResult> {
    return run(process.execPath, [CPCMD_BIN, ...args], { env: { ...process.env, SCOPED_SOCKET: this.socket, NO_COLOR: '1' }, timeoutMs: 60_000 });
  }

  /** A raw JSON-RPC call over the unix socket (HTTP POST /rpc); the response body as text. */
  rpcRaw(method: string, params: Record<string, unknown>): Promise<string> {
    const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method, params });
    return new Promise((resolve, reject) => {
      const req = request(
        { socketPath: this.socket, path: '/rpc', method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (text += d));
          res.on('end', () => resolve(text));
        },
      );
      req.once('error', reject);
      req.end(body);
    });
  }
}
