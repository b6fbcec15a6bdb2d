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

/** How long a whole verification may take (connect, TLS and every reply) unless told otherwise. */
export const VERIFY_DEADLINE_MS = 15_000;

/**
 * The deadline of --verify: SCOPED_VERIFY_DEADLINE_MS in the daemon's environment (1 to 120
 * seconds; the tests shorten it), otherwise VERIFY_DEADLINE_MS.
 */
export function verifyDeadlineMs(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.SCOPED_VERIFY_DEADLINE_MS;
  const ms = raw && /^\d+$/.test(raw) ? Number(raw) : NaN;
  return ms >= 1_000 && ms <= 120_000 ? ms : VERIFY_DEADLINE_MS;
}

/** The most of a relay's text that reaches an error: RFC 5321 allows 512 octets a line, a message needs far less. */
export const RELAY_TEXT_MAX = 200;

/** A reply line is cut here while it is read, so a relay cannot fill memory with one endless line. */
const LINE_MAX = 1_024;
/** Lines kept of one multi-line reply (EHLO lists a dozen); the rest are dropped while read. */
const REPLY_LINES_MAX = 64;

/**
 * Terminal escape sequences, in their 7-bit (ESC …) and 8-bit (C1) forms: CSI (cursor moves,
 * colours), OSC, DCS, SOS, PM and APC strings (window titles, clipboard writes; ended by BEL,
 * ST or the end of the text), and the two-character escapes (ESC c resets the terminal).
 */
const ESCAPES = new RegExp(
  [
    '(?:\\x1b\\[|\\x9b)[\\x30-\\x3f]*[\\x20-\\x2f]*[\\x40-\\x7e]?',
    '(?:\\x1b[\\]PX^_]|[\\x90\\x98\\x9d\\x9e\\x9f])[^\\x07\\x1b\\x9c]*(?:\\x07|\\x1b\\\\|\\x9c)?',
    '\\x1b[\\x20-\\x2f]*[\\x30-\\x7e]?',
  ].join('|'),
  'g',
);

/**
 * Relay text as it may be shown to a person or stored in the audit: escape sequences and
 * control characters removed, every other character outside printable ASCII replaced by
 * `?`, whitespace runs made one
 * space, clipped to `max` characters (with `...`). A hostile relay's text then cannot move a
 * terminal's cursor, set its title or clipboard, or flood a log.
 */
export function sanitizeRelayText(text: string, max = RELAY_TEXT_MAX): string {
  const clean = text
    .replace(ESCAPES, '')
    .replace(/[\t\n\r\v\f]+/g, ' ')
    .replace(/[\x00-\x1f\x7f-\x9f]/g, '')
    .replace(/[^\x20-\x7e]/g, '?')
    .replace(/ {2,}/g, ' ')
    .trim();
  return clean.length > max ? `${clean.slice(0, max - 3)}...` : clean;
}

/**
 * One SMTP reply as it may be shown: its three-digit code and the sanitized text of its last
 * line (the one that carries the verdict), never the raw multi-line reply.
 */
export function describeReply(reply: string, max = RELAY_TEXT_MAX): string {
  const lastLine = reply.split('\n').at(-1) ?? '';
  const m = /^(\d{3})[ -]?(.*)$/s.exec(lastLine);
  if (!m) return `(not an SMTP reply) ${sanitizeRelayText(lastLine, max)}`.trimEnd();
  const text = sanitizeRelayText(m[2]!, max);
  return text ? `${m[1]} ${text}` : m[1]!;
}

/**
 * Every form in which our login could come back in a relay's text: the password as it is and
 * as sanitizing would show it, base64 of it (AUTH LOGIN) and of the AUTH PLAIN response.
 */
function credentialForms(sh: SmartHost): string[] {
  if (!sh.password) return [];
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  const plain = b64(`\0${sh.username}\0${sh.password}`);
  return [sh.password, sanitizeRelayText(sh.password, Infinity), b64(sh.password), plain, plain.replace(/=+$/, '')].filter((f) => f.length > 0);
}

/** Thrown for anything that ends a verification; its message is safe to show and to audit. */
class VerifyError extends Error {}

/**
 * Reads SMTP replies (multi-line aware) from a socket. Once the connection ends or fails,
 * every pending and later read rejects with the reason, so nothing waits forever.
 */
class Replies {
  private buffer = '';
  /** The first LINE_MAX characters of a line still arriving, once it grew past them. */
  private cut: string | undefined;
  private waiters: { resolve: (reply: string) => void; reject: (err: Error) => void }[] = [];
  private lines: string[] = [];
  private ended: Error | undefined;
  private socket!: Socket | TLSSocket;

  constructor(socket: Socket | TLSSocket) {
    this.attach(socket);
  }

  attach(socket: Socket | TLSSocket): void {
    this.socket = socket;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.take(chunk));
  }

  /** Split a chunk into lines; a line is cut at LINE_MAX (the rest is dropped as it arrives), a reply at REPLY_LINES_MAX lines. */
  private take(chunk: string): void {
    this.buffer += chunk;
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.cut ?? this.buffer.slice(0, nl).replace(/\r$/, '').slice(0, LINE_MAX);
      this.buffer = this.buffer.slice(nl + 1);
      this.cut = undefined;
      this.line(line);
    }
    if (this.buffer.length > LINE_MAX) {
      this.cut ??= this.buffer.slice(0, LINE_MAX);
      this.buffer = '';
    }
  }

  /** One line: a continuation (`250-…`) is kept; a final line (`250 …`) completes a reply. */
  private line(line: string): void {
    if (!/^\d{3}(?: |$)/.test(line)) {
      if (this.lines.length < REPLY_LINES_MAX) this.lines.push(line);
      return;
    }
    const reply = [...this.lines, line].join('\n');
    this.lines = [];
    this.waiters.shift()?.resolve(reply);
  }

  /** End every pending and later read with this reason. */
  end(err: Error): void {
    this.ended ??= err;
    for (const w of this.waiters.splice(0)) w.reject(this.ended);
  }

  next(): Promise<string> {
    if (this.ended) return Promise.reject(this.ended);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  async command(line: string): Promise<string> {
    const reply = this.next();
    this.socket.write(`${line}\r\n`);
    return reply;
  }
}

const code = (reply: string) => Number(reply.slice(0, 3));

/**
 * Connect to a relay as Postfix would and log in: greeting, EHLO, STARTTLS when offered or
 * required, EHLO again, AUTH. Rejects with the relay's answer (its code and sanitized text)
 * when anything fails. One deadline covers the whole exchange, and the promise settles
 * whatever the relay does: refuse, close at any point, or say nothing at all.
 */
export async function verifyRelay(sh: SmartHost, opts: { tlsLevel: string; timeoutMs?: number }): Promise<void> {
  const { host, port } = relayAddress(sh.host);
  const where = `${host}:${port}`;
  const timeoutMs = opts.timeoutMs ?? VERIFY_DEADLINE_MS;
  const secrets = credentialForms(sh);
  /** A relay's reply as shown; withheld when it repeats our login back. */
  const said = (reply: string) => {
    const shown = describeReply(reply);
    return secrets.some((s) => shown.includes(s) || reply.includes(s)) ? `${shown.slice(0, 3)} (text withheld: it repeats the credentials)` : shown;
  };
  /** A socket or TLS error, whose text may carry the relay's certificate names. */
  const cause = (err: Error) => sanitizeRelayText(err.message);

  const plain = connect({ host, port });
  let tls: TLSSocket | undefined;
  const replies = new Replies(plain);
  /** What we wait for, named in the errors. */
  let stage = 'the connection';
  let timer: NodeJS.Timeout | undefined;

  const ended = new Promise<never>((_, reject) => {
    const stop = (err: Error) => {
      replies.end(err);
      reject(err);
    };
    timer = setTimeout(() => stop(new VerifyError(`no answer from ${where} within ${timeoutMs / 1000} s (waiting for ${stage})`)), timeoutMs);
    // `on`, not `once`: a second error (the TLS layer forwards its own) must not go unhandled.
    plain.on('error', (err) => stop(new VerifyError(stage === 'the connection' ? `cannot reach ${where}: ${cause(err)}` : `the connection to ${where} failed before ${stage}: ${cause(err)}`)));
    plain.once('close', () => stop(new VerifyError(`${where} closed the connection before ${stage}`)));
  });
  ended.catch(() => undefined);

  const talk = async () => {
    plain.once('connect', () => (stage = 'its greeting'));
    const greeting = await replies.next();
    if (code(greeting) !== 220) throw new VerifyError(`the relay greeted with: ${said(greeting)}`);
    stage = 'the reply to EHLO';
    let ehlo = await replies.command('EHLO scoped-verify.invalid');
    if (code(ehlo) !== 250) throw new VerifyError(`EHLO refused: ${said(ehlo)}`);
    const mustEncrypt = !['none', 'may'].includes(opts.tlsLevel);
    if (/^250[- ]STARTTLS/im.test(ehlo) && opts.tlsLevel !== 'none') {
      stage = 'the reply to STARTTLS';
      const r = await replies.command('STARTTLS');
      if (code(r) !== 220) throw new VerifyError(`STARTTLS refused: ${said(r)}`);
      plain.removeAllListeners('data');
      stage = 'the TLS handshake';
      tls = await new Promise<TLSSocket>((resolve, reject) => {
        const t = tlsConnect({ socket: plain, servername: /^[\d.:]+$/.test(host) ? undefined : host, rejectUnauthorized: ['verify', 'secure'].includes(opts.tlsLevel) } as never, () => resolve(t));
        t.on('error', (err) => reject(new VerifyError(`TLS handshake with ${where} failed: ${cause(err)}`)));
      });
      replies.attach(tls);
      stage = 'the reply to EHLO after STARTTLS';
      ehlo = await replies.command('EHLO scoped-verify.invalid');
      if (code(ehlo) !== 250) throw new VerifyError(`EHLO after STARTTLS refused: ${said(ehlo)}`);
    } else if (mustEncrypt) {
      throw new VerifyError(`the relay does not offer STARTTLS, and TLS level ${opts.tlsLevel} requires it`);
    }
    if (sh.username) {
      const mechs = /^250[- ]AUTH[ =](.*)$/im.exec(ehlo)?.[1]?.toUpperCase().split(/\s+/) ?? [];
      if (!mechs.length) throw new VerifyError('the relay offers no AUTH; drop USER PASS or pick another relay');
      stage = 'the reply to AUTH';
      let r: string;
      if (mechs.includes('PLAIN')) {
        r = await replies.command(`AUTH PLAIN ${Buffer.from(`\0${sh.username}\0${sh.password}`).toString('base64')}`);
      } else if (mechs.includes('LOGIN')) {
        r = await replies.command('AUTH LOGIN');
        if (code(r) === 334) r = await replies.command(Buffer.from(sh.username).toString('base64'));
        if (code(r) === 334) r = await replies.command(Buffer.from(sh.password).toString('base64'));
      } else throw new VerifyError(`the relay offers AUTH ${sanitizeRelayText(mechs.join(' '))}, but neither PLAIN nor LOGIN`);
      if (code(r) !== 235) throw new VerifyError(`login as ${sh.username} refused: ${said(r)}`);
    }
    // Logged in: say goodbye without waiting for the relay to answer it.
    (tls ?? plain).end('QUIT\r\n');
  };

  try {
    await Promise.race([talk(), ended]);
  } catch (err) {
    // Anything else (a bug, a throw from node) still must not carry raw relay text.
    throw err instanceof VerifyError ? err : new VerifyError(`verifying ${where} failed: ${sanitizeRelayText((err as Error).message)}`);
  } finally {
    clearTimeout(timer);
    replies.end(new VerifyError('the verification is over'));
    tls?.destroy();
    plain.destroy();
  }
}
