import { Resolver } from 'node:dns/promises';
import type { MxRecord } from 'node:dns';
import { connect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import type { SmartHost } from './vars.js';
import { isOwnName } from './relay.js';

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

/** The DNS queries --verify makes; node's Resolver by default, or one pointed at other servers (the tests' own). */
export type DnsResolver = Pick<Resolver, 'resolveMx' | 'resolve4' | 'resolve6' | 'cancel'>;

/** One address to try, and the name it was found under (the TLS server name; none for a literal address). */
interface Target {
  address: string;
  servername?: string;
}

/** DNS answers that mean "no such record" (NODATA) or "no such name" (NXDOMAIN), as opposed to a lookup that failed. */
const NOT_FOUND = new Set(['ENODATA', 'ENOTFOUND']);

const dnsCode = (err: unknown) => String((err as { code?: unknown }).code ?? '');

/** A lookup that failed (no DNS server answered, SERVFAIL, ...), not an answer that the name has no records. */
function dnsFailure(name: string, err: unknown): VerifyError {
  return new VerifyError(
    `the DNS lookup of ${name} failed (${sanitizeRelayText(dnsCode(err) || (err as Error).message)}); check the DNS servers in /etc/resolv.conf, or give the relay's address in brackets, such as [192.0.2.1]:587`,
  );
}

/** Loopback and unspecified addresses: what a resolver that serves /etc/hosts (or synthesizes local names) answers for local names. */
function isLoopback(address: string): boolean {
  const a = address.toLowerCase();
  return /^127\./.test(a) || a === '0.0.0.0' || a === '::1' || a === '::' || /^::ffff:(127\.|0\.0\.0\.0$)/.test(a);
}

/**
 * Refuses a relay name that is this machine's own hostname or its first label: net.hostname
 * (an operator's scope) writes both into /etc/hosts as 127.0.1.1, and a resolver that serves
 * /etc/hosts (systemd-resolved, dnsmasq) or synthesizes the local hostname would send the login
 * to this machine, where any local user may listen on a high port. A relay of that name is a
 * mail loop at best.
 */
function refuseOwnName(name: string, hostname: string | undefined): void {
  if (isOwnName(name, hostname)) {
    throw new VerifyError(
      `${name} is this machine's own hostname (net.hostname), which /etc/hosts maps to this machine: the login would go to whoever listens here, ` +
        `and Postfix would loop its mail back to itself. Give the relay's own name, or its address in brackets, such as [192.0.2.1]:587`,
    );
  }
}

/**
 * A name's addresses through DNS only (A, then AAAA records), as Postfix looks them up with
 * smtp_host_lookup = dns: never /etc/hosts, never getaddrinfo. A name DNS gives a loopback
 * address is refused: that answer comes from a local resolver serving /etc/hosts, which is
 * where an operator can put names.
 */
async function addressesOf(name: string, resolver: DnsResolver, hostname: string | undefined): Promise<Target[]> {
  refuseOwnName(name, hostname);
  const answers = await Promise.allSettled([resolver.resolve4(name), resolver.resolve6(name)]);
  const found = answers.flatMap((a) => (a.status === 'fulfilled' ? a.value : []));
  const failed = answers.flatMap((a) => (a.status === 'rejected' ? [a.reason as unknown] : []));
  if (!found.length) {
    const broken = failed.find((e) => !NOT_FOUND.has(dnsCode(e)));
    if (broken) throw dnsFailure(name, broken);
    throw new VerifyError(
      `DNS has no address (A or AAAA record) for ${name}, so Postfix would not find it either (it looks relays up in DNS, not in /etc/hosts); ` +
        `give the relay's name as DNS knows it, or its address in brackets, such as [192.0.2.1]:587`,
    );
  }
  const local = found.find(isLoopback);
  if (local) {
    throw new VerifyError(
      `DNS gives ${name} the loopback address ${local}, an answer that comes from /etc/hosts or a local name, not from the relay's domain; ` +
        `for a relay on this machine give its address in brackets, such as [127.0.0.1]:10025`,
    );
  }
  return found.map((address) => ({ address, servername: name }));
}

/**
 * Where Postfix would connect for this relayhost, looked up the way it does by default
 * (smtp_host_lookup = dns): an address in brackets as it is; a bracketed name by its A and
 * AAAA records; a bare name by its MX records in order of preference, or by its own A and
 * AAAA records when it has no MX (Postfix's fallback).
 */
export async function relayTargets(relayhost: string, resolver: DnsResolver, hostname?: string): Promise<Target[]> {
  const { host } = relayAddress(relayhost);
  if (isIP(host)) return [{ address: host }];
  if (relayhost.startsWith('[')) return addressesOf(host, resolver, hostname);
  refuseOwnName(host, hostname);
  let mx: MxRecord[];
  try {
    mx = await resolver.resolveMx(host);
  } catch (err) {
    if (!NOT_FOUND.has(dnsCode(err))) throw dnsFailure(host, err);
    return addressesOf(host, resolver, hostname);
  }
  const exchanges = mx.filter((r) => r.exchange !== '' && r.exchange !== '.').sort((a, b) => a.priority - b.priority);
  if (!exchanges.length)
    throw new VerifyError(
      `${host} publishes a null MX: it takes no mail, so Postfix cannot relay through it; give the relay's own name in brackets, such as [smtp.example.com]:587`,
    );
  const targets: Target[] = [];
  let problem: unknown;
  for (const { exchange } of exchanges) {
    try {
      targets.push(...(await addressesOf(exchange, resolver, hostname)));
    } catch (err) {
      problem ??= err;
    }
  }
  if (!targets.length) throw problem;
  return targets;
}

/**
 * The first target that accepts a TCP connection, tried in order (as Postfix walks its list),
 * before `deadline` (a Date.now() time). Connects to the address itself, so nothing but the
 * DNS answer above decides where the login goes.
 */
async function openConnection(
  targets: readonly Target[],
  port: number,
  where: string,
  deadline: number,
  timeoutMs: number,
): Promise<{ socket: Socket; target: Target }> {
  const failures: string[] = [];
  for (const target of targets) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    const socket = connect({ host: target.address, port });
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new VerifyError(`no answer from ${where} within ${timeoutMs / 1000} s (waiting for the connection)`)), left);
        socket.once('connect', () => (clearTimeout(timer), resolve()));
        socket.on('error', (err) => (clearTimeout(timer), reject(err)));
      });
      return { socket, target };
    } catch (err) {
      socket.destroy();
      if (err instanceof VerifyError) throw err;
      const why = sanitizeRelayText((err as Error).message);
      failures.push(target.servername ? `${target.address}: ${why}` : why);
    }
  }
  if (!failures.length) throw new VerifyError(`no answer from ${where} within ${timeoutMs / 1000} s (waiting for the connection)`);
  throw new VerifyError(`cannot reach ${where}: ${failures.join('; ')}`);
}

/** What verifyRelay needs besides the smart host. */
export interface VerifyOptions {
  tlsLevel: string;
  timeoutMs?: number;
  /** This machine's hostname (net.hostname's var): a relay of that name is refused. */
  hostname?: string;
  /** The DNS resolver; by default node's, which asks the servers in /etc/resolv.conf and never reads /etc/hosts. */
  resolver?: DnsResolver;
}

/**
 * Connect to a relay as Postfix would and log in: look it up in DNS only, then greeting,
 * EHLO, STARTTLS when offered or required, EHLO again, AUTH. Rejects with the relay's answer
 * (its code and sanitized text) when anything fails. One deadline covers the whole exchange,
 * lookups included, and the promise settles whatever the relay does: refuse, close at any
 * point, or say nothing at all.
 */
export async function verifyRelay(sh: SmartHost, opts: VerifyOptions): Promise<void> {
  const { host, port } = relayAddress(sh.host);
  const where = `${host}:${port}`;
  const timeoutMs = opts.timeoutMs ?? VERIFY_DEADLINE_MS;
  const deadline = Date.now() + timeoutMs;
  const secrets = credentialForms(sh);
  /** A relay's reply as shown; withheld when it repeats our login back. */
  const said = (reply: string) => {
    const shown = describeReply(reply);
    return secrets.some((s) => shown.includes(s) || reply.includes(s)) ? `${shown.slice(0, 3)} (text withheld: it repeats the credentials)` : shown;
  };
  /** A socket or TLS error, whose text may carry the relay's certificate names. */
  const cause = (err: Error) => sanitizeRelayText(err.message);

  const resolver = opts.resolver ?? new Resolver({ timeout: Math.min(timeoutMs, 5_000), tries: 2 });
  let lookupTimer: NodeJS.Timeout | undefined;
  let opened: { socket: Socket; target: Target };
  try {
    const lookupOver = new Promise<never>((_, reject) => {
      lookupTimer = setTimeout(() => {
        resolver.cancel();
        reject(new VerifyError(`no answer from DNS for ${host} within ${timeoutMs / 1000} s`));
      }, timeoutMs);
    });
    const targets = await Promise.race([relayTargets(sh.host, resolver, opts.hostname), lookupOver]);
    clearTimeout(lookupTimer);
    opened = await openConnection(targets, port, where, deadline, timeoutMs);
  } catch (err) {
    throw err instanceof VerifyError ? err : new VerifyError(`verifying ${where} failed: ${sanitizeRelayText((err as Error).message)}`);
  } finally {
    clearTimeout(lookupTimer);
  }
  const plain = opened.socket;
  const servername = opened.target.servername;
  let tls: TLSSocket | undefined;
  const replies = new Replies(plain);
  /** What we wait for, named in the errors. */
  let stage = 'its greeting';
  let timer: NodeJS.Timeout | undefined;

  const ended = new Promise<never>((_, reject) => {
    const stop = (err: Error) => {
      replies.end(err);
      reject(err);
    };
    timer = setTimeout(
      () => stop(new VerifyError(`no answer from ${where} within ${timeoutMs / 1000} s (waiting for ${stage})`)),
      Math.max(0, deadline - Date.now()),
    );
    // `on`, not `once`: a second error (the TLS layer forwards its own) must not go unhandled.
    plain.on('error', (err) => stop(new VerifyError(`the connection to ${where} failed before ${stage}: ${cause(err)}`)));
    plain.once('close', () => stop(new VerifyError(`${where} closed the connection before ${stage}`)));
  });
  ended.catch(() => undefined);

  const talk = async () => {
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
        const t = tlsConnect({ socket: plain, servername, rejectUnauthorized: ['verify', 'secure'].includes(opts.tlsLevel) } as never, () => resolve(t));
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
