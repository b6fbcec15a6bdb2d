/// <reference path="./mailauth.d.ts" />
/**
 * The delivery requirements of the reference docs, each checked against the DNS as a receiver
 * sees it: FCrDNS, SPF, DKIM and DMARC. SPF is evaluated, and its lookups counted, by mailauth
 * (RFC 7208); DKIM records are fetched and checked by mailauth; DMARC records are found
 * (the domain's, else its organisational domain's) and split into tags by mailauth.
 */
import getDmarcRecord from 'mailauth/lib/dmarc/get-dmarc-record.js';
import { spf } from 'mailauth/lib/spf/index.js';
import { getPublicKey } from 'mailauth/lib/tools.js';
import { txtRecord } from './dkim-keys.js';
import { type Dns, DnsFailure, reverseName } from './deliverability-dns.js';

export type Status = 'pass' | 'warn' | 'fail';

/** One requirement checked: what it was checked for, the outcome, and what to do when it is not a pass. */
export interface Finding {
  check: string;
  subject: string;
  status: Status;
  detail: string;
  fix?: string;
}

const finding = (check: string, subject: string, status: Status, detail: string, fix?: string): Finding =>
  fix === undefined ? { check, subject, status, detail } : { check, subject, status, detail, fix };

/** The SPF record the report suggests when cp.config mail default_spf names none (the docs' simple record). */
export const SUGGESTED_SPF = 'v=spf1 a mx ~all';
/** The DMARC record the report suggests when cp.config mail default_dmarc names none (the docs' example). */
export const SUGGESTED_DMARC = 'v=DMARC1; p=quarantine; pct=100;';

/** RFC 7208 4.6.4: at most 10 terms that cause DNS lookups. */
const MAX_LOOKUPS = 10;
/** RFC 7208 3.4: a record that does not fit a 512-octet UDP answer may not be seen; under 450 leaves room for the rest of the answer. */
const MAX_OCTETS = 512;
const ADVISED_OCTETS = 450;
/** An address no SPF record should name (TEST-NET-1, RFC 5737): evaluating for it walks every term up to `all`. */
const PROBE = '192.0.2.1';

const same = (a: string, b: string) => a.trim().replace(/\s+/g, ' ').toLowerCase() === b.trim().replace(/\s+/g, ' ').toLowerCase();

/** A lookup that the DNS could not answer turns into a failed check that says so, never into a verdict on the record. */
async function guarded(check: string, subject: string, dns: Dns, fn: () => Promise<Finding[]>): Promise<Finding[]> {
  try {
    return await fn();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (!(err instanceof DnsFailure) && (code === undefined || !/^E[A-Z]+$/.test(code))) throw err;
    const servers = dns.servers.length ? dns.servers.join(', ') : "the system's (/etc/resolv.conf)";
    const what = err instanceof DnsFailure ? err.message : `a DNS lookup failed (${code})`;
    return [
      finding(
        check,
        subject,
        'fail',
        `${what}: nothing could be checked`,
        `make sure the DNS servers answer (now ${servers}; cpcmd scope:set cp.bootstrapper mail_dns_servers [IP] chooses others)`,
      ),
    ];
  }
}

/**
 * Forward-confirmed reverse DNS of each address net.hostname resolves to: the address's PTR
 * names a host that resolves back to it, and that host is net.hostname (Postfix greets with it).
 */
export async function fcrdns(dns: Dns, hostname: string): Promise<{ addresses: string[]; findings: Finding[] }> {
  let addresses: string[] = [];
  const findings = await guarded('fcrdns', hostname, dns, async () => {
    const forward = await dns.addresses(hostname);
    if (!('records' in forward)) {
      return [
        finding(
          'fcrdns',
          hostname,
          'fail',
          `${hostname} (net.hostname) has no A or AAAA record, so no address of this server can be confirmed`,
          `publish ${hostname}. IN A with the server's public IPv4 address (and AAAA with its IPv6 address), or cpcmd scope:set net.hostname NAME with a name that has them`,
        ),
      ];
    }
    addresses = [...new Set(forward.records)];
    const out: Finding[] = [];
    for (const address of addresses) out.push(await confirm(dns, hostname, address));
    return out;
  });
  return { addresses, findings };
}

/**
 * One address's forward-confirmed reverse DNS against the name mail from it greets with: net.hostname,
 * or, for a mail.sender-ip route (`route`), the HELO name the route gives (net.hostname when it gives none).
 */
export async function confirm(dns: Dns, hostname: string, address: string, route?: { sender: string; helo?: string }): Promise<Finding> {
  const ptr = await dns.ptr(address);
  const setPtr = `have whoever holds the reverse zone of ${address} (the hosting provider) set its PTR record to ${hostname}`;
  const subject = route ? `${address} (mail.sender-ip ${route.sender})` : address;
  if (!('records' in ptr)) return finding('fcrdns', subject, 'fail', `${address} has no PTR record (${reverseName(address)})`, setPtr);
  const confirmed: string[] = [];
  for (const name of ptr.records) {
    const back = await dns.addresses(name);
    if ('records' in back && back.records.includes(address)) confirmed.push(name);
  }
  if (!confirmed.length) {
    return finding('fcrdns', subject, 'fail', `${address} -> ${ptr.records.join(', ')}, which does not resolve back to ${address}`, setPtr);
  }
  if (confirmed.includes(hostname)) return finding('fcrdns', subject, 'pass', `${address} -> ${hostname} -> ${address}`);
  const other = confirmed[0]!;
  const greeting = route?.helo !== undefined ? `its HELO name is ${hostname}` : `net.hostname is ${hostname}`;
  const rename = route ? `cpcmd scope:set mail.sender-ip ${route.sender} ${address} ${other}` : `cpcmd scope:set net.hostname ${other}`;
  return finding(
    'fcrdns',
    subject,
    'warn',
    `${address} -> ${other} -> ${address}, but ${greeting}: receivers compare the PTR name with the name Postfix greets them with`,
    `${setPtr}, or ${rename}`,
  );
}

/** What SPF says of the mail a domain sends from `ip`, evaluated as a receiver would (RFC 7208 limits). */
function evaluate(dns: Dns, domain: string, ip: string, hostname: string, maxResolveCount?: number) {
  return spf({
    sender: `postmaster@${domain}`,
    ip,
    helo: hostname,
    mta: hostname,
    resolver: dns.raw as never,
    ...(maxResolveCount ? { maxResolveCount } : {}),
  });
}

/**
 * A domain's SPF: exactly one record, at most 10 lookups and 512 octets, permitting each of the
 * server's addresses; and, when cp.config mail default_spf names one, the record it expects.
 */
export function spfFindings(dns: Dns, domain: string, addresses: readonly string[], hostname: string, expected: string): Promise<Finding[]> {
  return guarded('spf', domain, dns, async () => {
    const txt = await dns.txt(domain);
    const records = 'records' in txt ? txt.records.filter((r) => /^v=spf1(?: |$)/i.test(r)) : [];
    const publish = `publish ${domain}. IN TXT "${expected || SUGGESTED_SPF}"`;
    if (!records.length) return [finding('spf', domain, 'fail', `${domain} publishes no SPF record (a TXT record starting v=spf1)`, publish)];
    if (records.length > 1) {
      return [
        finding(
          'spf',
          domain,
          'fail',
          `${domain} publishes ${records.length} SPF records; receivers treat more than one as a permanent error (RFC 7208 4.5), so none applies`,
          'merge them into one TXT record starting v=spf1',
        ),
      ];
    }
    const record = records[0]!;
    const out = [finding('spf', domain, 'pass', `one SPF record: ${record}`)];

    const octets = Buffer.byteLength(record);
    const shorten = 'shorten it: move ip4:/ip6: lists into a record of their own that this one includes, or merge their ranges';
    if (octets > MAX_OCTETS) {
      out.push(
        finding(
          'spf-size',
          domain,
          'fail',
          `the record is ${octets} octets; over ${MAX_OCTETS} it does not fit a DNS answer over UDP, and receivers that do not retry over TCP see no record (RFC 7208 3.4)`,
          shorten,
        ),
      );
    } else if (octets > ADVISED_OCTETS) {
      out.push(
        finding(
          'spf-size',
          domain,
          'warn',
          `the record is ${octets} octets; RFC 7208 3.4 advises under ${ADVISED_OCTETS}, so the whole DNS answer fits ${MAX_OCTETS}`,
          shorten,
        ),
      );
    } else out.push(finding('spf-size', domain, 'pass', `${octets} octets (at most ${MAX_OCTETS})`));

    // Counted without the limit, so the report says how far over it is; a receiver stops at the 11th.
    const probe = await evaluate(dns, domain, PROBE, hostname, 100);
    const lookups = probe.lookups?.count ?? 0;
    if (lookups > MAX_LOOKUPS) {
      out.push(
        finding(
          'spf-lookups',
          domain,
          'fail',
          `evaluating the record takes ${lookups} DNS lookups; RFC 7208 4.6.4 allows ${MAX_LOOKUPS}, and receivers stop with a permanent error at the ${MAX_LOOKUPS + 1}th`,
          'each include, a, mx, ptr, exists and redirect costs one lookup, nested ones too: replace includes by the ip4:/ip6: ranges they name, or drop mechanisms',
        ),
      );
    } else if (probe.status.result === 'permerror') {
      out.push(
        finding(
          'spf-lookups',
          domain,
          'fail',
          `the record is in error: ${probe.status.comment ?? 'permerror'}`,
          'correct the record (RFC 7208 section 5 and 6)',
        ),
      );
    } else out.push(finding('spf-lookups', domain, 'pass', `${lookups} DNS lookup${lookups === 1 ? '' : 's'} (at most ${MAX_LOOKUPS})`));

    if (!addresses.length) {
      out.push(finding('spf-server', domain, 'warn', "not checked: net.hostname has no address, so the server's address is unknown", 'see the fcrdns check'));
    }
    for (const address of addresses) {
      const r = await evaluate(dns, domain, address, hostname);
      const result = r.status.result;
      const subject = `${domain} from ${address}`;
      const add = `add ${address.includes(':') ? 'ip6' : 'ip4'}:${address} to ${domain}'s SPF record, before its all`;
      if (result === 'pass') out.push(finding('spf-server', subject, 'pass', `the record permits ${address}`));
      else if (result === 'softfail' || result === 'neutral') {
        out.push(finding('spf-server', subject, 'warn', `the record does not permit ${address} (${result}): receivers trust its mail less`, add));
      } else
        out.push(
          finding('spf-server', subject, 'fail', `the record does not permit ${address} (${result}${r.status.comment ? `: ${r.status.comment}` : ''})`, add),
        );
    }

    if (expected && !same(record, expected)) out.push(differsFromDefault('spf', domain, expected, record, publish));
    return out;
  });
}

/** A published record that differs from the one cp.config mail default_spf / default_dmarc expects: a warning, with both ways out. */
function differsFromDefault(kind: 'spf' | 'dmarc', domain: string, expected: string, record: string, publish: string): Finding {
  return finding(
    `${kind}-default`,
    domain,
    'warn',
    `the record differs from the one cp.config mail default_${kind} expects (${expected})`,
    `${publish}, or cpcmd scope:set cp.config mail default_${kind} "${record}"`,
  );
}

/** The p= value of a DKIM record (zone-file form or joined text), whitespace removed. */
function publicKeyOf(record: string): string | undefined {
  const quoted = [...record.matchAll(/"([^"]*)"/g)].map((m) => m[1]).join('');
  const text = (quoted || record).replace(/\s+/g, '');
  return /(?:^|;)p=([^;]*)/i.exec(text)?.[1];
}

/** A signing domain's DKIM record: published at its selector, and the key the signer signs with. */
export function dkimFinding(dns: Dns, domain: string, selector: string | undefined, keyText: string | null): Promise<Finding[]> {
  return guarded('dkim', domain, dns, async () => {
    if (selector === undefined) {
      return [
        finding(
          'dkim',
          domain,
          'warn',
          `${domain}'s mail is not signed with DKIM`,
          `cpcmd scope:set mail.dkim ${domain}, then publish the record cpcmd scope:get mail.dkim ${domain} prints`,
        ),
      ];
    }
    const name = `${selector}._domainkey.${domain}`;
    const record = keyText === null ? null : txtRecord(domain, selector, keyText);
    if (record === null)
      return [finding('dkim', domain, 'fail', `the key of ${name} is missing or unusable, so nothing is signed`, 'cpcmd converge creates it again')];
    let rr: string;
    try {
      ({ rr } = await getPublicKey('DKIM', name, 1024, dns.raw));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? '';
      if (code === 'ENOTFOUND' || code === 'ENODATA')
        return [finding('dkim', domain, 'fail', `${name} has no DKIM record: receivers cannot verify the signatures`, `publish ${record}`)];
      if (/^E(?:INVALID|SHORTKEY)/.test(code))
        return [finding('dkim', domain, 'fail', `the record at ${name} is unusable: ${(err as Error).message}`, `publish ${record}`)];
      throw err;
    }
    if (publicKeyOf(rr) === publicKeyOf(record)) return [finding('dkim', domain, 'pass', `${name} publishes the key rspamd signs with`)];
    return [
      finding(
        'dkim',
        domain,
        'fail',
        `${name} publishes another key than the one rspamd signs ${domain}'s mail with: receivers fail the signatures`,
        `publish ${record}`,
      ),
    ];
  });
}

const POLICIES = ['none', 'quarantine', 'reject'];

/** Why a DMARC record's tags (as mailauth splits them) are not a usable policy, or undefined. */
function dmarcProblem(tags: Record<string, unknown>): string | undefined {
  if (!POLICIES.includes(String(tags.p ?? '').toLowerCase())) return 'it names no policy: p= must be none, quarantine or reject (RFC 7489 6.3)';
  if (tags.sp !== undefined && !POLICIES.includes(String(tags.sp).toLowerCase())) return 'sp= must be none, quarantine or reject';
  for (const tag of ['adkim', 'aspf']) if (tags[tag] !== undefined && !/^[rs]$/i.test(String(tags[tag]))) return `${tag}= must be r or s`;
  if (tags.pct !== undefined && !(Number(tags.pct) >= 0 && Number(tags.pct) <= 100)) return 'pct= must be 0 to 100';
  for (const tag of ['rua', 'ruf']) {
    if (tags[tag] === undefined) continue;
    const uris = String(tags[tag]).split(',');
    if (uris.some((u) => !/^mailto:[^@\s]+@[^@\s]+$/i.test(u.trim()))) return `${tag}= must be mailto: addresses, separated by commas`;
  }
  return undefined;
}

/** A domain's DMARC policy: one record (its own or its organisational domain's), parseable, and more than p=none. */
export function dmarcFindings(dns: Dns, domain: string, expected: string): Promise<Finding[]> {
  return guarded('dmarc', domain, dns, async () => {
    const name = `_dmarc.${domain}`;
    const publish = `publish ${name}. IN TXT "${expected || SUGGESTED_DMARC}"`;
    const own = await dns.txt(name);
    const records = 'records' in own ? own.records.filter((r) => /^v=DMARC1\b/i.test(r)) : [];
    if (records.length > 1) {
      return [
        finding('dmarc', domain, 'fail', `${name} has ${records.length} DMARC records; receivers apply none of them (RFC 7489 6.6.3)`, 'keep one of them'),
      ];
    }
    const found = await getDmarcRecord(domain, dns.raw);
    if (!found) return [finding('dmarc', domain, 'fail', `${domain} publishes no DMARC record (${name} TXT "v=DMARC1; p=…")`, publish)];
    const where = found.isOrgRecord ? `the organisational domain's record ${found.rr}` : found.rr;
    const problem = dmarcProblem(found);
    if (problem) return [finding('dmarc', domain, 'fail', `${where} cannot be used: ${problem}`, publish)];
    const out: Finding[] = [];
    if (String(found.p).toLowerCase() === 'none') {
      out.push(
        finding(
          'dmarc',
          domain,
          'warn',
          `${where}: policy none delivers mail that fails SPF and DKIM alignment, and only reports it`,
          'once the reports (rua=) show your own mail passes, publish p=quarantine',
        ),
      );
    } else out.push(finding('dmarc', domain, 'pass', `${where}: policy ${String(found.p).toLowerCase()}`));
    if (expected && !found.isOrgRecord && !same(found.rr, expected)) out.push(differsFromDefault('dmarc', domain, expected, found.rr, publish));
    return out;
  });
}
