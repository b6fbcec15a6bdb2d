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
import { existsSync, statSync } from 'node:fs';
import { readFile, readdir, rm, stat } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PostfixBase } from './postfix-base.js';
import { type RunResult, ScopedProcess, cpcmd, freePort, httpPost, makeTempDir, mustRun, waitFor } from './proc.js';

export { REPO, type RunResult, mustRun, run, waitFor } from './proc.js';

/**
 * A private Postfix: its config dir, queue, data dir and log all live under one temporary
 * root, and its only listener is a smtpd on a free loopback port. `root` is the same root the
 * scoped daemon manages, so `${root}/etc/postfix` is the config dir both work on.
 */
export class PostfixSandbox extends PostfixBase {
  private constructor(
    root: string,
    /** The port of the sandbox's own smtpd on 127.0.0.1. */
    readonly smtpPort: number,
  ) {
    super(root);
  }

  /** Lay out a sandbox and its config; Postfix is not started yet. */
  static async create(): Promise<PostfixSandbox> {
    // The postfix user must traverse every directory above the sandbox; a private TMPDIR (0700) would fail obscurely.
    for (let d = tmpdir(); ; d = path.dirname(d)) {
      if ((statSync(d).mode & 0o001) === 0) throw new Error(`${d} is not traversable by others (mode ${(statSync(d).mode & 0o777).toString(8)}); the postfix user could not reach a sandbox under it: point TMPDIR elsewhere`);
      if (d === path.dirname(d)) break;
    }
    // mkdtemp makes 0700; the postfix user must be able to traverse it.
    const root = await makeTempDir('scoped-mail-e2e-', 0o755);
    try {
      const port = await freePort();
      const box = new PostfixSandbox(root, port);
      const listen = `127.0.0.1:${port}`;
      await box.layout({
        mynetworks: '127.0.0.0/8',
        // A deferred message is retried on flush, never behind a long backoff.
        params: ['minimal_backoff_time=1s', 'maximal_backoff_time=2s', 'queue_run_delay=1s'],
        services: [`${listen}/inet=${listen} inet n - y - - smtpd`],
      });
      return box;
    } catch (err) {
      await rm(root, { recursive: true, force: true });
      throw err;
    }
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

  /** A hand edit, as an operator would make it: `postconf -e name=value`, then backdated. */
  async handEdit(...assignments: string[]): Promise<void> {
    await this.postconf(['-e', ...assignments]);
    this.backdateMainCf();
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

/**
 * A scoped daemon on a sandbox root, started as the real binary. Its stderr (JSON lines) is
 * kept for assertions; stop() sends SIGTERM and awaits the exit.
 */
export class ScopedDaemon {
  private constructor(private readonly proc: ScopedProcess) {}

  get root(): string {
    return this.proc.root;
  }

  get socket(): string {
    return path.join(this.root, 'run/scoped/scoped.sock');
  }

  /** Everything the daemon wrote to stderr so far. */
  get stderr(): string {
    return this.proc.stderr();
  }

  get stdout(): string {
    return this.proc.stdout();
  }

  /** The stderr log as parsed JSON lines (a line that is not JSON fails the parse loudly). */
  logLines(): Record<string, unknown>[] {
    return this.stderr
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  /** `args` are more scoped flags, such as `--plugin DIR` or `--config FILE`. No TCP listener. */
  static async start(root: string, opts: { args?: readonly string[] } = {}): Promise<ScopedDaemon> {
    const d = new ScopedDaemon(await ScopedProcess.spawn(root, { listen: 'none', ...(opts.args ? { args: opts.args } : {}) }));
    try {
      await d.proc.ready(30_000);
      await waitFor('the scoped socket', () => (existsSync(d.socket) ? true : undefined), 5_000);
      const lines = d.stderr.split('\n').slice(0, -1).map((l) => JSON.parse(l) as { msg?: string });
      // Only a plugin loaded with --plugin or the config may log before "listening".
      const early = lines.slice(0, lines.findIndex((l) => l.msg === 'listening')).find((l) => l.msg !== 'plugin loaded');
      if (early) throw new Error(`scoped logged before "listening": ${JSON.stringify(early)}`);
    } catch (err) {
      await d.stop();
      throw err;
    }
    return d;
  }

  async stop(): Promise<void> {
    await this.proc.stop(15_000);
  }

  /** Run the real cpcmd against this daemon. */
  cpcmd(...args: string[]): Promise<RunResult> {
    return cpcmd(args, { socket: this.socket });
  }

  /** A raw JSON-RPC call over the unix socket (HTTP POST /rpc); the response body as text. */
  async rpcRaw(method: string, params: Record<string, unknown>): Promise<string> {
    return (await httpPost({ socket: this.socket }, JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }))).text;
  }
}
