import { connect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import type { SmartHost } from './vars.js';

/** Where a relayhost value points: brackets and the optional port removed (Postfix's default port is 25). */
export function relayAddress(host: string): { host: string; port: number } {
  const m = /^(\[[^\]]*\]|[^[\]:]+)(?::(\d+))?$/.exec(host);
  const target = m?.[1] ?? host;
  const inner = target.startsWith('[') ? target.slice(1, -1) : target;
  return { host: inner.replace(/^ipv6:/i, ''), port: m?.[2] ? Number(m[2]) : 25 };
}

/** Reads SMTP replies (multi-line aware) from a socket. */
class Replies {
  private buffer = '';
  private waiters: ((reply: string) => void)[] = [];
  private lines: string[] = [];

  constructor(private socket: Socket | TLSSocket) {
    this.attach(socket);
  }

  attach(socket: Socket | TLSSocket): void {
    this.socket = socket;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.buffer += chunk;
      let nl: number;
      while ((nl = this.buffer.indexOf('\n')) >= 0) {
        const line = this.buffer.slice(0, nl).replace(/\r$/, '');
        this.buffer = this.buffer.slice(nl + 1);
        this.lines.push(line);
        if (/^\d{3} /.test(line) || /^\d{3}$/.test(line)) {
          const reply = this.lines.join('\n');
          this.lines = [];
          this.waiters.shift()?.(reply);
        }
      }
    });
  }

  next(): Promise<string> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  async command(line: string): Promise<string> {
    const reply = this.next();
    this.socket.write(`${line}\r\n`);
    return reply;
  }
}

const code = (reply: string) => Number(reply.slice(0, 3));
const last = (reply: string) => reply.split('\n').at(-1) ?? reply;

/**
 * Connect to a relay as Postfix would and log in: greeting, EHLO, STARTTLS when offered or
 * required, EHLO again, AUTH. Rejects with the relay's own answer when anything fails.
 */
export async function verifyRelay(sh: SmartHost, opts: { tlsLevel: string; timeoutMs?: number }): Promise<void> {
  const { host, port } = relayAddress(sh.host);
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const plain = connect({ host, port });
  let socket: Socket | TLSSocket = plain;
  const timer = setTimeout(() => socket.destroy(new Error(`no answer from ${host}:${port} within ${timeoutMs / 1000} s`)), timeoutMs);
  const failed = new Promise<never>((_, reject) => {
    plain.once('error', (err) => reject(new Error(`cannot reach ${host}:${port}: ${err.message}`)));
  });
  const talk = async () => {
    const replies = new Replies(plain);
    const greeting = await replies.next();
    if (code(greeting) !== 220) throw new Error(`the relay greeted with: ${last(greeting)}`);
    let ehlo = await replies.command('EHLO scoped-verify.invalid');
    if (code(ehlo) !== 250) throw new Error(`EHLO refused: ${last(ehlo)}`);
    const mustEncrypt = !['none', 'may'].includes(opts.tlsLevel);
    if (/^250[- ]STARTTLS/im.test(ehlo) && opts.tlsLevel !== 'none') {
      const r = await replies.command('STARTTLS');
      if (code(r) !== 220) throw new Error(`STARTTLS refused: ${last(r)}`);
      plain.removeAllListeners('data');
      socket = await new Promise<TLSSocket>((resolve, reject) => {
        const t = tlsConnect({ socket: plain, servername: /^[\d.:]+$/.test(host) ? undefined : host, rejectUnauthorized: ['verify', 'secure'].includes(opts.tlsLevel) } as never, () => resolve(t));
        t.once('error', (err) => reject(new Error(`TLS handshake with ${host}:${port} failed: ${err.message}`)));
      });
      replies.attach(socket);
      ehlo = await replies.command('EHLO scoped-verify.invalid');
      if (code(ehlo) !== 250) throw new Error(`EHLO after STARTTLS refused: ${last(ehlo)}`);
    } else if (mustEncrypt) {
      throw new Error(`the relay does not offer STARTTLS, and TLS level ${opts.tlsLevel} requires it`);
    }
    if (sh.username) {
      const mechs = /^250[- ]AUTH[ =](.*)$/im.exec(ehlo)?.[1]?.toUpperCase().split(/\s+/) ?? [];
      if (!mechs.length) throw new Error('the relay offers no AUTH; drop USER PASS or pick another relay');
      let r: string;
      if (mechs.includes('PLAIN')) {
        r = await replies.command(`AUTH PLAIN ${Buffer.from(`\0${sh.username}\0${sh.password}`).toString('base64')}`);
      } else if (mechs.includes('LOGIN')) {
        r = await replies.command('AUTH LOGIN');
        if (code(r) === 334) r = await replies.command(Buffer.from(sh.username).toString('base64'));
        if (code(r) === 334) r = await replies.command(Buffer.from(sh.password).toString('base64'));
      } else throw new Error(`the relay offers AUTH ${mechs.join(' ')}, but neither PLAIN nor LOGIN`);
      if (code(r) !== 235) throw new Error(`login as ${sh.username} refused: ${last(r)}`);
    }
    await replies.command('QUIT').catch(() => undefined);
  };
  try {
    await Promise.race([talk(), failed]);
  } finally {
    clearTimeout(timer);
    socket.destroy();
    plain.destroy();
  }
}
