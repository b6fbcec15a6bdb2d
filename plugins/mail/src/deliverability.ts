/**
 * mail.deliverability: a read-only report of the delivery requirements of the reference docs
 * (FCrDNS, SPF, DKIM, DMARC), each a pass, warn or fail with its fix, as the DNS answers now.
 * The server's addresses are those net.hostname resolves to (A and AAAA): the names receivers
 * check the connecting address against. A sender mail.sender-ip routes sends from the route's
 * address with its HELO name: that address is confirmed against that name, and its domain's SPF
 * must permit it.
 */
import { type ScopeContext, ScopeInputError, argText, defineScope, defineVar, z } from '@scoped/sdk';
import { type Finding, confirm, dkimFinding, dmarcFindings, fcrdns, spfFindings } from './deliverability-checks.js';
import { dnsServerProblem, openDns } from './deliverability-dns.js';
import { type SigningDomain, keyPath } from './dkim.js';
import type { SenderRoute } from './sender-ip.js';

const PRINTABLE = /^[\x20-\x7e]*$/;

const DnsServer = z.string().superRefine((s, c) => {
  const problem = dnsServerProblem(s);
  if (problem) c.addIssue({ code: 'custom', message: problem });
});

export const mailDnsServers = defineVar({
  name: 'mail_dns_servers',
  description:
    "The DNS servers mail.deliverability asks, each an IP address with an optional port (IPv6 in brackets before a port); empty asks the system's (/etc/resolv.conf). Admin only: any reader's report sends queries there",
  adminOnly: true,
  schema: z.array(DnsServer, { error: 'a list of DNS servers, such as [192.0.2.53] or "[\'127.0.0.1:5353\']" (quote a server with a port)' }).max(8),
  default: [] as string[],
});

export const mailDefaultSpf = defineVar({
  name: 'mail_default_spf',
  description:
    "The SPF record mail.deliverability expects each domain to publish (ApisCP's [mail] default_spf: cpcmd scope:set cp.config mail default_spf); empty expects none in particular",
  schema: z
    .string()
    .max(512, 'an SPF record is at most 512 octets')
    .refine(
      (s) => s === '' || (PRINTABLE.test(s) && /^v=spf1(?: |$)/i.test(s)),
      'an SPF record starts v=spf1, such as "v=spf1 a mx ~all" (printable characters only)',
    ),
  default: '',
});

export const mailDefaultDmarc = defineVar({
  name: 'mail_default_dmarc',
  description:
    "The DMARC record mail.deliverability expects each domain to publish at _dmarc.DOMAIN (ApisCP's [mail] default_dmarc: cpcmd scope:set cp.config mail default_dmarc); empty expects none in particular",
  schema: z
    .string()
    .max(512, 'a DMARC record is at most 512 octets')
    .refine(
      (s) => s === '' || (PRINTABLE.test(s) && /^v=DMARC1\s*;\s*p=(?:none|quarantine|reject)\s*(?:;.*)?$/i.test(s)),
      'a DMARC record starts v=DMARC1; then its policy p=none, p=quarantine or p=reject, such as "v=DMARC1; p=quarantine; pct=100;"',
    ),
  default: '',
});

/** How long one report may wait for the DNS in all; the scope's own limit is above it. */
const DEADLINE_MS = 30_000;

const DOMAIN = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

const READ_ONLY =
  'mail.deliverability is a read-only report: run cpcmd scope:get mail.deliverability [DOMAIN]; to change the records it expects, ' +
  'cpcmd scope:set cp.config mail default_spf "v=spf1 a mx ~all" (or default_dmarc)';

/** The report: the server's name and addresses, the DNS asked, and every finding. */
export interface Report {
  hostname: string;
  addresses: string[];
  dns: string;
  summary: string;
  checks: Finding[];
}

async function hostnameOf(ctx: ScopeContext): Promise<string> {
  const set = typeof ctx.vars.system_hostname === 'string' ? ctx.vars.system_hostname : '';
  const name = set || (await ctx.system.readFile('/etc/hostname'))?.trim() || '';
  if (!name) throw new ScopeInputError("the report checks the server's name, and it has none: cpcmd scope:set net.hostname mail.example.com");
  return name.toLowerCase();
}

async function report(ctx: ScopeContext, args: readonly unknown[]): Promise<Report> {
  if (args.length > 1) throw new ScopeInputError(`scope:get mail.deliverability takes at most one DOMAIN; got ${args.length} arguments`);
  let only: string | undefined;
  if (args.length === 1) {
    only = (argText(args, 0, ctx) ?? '').toLowerCase().replace(/\.$/, '');
    if (!DOMAIN.test(only)) throw new ScopeInputError('give a domain that sends mail, such as example.com');
  }
  const hostname = await hostnameOf(ctx);
  const signing = (ctx.vars.dkim_domains as Record<string, SigningDomain> | undefined) ?? {};
  const routes = Object.entries((ctx.vars.mail_sender_ips as Record<string, SenderRoute> | undefined) ?? {});
  const routeDomain = (sender: string) => sender.slice(sender.indexOf('@') + 1);
  const senders = [...new Set([...Object.keys(signing), ...routes.map(([s]) => routeDomain(s))])].sort();
  const domains = only ? [only] : senders.length ? senders : [hostname];
  const servers = (ctx.vars.mail_dns_servers as string[] | undefined) ?? [];
  const expectedSpf = (ctx.vars.mail_default_spf as string | undefined) ?? '';
  const expectedDmarc = (ctx.vars.mail_default_dmarc as string | undefined) ?? '';
  const dns = openDns(servers, DEADLINE_MS);
  try {
    const server = await fcrdns(dns, hostname);
    const checks = [...server.findings];
    // Mail of a sender mail.sender-ip routes leaves from the route's address and greets with its HELO.
    for (const [sender, route] of routes) {
      if (!only || routeDomain(sender) === only)
        checks.push(await confirm(dns, route.helo ?? hostname, route.ip, { sender, ...(route.helo ? { helo: route.helo } : {}) }));
    }
    /** The addresses a domain's mail leaves from: its routes' when mail.sender-ip routes it, else the server's. */
    const from = (domain: string) => {
      const ips = routes.filter(([s]) => routeDomain(s) === domain).map(([, r]) => r.ip);
      return ips.length ? [...new Set(ips)] : server.addresses;
    };
    for (const domain of domains) {
      const selector = signing[domain]?.selector;
      const keyText = selector === undefined ? null : await ctx.system.readFile(keyPath(domain, selector));
      const [spf, dkim, dmarc] = await Promise.all([
        spfFindings(dns, domain, from(domain), hostname, expectedSpf),
        dkimFinding(dns, domain, selector, keyText),
        dmarcFindings(dns, domain, expectedDmarc),
      ]);
      checks.push(...spf, ...dkim, ...dmarc);
    }
    const count = (s: Finding['status']) => checks.filter((c) => c.status === s).length;
    return {
      hostname,
      addresses: server.addresses,
      dns: servers.length ? servers.join(' ') : "the system's (/etc/resolv.conf)",
      summary: `${count('pass')} pass, ${count('warn')} warn, ${count('fail')} fail`,
      checks,
    };
  } finally {
    dns.close();
  }
}

export const deliverabilityScope = defineScope<never>({
  name: 'mail.deliverability',
  summary: "Report the DNS that decides whether this server's mail is delivered: FCrDNS, SPF, DKIM, DMARC (read-only)",
  help:
    'Checks, as receivers do, each requirement of good delivery and says pass, warn or fail with the fix. FCrDNS: each address ' +
    "net.hostname resolves to (A, AAAA: the server's addresses) has a PTR naming a host that resolves back to it, and that host " +
    'is net.hostname. SPF: the domain publishes exactly one record, of at most 512 octets, needing at most 10 DNS lookups as ' +
    "RFC 7208 counts them, that permits the server's addresses. A sender mail.sender-ip routes is checked from its route's " +
    "address: that address must confirm as the HELO name the route gives, and its domain's SPF must permit it. DKIM: the " +
    'selector mail.dkim signs with publishes the key it ' +
    "signs with. DMARC: one parseable record (the domain's, or its organisational domain's), with a policy stronger than none. " +
    'With DOMAIN only that domain is checked; without, the domains mail.dkim signs for and mail.sender-ip routes (or net.hostname when none). Records ' +
    'that differ from cp.config mail default_spf / default_dmarc are warned of. The DNS asked is mail_dns_servers ' +
    "(cpcmd scope:set cp.bootstrapper mail_dns_servers [192.0.2.53]), by default the system's; /etc/hosts is never read. " +
    'Nothing is changed: scope:set is refused.',
  usage: '[DOMAIN]',
  examples: [
    'cpcmd scope:get mail.deliverability',
    'cpcmd scope:get mail.deliverability example.com',
    'cpcmd -o json scope:get mail.deliverability example.com',
    'cpcmd scope:set cp.config mail default_spf "v=spf1 a mx ~all"',
  ],
  schema: z.never({ error: READ_ONLY }),
  vars: [],
  // DNS answers within DEADLINE_MS; a plugin whose scope overruns its limit is taken out of service.
  timeoutMs: DEADLINE_MS + 15_000,
  live: true,
  parseArgs() {
    throw new ScopeInputError(READ_ONLY);
  },
  toVars() {
    throw new ScopeInputError(READ_ONLY);
  },
  get: report,
});
