/**
 * The DNS the deliverability report reads: node's resolver, asking the servers of
 * mail_dns_servers (the system's, from /etc/resolv.conf, when it is empty), never /etc/hosts,
 * so the report sees what the world sees. Every lookup of one report shares one deadline.
 */
import { promises as dns } from 'node:dns';
import net from 'node:net';

/** What a lookup found: the records, or that the name has none of that type (or does not exist). */
export type Answer<T> = { records: T[] } | { missing: 'no-data' | 'no-name' };

/** The DNS could not answer (a timeout, a refusal, a server failure): nothing can be said of the record. */
export class DnsFailure extends Error {
  constructor(
    readonly query: string,
    readonly code: string,
  ) {
    super(`the DNS lookup of ${query} failed (${code})`);
  }
}

/** The report's view of the DNS. */
export interface Dns {
  /** The servers asked, as given (empty: the system's). */
  readonly servers: readonly string[];
  /** Records of a type: TXT as their joined character-strings, PTR and CNAME as names, A/AAAA as addresses, MX as exchanges. */
  txt(name: string): Promise<Answer<string>>;
  addresses(name: string): Promise<Answer<string>>;
  ptr(address: string): Promise<Answer<string>>;
  /** For mailauth: its resolver(name, type), answering as node's resolver.resolve does. */
  readonly raw: (name: string, type: string) => Promise<unknown>;
  /** Cancel what is still pending and stop the deadline. */
  close(): void;
}

/** The name a PTR lookup asks: 4.3.2.1.in-addr.arpa, or the nibbles of an IPv6 address under ip6.arpa. */
export function reverseName(address: string): string {
  if (net.isIPv4(address)) return `${address.split('.').reverse().join('.')}.in-addr.arpa`;
  const halves = address.split('::');
  const groups = (s: string | undefined) => (s ? s.split(':') : []);
  const head = groups(halves[0]);
  const tail = groups(halves[1]);
  const full = [...head, ...Array<string>(8 - head.length - tail.length).fill('0'), ...tail];
  const nibbles = full.map((g) => g.padStart(4, '0')).join('');
  return `${[...nibbles].reverse().join('.')}.ip6.arpa`;
}

const MISSING = new Set(['ENODATA', 'ENOTFOUND']);

/**
 * A resolver asking `servers` (IP or IP:port, [IPv6]:port), each query at most 3 s and twice,
 * every query cancelled once `deadlineMs` has passed.
 */
export function openDns(servers: readonly string[], deadlineMs: number): Dns {
  const resolver = new dns.Resolver({ timeout: 3_000, tries: 2 });
  if (servers.length) resolver.setServers([...servers]);
  // Past the deadline (or once closed) no new lookup starts either: cancelling only what is pending would let the
  // lookups that follow (each SPF evaluation's) run on, past the scope's own limit, which takes the mail plugin out of service.
  let expired = false;
  const expire = () => {
    expired = true;
    resolver.cancel();
  };
  const timer = setTimeout(expire, deadlineMs);
  timer.unref();
  const raw = (name: string, type: string): Promise<unknown> =>
    expired
      ? Promise.reject(Object.assign(new Error(`${type} ${name}: the report's DNS deadline has passed`), { code: 'ECANCELLED' }))
      : resolver.resolve(name, type as 'TXT');
  async function ask<T>(name: string, type: string, shape: (r: unknown[]) => T[]): Promise<Answer<T>> {
    try {
      return { records: shape((await raw(name, type)) as unknown[]) };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'EUNKNOWN';
      if (MISSING.has(code)) return { missing: code === 'ENOTFOUND' ? 'no-name' : 'no-data' };
      throw new DnsFailure(`${type} ${name}`, code === 'ECANCELLED' ? 'no answer in time' : code);
    }
  }
  const strings = (r: unknown[]) => r.map((chunks) => (chunks as string[]).join(''));
  const names = (r: unknown[]) => r.map((n) => String(n).toLowerCase().replace(/\.$/, ''));
  return {
    servers,
    raw,
    txt: (name) => ask(name, 'TXT', strings),
    ptr: (address) => ask(reverseName(address), 'PTR', names),
    async addresses(name) {
      const [a, aaaa] = await Promise.all([ask(name, 'A', names), ask(name, 'AAAA', names)]);
      const records = [...('records' in a ? a.records : []), ...('records' in aaaa ? aaaa.records : [])];
      if (records.length) return { records };
      return { missing: 'missing' in a && a.missing === 'no-name' ? 'no-name' : 'no-data' };
    },
    close() {
      clearTimeout(timer);
      expire();
    },
  };
}

/** An entry of mail_dns_servers: an IP address, optionally with a port (IPv6 then in brackets). */
export function dnsServerProblem(entry: string): string | undefined {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(entry) ?? /^([^:]+):(\d{1,5})$/.exec(entry);
  const [address, port] = m ? [m[1]!, Number(m[2])] : [entry, 53];
  if (!net.isIP(address)) return `${entry} is not a DNS server: give an IP address, such as 192.0.2.53, 127.0.0.1:5353 or [2001:db8::53]:53`;
  if (port < 1 || port > 65535) return `${entry}: the port is 1-65535`;
  return undefined;
}
