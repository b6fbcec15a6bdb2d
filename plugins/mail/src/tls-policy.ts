/**
 * Outbound TLS per destination (the docs' answer to "TLS is required, but was not offered by
 * host"): scoped's own policy map, listed first in smtp_tls_policy_maps with the admin's maps
 * kept after it, and what each TLS level needs beside it (see configure-postfix.ts for the
 * global level's companions).
 */
import { type Change, type ScopeContext, ScopeInputError, argText, defineScope, defineUnit, defineVar, z } from '@scoped/sdk';
import { type SmartHost, TLS_LEVELS } from './vars.js';
import { MAIN_CF, PLAINTEXT_LEVELS, requirePostfix } from './configure-postfix.js';
import { type OwnMap, mapChanges, mapsParam, observeMap } from './own-map.js';

/** scoped's policy map: whole-file scoped's, never the admin's. */
export const POLICY_MAP = '/etc/postfix/scoped-tls-policy';
const POLICY_NAME = 'scoped-tls-policy';

type Level = (typeof TLS_LEVELS)[number];

/** A certificate or public-key fingerprint as Postfix prints it with sha256: 32 bytes in hex, colon separated. */
export const FINGERPRINT = /^(?:[0-9A-F]{2}:){31}[0-9A-F]{2}$/;
const DOMAIN = '(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z][a-z0-9-]{0,61}';
/** A policy lookup key: domain, .domain (its subdomains), or a next hop as relayhost or a transport names it, with brackets and port. */
const DESTINATION = new RegExp(`^(?:\\.?${DOMAIN}(?::\\d{1,5})?|\\[(?:${DOMAIN}|\\d{1,3}(?:\\.\\d{1,3}){3})\\](?::\\d{1,5})?)$`);
/** What verify and secure may match: a name, .domain, or Postfix's own words. */
const NAME_MATCH = new RegExp(`^(?:hostname|nexthop|dot-nexthop|\\.?${DOMAIN})$`);

/** Why a level's match list is refused, or undefined. */
export function matchProblem(level: Level, match: readonly string[]): string | undefined {
  if (level === 'fingerprint') {
    if (match.length === 0)
      return 'fingerprint needs at least one sha256 fingerprint of the server certificate or its public key (openssl x509 -noout -fingerprint -sha256)';
    const bad = match.find((m) => !FINGERPRINT.test(m));
    return bad === undefined
      ? undefined
      : `${bad.slice(0, 120)} is no sha256 fingerprint: give 32 hex bytes separated by colons, as openssl x509 -noout -fingerprint -sha256 prints them`;
  }
  if (level === 'verify' || level === 'secure') {
    const bad = match.find((m) => !NAME_MATCH.test(m));
    return bad === undefined ? undefined : `${bad.slice(0, 120)} is no name to match: give hostname, nexthop, dot-nexthop, a domain or a .domain`;
  }
  if (match.length === 0) return undefined;
  return level.startsWith('dane')
    ? `${level} takes nothing to match: the destination's TLSA records in DNSSEC-signed DNS say what to trust`
    : `${level} checks no certificate, so it takes nothing to match; verify, secure and fingerprint do`;
}

export const PolicyEntry = z
  .object({ level: z.enum(TLS_LEVELS), match: z.array(z.string()).default([]) })
  .strict()
  .superRefine((e, ctx) => {
    const problem = matchProblem(e.level, e.match);
    if (problem) ctx.addIssue({ code: 'custom', path: ['match'], message: problem });
  });
export type PolicyEntry = z.output<typeof PolicyEntry>;

const Destination = z
  .string()
  .transform((s) => s.toLowerCase())
  .refine((s) => DESTINATION.test(s), 'a destination is a domain, a .domain, or a next hop such as [relay.example.com]:587 or [192.0.2.1]:25');

export const postfixTlsPolicy = defineVar({
  name: 'postfix_tls_policy',
  description:
    "Outbound TLS level per destination (smtp_tls_policy_maps, scoped's map listed before the admin's), with what verify, secure and fingerprint match",
  schema: z.record(Destination, PolicyEntry),
  default: {} as Record<string, PolicyEntry>,
});

/** A list given as one word or many: fingerprints separated by spaces or commas. */
const wordList = z.preprocess((v) => (typeof v === 'string' ? v.split(/[\s,]+/).filter(Boolean) : v), z.array(z.string()));

export const postfixTlsFingerprints = defineVar({
  name: 'postfix_smtp_tls_fingerprints',
  description: 'The sha256 fingerprints smtp_tls_security_level=fingerprint accepts (smtp_tls_fingerprint_cert_match, with smtp_tls_fingerprint_digest=sha256)',
  schema: wordList.superRefine((list, ctx) => {
    const bad = list.find((m) => !FINGERPRINT.test(m));
    if (bad !== undefined) ctx.addIssue({ code: 'custom', message: matchProblem('fingerprint', [bad])! });
  }),
  default: [] as string[],
});

const policyOf = (vars: Readonly<Record<string, unknown>>) => (vars.postfix_tls_policy as Record<string, PolicyEntry> | undefined) ?? {};

/** One map line: `DESTINATION LEVEL [match=...]` (fingerprints joined by |, names by :). */
export function policyLine(dest: string, e: PolicyEntry): string {
  if (e.match.length === 0) return `${dest} ${e.level}`;
  return `${dest} ${e.level} match=${e.match.join(e.level === 'fingerprint' ? '|' : ':')}`;
}

export function policyText(policy: Record<string, PolicyEntry>): string | null {
  const entries = Object.entries(policy).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (entries.length === 0) return null;
  return `# Managed by scoped (cpcmd scope:set mail.tls-policy): edits are put back by cpcmd converge.\n${entries.map(([d, e]) => policyLine(d, e)).join('\n')}\n`;
}

/** The map's entries as Postfix would read them (what scope:get shows). */
export function parsePolicy(text: string | null): Record<string, { level: string; match: string[] }> {
  const out: Record<string, { level: string; match: string[] }> = {};
  for (const line of (text ?? '').split('\n')) {
    const [dest, level, ...attrs] = line.trim().split(/\s+/);
    if (!dest || dest.startsWith('#') || !level) continue;
    const match = attrs.find((a) => a.startsWith('match='))?.slice(6) ?? '';
    out[dest] = { level, match: match ? match.split(level === 'fingerprint' ? '|' : ':') : [] };
  }
  return out;
}

/** The host a next hop names: brackets and port taken off, lowercased. */
function hopHost(hop: string): string {
  const m = /^(?:\[([^\]]*)\]|([^[\]:]+))(?::\d+)?$/.exec(hop.toLowerCase());
  return m ? (m[1] ?? m[2] ?? hop) : hop.toLowerCase();
}

/**
 * Why this policy is refused beside the smart host's credentials, or undefined: an entry that
 * applies to the relay (its next hop, its name, or a .domain above it) may not let Postfix log
 * in without TLS, as the global level may not (configure-postfix's credentialsTlsProblem).
 */
export function credentialsPolicyProblem(sh: unknown, policy: Record<string, PolicyEntry>): string | undefined {
  if (sh === false || sh === null || typeof sh !== 'object' || !(sh as SmartHost).username) return undefined;
  const relay = hopHost((sh as SmartHost).host);
  for (const [key, entry] of Object.entries(policy)) {
    if (!PLAINTEXT_LEVELS.includes(entry.level)) continue;
    const host = key.startsWith('.') ? key.slice(1).toLowerCase() : hopHost(key);
    const applies = key.startsWith('.') ? relay.endsWith(`.${host}`) : relay === host;
    if (applies)
      return (
        `the TLS policy ${key} ${entry.level} applies to the smart host ${(sh as SmartHost).host}, which Postfix logs in to: ` +
        'the password would cross the network in the clear whenever the relay, or someone between, offers no STARTTLS. ' +
        'Give that destination encrypt (or dane-only, fingerprint, verify, secure), or the smart host without USER PASS'
      );
  }
  return undefined;
}

interface Observed {
  present: boolean;
  maps: string | null;
  map: OwnMap;
}

export const tlsPolicyUnit = defineUnit<Observed>({
  name: 'mail/tls-policy',
  description: "scoped's TLS policy map (postmapped) and its place first in smtp_tls_policy_maps",
  // The smart host too: its credentials decide which levels its next hop may have.
  reads: ['postfix_tls_policy', 'postfix_smarthost'],
  validate(vars) {
    return credentialsPolicyProblem(vars.postfix_smarthost, policyOf(vars));
  },
  async observe({ system }) {
    const [present, params, map] = await Promise.all([system.stat(MAIN_CF).then((s) => s !== null), system.postfix.mainCf(), observeMap(system, POLICY_MAP)]);
    return { present, maps: params.get('smtp_tls_policy_maps') ?? null, map };
  },
  plan(vars, o) {
    if (!o.present) return [];
    const changes: Change[] = [];
    const text = policyText(policyOf(vars));
    // scoped's map first, the admin's after it as written (own-map.ts, as mail.transport's).
    const value = mapsParam(o.maps, text === null ? null : o.map.ref, POLICY_NAME);
    if (value !== o.maps) changes.push({ kind: 'postconf', param: 'smtp_tls_policy_maps', value, current: o.maps, var: 'postfix_tls_policy' });
    changes.push(...mapChanges(o.map, text, 'postfix_tls_policy'));
    if (changes.length) changes.push({ kind: 'service', service: 'postfix', action: 'reload' });
    return changes;
  },
});

type PolicyValue = { destination: string; level: Level | false; match?: string[] };

function word(args: readonly unknown[], i: number, ctx: ScopeContext, what: string): string {
  const v = args[i];
  if (Array.isArray(v) || (v !== null && typeof v === 'object'))
    throw new ScopeInputError(`brackets were read as a list: quote the ${what} twice, as "'[relay.example.com]:587'"`);
  const text = argText(args, i, ctx);
  if (text === undefined) throw new ScopeInputError(`the ${what} must be one word`);
  return text;
}

export const tlsPolicyScope = defineScope<PolicyValue>({
  name: 'mail.tls-policy',
  summary: 'Outbound TLS level for one destination, overriding smtp_tls_security_level there',
  help:
    'DESTINATION is what Postfix looks the policy up by: the recipient domain (example.com), its subdomains (.example.com), or the ' +
    'next hop as relayhost or a transport names it, brackets and port included ("\'[relay.example.com]:587\'", quoted twice). LEVEL is ' +
    `one of ${TLS_LEVELS.join(', ')}. verify and secure may name what the certificate must match (hostname, nexthop, dot-nexthop, a ` +
    'domain, a .domain); fingerprint needs the sha256 fingerprints to accept. The answer to "TLS is required, but was not offered by ' +
    'host" for one peer that offers no STARTTLS while the global level is encrypt: DESTINATION may. scoped keeps these entries in a map ' +
    `of its own, ${POLICY_MAP} (postmapped), listed first in smtp_tls_policy_maps; maps the admin listed there stay after it, ` +
    'untouched. dane and dane-only set smtp_dns_support_level=dnssec. DESTINATION false removes the entry.',
  usage: 'DESTINATION LEVEL [MATCH...] | DESTINATION false',
  examples: [
    'cpcmd scope:set mail.tls-policy "\'[legacy.example.com]:25\'" may',
    'cpcmd scope:set mail.tls-policy example.com secure .example.com',
    'cpcmd scope:set mail.tls-policy example.net dane-only',
    'cpcmd scope:set mail.tls-policy example.com false',
    'cpcmd scope:get mail.tls-policy',
  ],
  schema: z.object({
    destination: z.string(),
    level: z.union([z.enum(TLS_LEVELS), z.literal(false)]),
    match: z.array(z.string()).optional(),
  }) as z.ZodType<PolicyValue>,
  vars: ['postfix_tls_policy'],
  parseArgs(args, ctx) {
    if (args.length < 2)
      throw new ScopeInputError(
        `mail.tls-policy takes DESTINATION LEVEL [MATCH...] or DESTINATION false; got ${args.length} argument${args.length === 1 ? '' : 's'}`,
      );
    const destination = word(args, 0, ctx, 'destination');
    if (args[1] === false) {
      if (args.length > 2) throw new ScopeInputError(`mail.tls-policy ${destination} false takes nothing more`);
      return { destination, level: false };
    }
    const level = word(args, 1, ctx, 'level');
    if (!(TLS_LEVELS as readonly string[]).includes(level))
      throw new ScopeInputError(`the level is one of ${TLS_LEVELS.join(', ')}, or false to remove the entry; not ${level.slice(0, 40)}`);
    return { destination, level: level as Level, match: args.slice(2).map((_, i) => word(args, i + 2, ctx, 'match')) };
  },
  async toVars(value, ctx) {
    await requirePostfix(ctx);
    const destination = value.destination.toLowerCase();
    if (!DESTINATION.test(destination))
      throw new ScopeInputError(`${destination.slice(0, 80)} is no destination: give a domain, a .domain, or a next hop such as "'[relay.example.com]:587'"`);
    const policy = { ...policyOf(ctx.vars) };
    if (value.level === false) delete policy[destination];
    else {
      const problem = matchProblem(value.level, value.match ?? []);
      if (problem) throw new ScopeInputError(problem);
      policy[destination] = { level: value.level, match: value.match ?? [] };
    }
    return { postfix_tls_policy: policy };
  },
  async get(ctx, args) {
    const entries = parsePolicy(await ctx.system.readFile(POLICY_MAP));
    if (args.length === 0) return entries;
    const destination = String(args[0]).toLowerCase();
    return entries[destination] ?? false;
  },
});
