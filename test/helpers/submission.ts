/**
 * What the submission tests need beside the fixture: Debian's Dovecot linked into a sandbox root
 * (scoped runs the root's own ROOT/usr/sbin/dovecot there), a passdb of the test's own, a
 * self-signed certificate for smtpd's STARTTLS, and an SMTP client that speaks STARTTLS and
 * AUTH PLAIN, so a test sees each reply as a mail client would.
 */
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, symlink, writeFile } from 'node:fs/promises';
import { type Socket, connect } from 'node:net';
import path from 'node:path';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { alive, killPids, mustRun, waitFor } from './proc.js';

export const SUBMIT_USER = 'carol';
export const SUBMIT_PASSWORD = 'c4rol-pa55';

/** Link Debian's dovecot into the root (dovecot-core; npm test installs it as root: node scripts/prepare.mjs --test). */
export async function linkDovecot(root: string): Promise<void> {
  const program = '/usr/sbin/dovecot';
  if (!existsSync(program))
    throw new Error(`${program} is missing: install Debian's dovecot-core (npm test installs it as root: node scripts/prepare.mjs --test)`);
  const inRoot = path.join(root, program);
  await mkdir(path.dirname(inRoot), { recursive: true });
  if (!existsSync(inRoot)) await symlink(program, inRoot);
}

/** The admin's part of Dovecot, as a test plays it: a passwd-file passdb with one user. */
export async function writePassdb(root: string, user = SUBMIT_USER, password = SUBMIT_PASSWORD): Promise<void> {
  const dir = path.join(root, 'etc/dovecot');
  await mkdir(path.join(dir, 'conf.d'), { recursive: true, mode: 0o755 });
  const users = path.join(dir, 'test-users');
  await writeFile(users, `${user}:{PLAIN}${password}\n`, { mode: 0o644 });
  await writeFile(
    path.join(dir, 'conf.d/10-test-passdb.conf'),
    [
      'passdb {',
      '  driver = passwd-file',
      `  args = scheme=PLAIN username_format=%u ${users}`,
      '}',
      'userdb {',
      '  driver = static',
      '  args = uid=nobody gid=nogroup home=/nonexistent',
      '}',
      '',
    ].join('\n'),
  );
}

/** A self-signed certificate and key under the root; main.cf points smtpd at them (as Debian's snakeoil would be). */
export async function makeCertificate(root: string): Promise<{ cert: string; key: string }> {
  const dir = path.join(root, 'etc/ssl/submission');
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  await mustRun(
    '/usr/bin/openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=sandbox.test', '-days', '1', '-keyout', key, '-out', cert],
    {
      timeoutMs: 30_000,
    },
  );
  await chmod(key, 0o600);
  return { cert, key };
}

/** The root's Dovecot master, from its pid file, when it runs. */
export function dovecotPid(root: string): number | undefined {
  try {
    const pid = Number(readFileSync(path.join(root, 'run/dovecot/master.pid'), 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 && alive(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Stop the root's Dovecot if it runs (SIGTERM, then SIGKILL after 10 s); its children go with it. */
export async function stopDovecot(root: string): Promise<void> {
  const pid = dovecotPid(root);
  if (pid === undefined) return;
  process.kill(pid, 'SIGTERM');
  await waitFor('Dovecot to exit', () => (alive(pid) ? undefined : true), 10_000).catch(() => killPids([pid]));
}

/** One SMTP reply: its code and every line's text. */
export interface Reply {
  code: number;
  lines: string[];
  /** The whole reply as the server sent it, for failure messages. */
  text: string;
}

/**
 * A line-by-line SMTP client on loopback: each command waits for its reply, so a test asserts
 * every step (what EHLO offers before and after STARTTLS, what AUTH and RCPT answer).
 */
export class SmtpClient implements AsyncDisposable {
  private buffer = '';
  private pending: Reply['lines'] = [];
  private waiting: ((r: Reply) => void) | null = null;
  private failed: Error | null = null;
  private readonly log: string[] = [];

  private constructor(private socket: Socket | TLSSocket) {
    this.listen(socket);
  }

  /** Connect and read the greeting. */
  static async open(port: number): Promise<SmtpClient> {
    const socket = connect({ host: '127.0.0.1', port });
    socket.setTimeout(20_000, () => socket.destroy(new Error('no SMTP reply within 20 s')));
    const client = new SmtpClient(socket);
    const greeting = await client.reply();
    if (greeting.code !== 220) throw new Error(`no 220 greeting: ${greeting.text}`);
    return client;
  }

  /** The dialogue so far, for a failure message. */
  get transcript(): string {
    return this.log.join('\n');
  }

  private listen(socket: Socket | TLSSocket): void {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.buffer += chunk;
      let nl: number;
      while ((nl = this.buffer.indexOf('\n')) >= 0) {
        const line = this.buffer.slice(0, nl).replace(/\r$/, '');
        this.buffer = this.buffer.slice(nl + 1);
        this.log.push(`S: ${line}`);
        this.pending.push(line);
        if (/^\d{3} /.test(line) || /^\d{3}$/.test(line)) {
          const lines = this.pending;
          this.pending = [];
          const reply = { code: Number(line.slice(0, 3)), lines: lines.map((l) => l.slice(4)), text: lines.join('\n') };
          const w = this.waiting;
          this.waiting = null;
          w?.(reply);
        }
      }
    });
    socket.on('error', (err) => {
      this.failed = err;
    });
  }

  private reply(): Promise<Reply> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      const onClose = () => reject(this.failed ?? new Error(`the server closed the connection:\n${this.transcript}`));
      this.socket.once('close', onClose);
      this.waiting = (r) => {
        this.socket.off('close', onClose);
        resolve(r);
      };
    });
  }

  /** Send one command line and read its reply. `shown` replaces the line in the transcript (a secret). */
  async command(line: string, shown = line): Promise<Reply> {
    this.log.push(`C: ${shown}`);
    const r = this.reply();
    this.socket.write(`${line}\r\n`);
    return r;
  }

  /** EHLO; the capabilities offered (uppercase keywords with their arguments). */
  async ehlo(name = 'client.sandbox.test'): Promise<string[]> {
    const r = await this.command(`EHLO ${name}`);
    if (r.code !== 250) throw new Error(`EHLO refused: ${r.text}`);
    return r.lines.slice(1).map((l) => l.toUpperCase());
  }

  /** STARTTLS, then the TLS handshake (any certificate: the test's own is self-signed). */
  async starttls(): Promise<Reply> {
    const r = await this.command('STARTTLS');
    if (r.code !== 220) return r;
    const plain = this.socket as Socket;
    plain.removeAllListeners('data');
    const secure = tlsConnect({ socket: plain, rejectUnauthorized: false, servername: 'sandbox.test' });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', resolve);
      secure.once('error', reject);
    });
    this.socket = secure;
    this.listen(secure);
    return r;
  }

  /** AUTH PLAIN with the credentials in the initial response (kept out of the transcript). */
  authPlain(user: string, password: string): Promise<Reply> {
    const token = Buffer.from(`\0${user}\0${password}`).toString('base64');
    return this.command(`AUTH PLAIN ${token}`, 'AUTH PLAIN [credentials]');
  }

  /** MAIL, RCPT, DATA with a short message carrying `id`; every reply, the last one the DATA's (or the first refusal). */
  async send(opts: { from?: string; to?: string; id: string }): Promise<Reply[]> {
    const from = opts.from ?? 'sender@sandbox.test';
    const to = opts.to ?? 'rcpt@remote.test';
    const replies: Reply[] = [];
    for (const line of [`MAIL FROM:<${from}>`, `RCPT TO:<${to}>`, 'DATA']) {
      const r = await this.command(line);
      replies.push(r);
      if (r.code >= 400) return replies;
    }
    const data = [`From: ${from}`, `To: ${to}`, 'Subject: submission e2e', `Message-ID: ${opts.id}`, '', 'Hello from a mail client.', '.'].join('\r\n');
    replies.push(await this.command(data, '[message]'));
    return replies;
  }

  async close(): Promise<void> {
    if (!this.socket.destroyed) {
      await this.command('QUIT').catch(() => undefined);
      this.socket.destroy();
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
