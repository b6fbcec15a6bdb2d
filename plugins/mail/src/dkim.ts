/**
 * mail.dkim: DKIM signing of outbound mail by rspamd. A domain that signs has one key (its
 * selector's); keys of selectors it no longer signs with stay on disk, so their records can
 * stay published while mail signed with them is in flight, until --purge deletes them.
 * Key material lives only in the key files (0600, rspamd's): never in vars, plans or output.
 */
import path from 'node:path';
import { type Change, type ScopeContext, ScopeInputError, type System, type VarValues, argText, defineScope, defineUnit, defineVar, z } from '@scoped/sdk';
import { ALGORITHMS, type Algorithm, keyAlgorithm, newKey, txtRecord } from './dkim-keys.js';

/** Where the keys live, as rspamd's own default path names them: DOMAIN.SELECTOR.key. */
export const DKIM_DIR = '/var/lib/rspamd/dkim';
/** rspamd's local override of the dkim_signing module, which scoped owns whole. */
export const SIGNING_CONF = '/etc/rspamd/local.d/dkim_signing.conf';
/** The selector a domain's first key gets when none is given (rspamd's default selector). */
export const DEFAULT_SELECTOR = 'dkim';
/** The user rspamd runs as, who must read the keys. */
const RSPAMD_USER = '_rspamd';

const DOMAIN = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const SELECTOR = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

const Domain = z.string().regex(DOMAIN, 'a domain is a lowercase DNS name such as example.com');
const Selector = z
  .string()
  .regex(SELECTOR, 'a selector is one DNS label: lowercase letters, digits and inner hyphens, such as dkim or s2024')
  .refine((s) => !(ALGORITHMS as readonly string[]).includes(s), 'rsa and ed25519 name algorithms, not selectors: give DOMAIN SELECTOR ALGORITHM');

/** A domain that signs: its selector and the algorithm of that selector's key. */
export const SigningDomain = z.object({ selector: Selector, algorithm: z.enum(ALGORITHMS) }).strict();
export type SigningDomain = z.output<typeof SigningDomain>;

/** A domain's keys that do not sign: kept on disk, or to be deleted (--purge). */
export const OldKeys = z.object({ kept: z.array(Selector), purged: z.array(Selector) }).strict();
export type OldKeys = z.output<typeof OldKeys>;

export const dkimDomains = defineVar({
  name: 'dkim_domains',
  description: 'The domains rspamd signs outbound mail for, each with its selector and key algorithm (rsa or ed25519); keys stay in files, never here',
  schema: z.record(Domain, SigningDomain),
  default: {} as Record<string, SigningDomain>,
});

export const dkimOldKeys = defineVar({
  name: 'dkim_old_keys',
  description: 'DKIM selectors that no longer sign, by domain: kept (their keys stay, so their records can stay published) or purged (their keys are deleted)',
  schema: z.record(Domain, OldKeys),
  default: {} as Record<string, OldKeys>,
});

/** The key file of a domain's selector, as seen inside the root. */
export const keyPath = (domain: string, selector: string): string => `${DKIM_DIR}/${domain}.${selector}.key`;

const signingOf = (vars: VarValues): Record<string, SigningDomain> => (vars.dkim_domains as Record<string, SigningDomain> | undefined) ?? {};
const oldKeysOf = (vars: VarValues): Record<string, OldKeys> => (vars.dkim_old_keys as Record<string, OldKeys> | undefined) ?? {};
const uniq = (xs: readonly string[]): string[] => [...new Set(xs)];
const sorted = <T>(r: Record<string, T>): [string, T][] => Object.entries(r).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));

/**
 * rspamd's dkim_signing settings for these domains: each signs with exactly its own key (no
 * fallback to a global key or path), chosen by the From header's domain as given (not its eSLD),
 * for mail from local networks and from any logged-in user.
 */
export function signingConf(root: string, domains: Record<string, SigningDomain>): string {
  const lines = [
    '# Managed by scoped (cpcmd scope:set mail.dkim): edits are put back by cpcmd converge.',
    'sign_local = true;',
    'sign_authenticated = true;',
    'sign_inbound = false;',
    'use_domain = "header";',
    'use_esld = false;',
    'try_fallback = false;',
    'allow_hdrfrom_mismatch = false;',
    'allow_username_mismatch = true;',
    'domain {',
  ];
  for (const [domain, { selector }] of sorted(domains)) {
    const file = path.join(root, keyPath(domain, selector));
    lines.push(`  "${domain}" {`, `    selectors [ { path = "${file}"; selector = "${selector}"; } ];`, '  }');
  }
  lines.push('}', '');
  return lines.join('\n');
}

/** What a set of mail.dkim asks: a domain signing with a selector (and algorithm), or a domain no longer signing. */
const DkimValue = z.union([
  z.object({ domain: Domain, selector: Selector.optional(), algorithm: z.enum(ALGORITHMS).optional() }).strict(),
  z.object({ domain: Domain, sign: z.literal(false) }).strict(),
]);
type DkimValue = z.output<typeof DkimValue>;

/** A word as typed (a selector such as 2024 stays text), lowercased: DNS names are case-insensitive. */
function word(args: readonly unknown[], i: number, ctx: ScopeContext, what: string): string {
  const text = argText(args, i, ctx);
  if (text === undefined) throw new ScopeInputError(`the ${what} must be one word, such as ${what === 'domain' ? 'example.com' : 'dkim'}`);
  return text.toLowerCase();
}

/** The var changes a set means: which domains sign with which selector, and which old keys stay or go. */
async function dkimVars(value: DkimValue, ctx: ScopeContext): Promise<Record<string, unknown>> {
  const signing = { ...signingOf(ctx.vars) };
  const oldKeys = { ...oldKeysOf(ctx.vars) };
  const { domain } = value;
  const current = signing[domain];
  const known = oldKeys[domain] ?? { kept: [], purged: [] };
  // A purged selector whose key is gone needs no more remembering.
  const old = { kept: known.kept, purged: [] as string[] };
  for (const s of known.purged) if ((await ctx.system.stat(keyPath(domain, s))) !== null) old.purged.push(s);
  let next: OldKeys;
  if ('sign' in value) {
    const kept = uniq([...(current ? [current.selector] : []), ...old.kept]);
    if (!kept.length && !current) {
      const domains = Object.keys(signing);
      throw new ScopeInputError(
        `${domain} has no DKIM key to stop${domains.length ? `; the domains that sign are ${domains.join(', ')}` : ''} (cpcmd scope:get mail.dkim lists them)`,
        [],
        'not-found',
      );
    }
    delete signing[domain];
    next = ctx.purge ? { kept: [], purged: uniq([...old.purged, ...kept]) } : { kept, purged: old.purged };
  } else {
    const selector = value.selector ?? current?.selector ?? old.kept[0] ?? DEFAULT_SELECTOR;
    // A selector that already has a key keeps it (and its algorithm): its record may be published.
    const existing = old.purged.includes(selector) ? null : await keyOnDisk(ctx.system, domain, selector);
    if (existing && value.algorithm && existing !== value.algorithm) {
      throw new ScopeInputError(
        `${selector}._domainkey.${domain} already has an ${existing} key; to sign with ${value.algorithm}, give a new selector: cpcmd scope:set mail.dkim ${domain} NEW_SELECTOR ${value.algorithm}`,
      );
    }
    const algorithm: Algorithm = value.algorithm ?? existing ?? current?.algorithm ?? 'rsa';
    const kept = uniq([...(current && current.selector !== selector ? [current.selector] : []), ...old.kept]).filter((s) => s !== selector);
    const purged = old.purged.filter((s) => s !== selector);
    signing[domain] = { selector, algorithm };
    next = ctx.purge ? { kept: [], purged: uniq([...purged, ...kept]) } : { kept, purged };
  }
  if (next.kept.length || next.purged.length) oldKeys[domain] = next;
  else delete oldKeys[domain];
  return { dkim_domains: signing, dkim_old_keys: oldKeys };
}

/** The algorithm of the key a selector already has, or null when it has none. */
async function keyOnDisk(system: System, domain: string, selector: string): Promise<Algorithm | null> {
  const text = await system.readFile(keyPath(domain, selector));
  return text === null ? null : keyAlgorithm(text);
}

/** What scope:get mail.dkim lists: each domain with a key, the selector it signs with (or false) and the keys it keeps. */
async function listing(ctx: ScopeContext): Promise<Record<string, { signing: string | false; algorithm?: Algorithm; kept: string[] }>> {
  const signing = signingOf(ctx.vars);
  const oldKeys = oldKeysOf(ctx.vars);
  const out: Record<string, { signing: string | false; algorithm?: Algorithm; kept: string[] }> = {};
  for (const domain of uniq([...Object.keys(signing), ...Object.keys(oldKeys)]).sort()) {
    const current = signing[domain];
    const kept: string[] = [];
    for (const s of oldKeys[domain]?.kept ?? []) if ((await ctx.system.stat(keyPath(domain, s))) !== null) kept.push(s);
    if (!current && !kept.length) continue;
    out[domain] = current ? { signing: current.selector, algorithm: current.algorithm, kept } : { signing: false, kept };
  }
  return out;
}

/** The TXT record to publish for a domain's selector (its signing one by default). */
async function record(ctx: ScopeContext, args: readonly unknown[]): Promise<string> {
  const domain = word(args, 0, ctx, 'domain');
  const current = signingOf(ctx.vars)[domain];
  const kept = oldKeysOf(ctx.vars)[domain]?.kept ?? [];
  const selector = args.length > 1 ? word(args, 1, ctx, 'selector') : (current?.selector ?? kept[0]);
  if (selector === undefined || (selector !== current?.selector && !kept.includes(selector))) {
    const selectors = [...(current ? [current.selector] : []), ...kept];
    throw new ScopeInputError(
      selectors.length
        ? `${domain} has no DKIM selector ${selector}; its selectors are ${selectors.join(', ')}`
        : `${domain} has no DKIM key: create one with cpcmd scope:set mail.dkim ${domain}`,
      [],
      'not-found',
    );
  }
  const text = await ctx.system.readFile(keyPath(domain, selector));
  const txt = text === null ? null : txtRecord(domain, selector, text);
  if (txt === null) throw new ScopeInputError(`the key of ${selector}._domainkey.${domain} is missing or unreadable: cpcmd converge creates it again`);
  return txt;
}

export const dkimScope = defineScope<DkimValue>({
  name: 'mail.dkim',
  summary: 'Sign outbound mail of a domain with DKIM (rspamd), and show the DNS record to publish',
  help:
    'DOMAIN [SELECTOR [ALGORITHM]] creates a key for the domain (ALGORITHM rsa, 2048 bits, by default, or ed25519; SELECTOR ' +
    `${DEFAULT_SELECTOR} by default) in ${DKIM_DIR}/DOMAIN.SELECTOR.key (0600, readable by rspamd only, never shown) and has ` +
    "rspamd sign mail whose From header is in the domain, sent from this machine's networks or by a logged-in user; rspamd " +
    'runs as milter for it even when SpamAssassin filters inbound mail. scope:get mail.dkim DOMAIN prints the TXT record to publish ' +
    '(SELECTOR._domainkey.DOMAIN); scope:get mail.dkim lists the domains. To rotate, set a new selector: it signs from then on, ' +
    'and the old key stays so its record can stay published until mail signed with it is delivered (scope:get mail.dkim DOMAIN ' +
    'OLD_SELECTOR prints it). DOMAIN false stops signing and keeps the keys; --purge deletes the keys that do not sign ' +
    "(with DOMAIN false: all of the domain's keys; with DOMAIN SELECTOR: the old selectors' keys).",
  usage: 'DOMAIN [SELECTOR [rsa | ed25519]] | DOMAIN false',
  examples: [
    'cpcmd scope:set mail.dkim example.com',
    'cpcmd scope:get mail.dkim example.com',
    'cpcmd scope:set mail.dkim example.com s2025 ed25519',
    'cpcmd scope:set mail.dkim example.com false --purge',
    'cpcmd scope:get mail.dkim',
  ],
  schema: DkimValue,
  vars: ['dkim_domains', 'dkim_old_keys'],
  allowPurge: true,
  parseArgs(args, ctx) {
    if (args.length < 1 || args.length > 3)
      throw new ScopeInputError(`mail.dkim takes DOMAIN [SELECTOR [rsa | ed25519]] or DOMAIN false; got ${args.length} arguments`);
    const domain = word(args, 0, ctx, 'domain');
    if (args[1] === false) {
      if (args.length > 2) throw new ScopeInputError(`mail.dkim ${domain} false takes nothing more (add --purge to delete the keys)`);
      return { domain, sign: false };
    }
    const value: DkimValue = { domain };
    if (args.length > 1) value.selector = word(args, 1, ctx, 'selector');
    if (args.length > 2) {
      const algorithm = word(args, 2, ctx, 'algorithm');
      if (!(ALGORITHMS as readonly string[]).includes(algorithm)) throw new ScopeInputError(`the algorithm is rsa or ed25519, not ${algorithm}`);
      value.algorithm = algorithm as Algorithm;
    }
    return value;
  },
  toVars: dkimVars,
  get: (ctx, args) => (args.length ? record(ctx, args) : listing(ctx)),
});

export const dkimUnit = defineUnit<null>({
  name: 'mail/dkim',
  description: "rspamd's DKIM keys and its dkim_signing settings",
  reads: ['dkim_domains', 'dkim_old_keys'],
  // The key files are named by the vars, so they are read while planning, not here.
  observe: async () => null,

  // Not pure: a key that is missing (or unusable) is generated here, so the plan carries it as
  // a secret file change; once written, later plans (the check after the apply) find it and plan nothing.
  async plan(vars, _observed, { system }) {
    const signing = signingOf(vars);
    const changes: Change[] = [];
    for (const [domain, { selector, algorithm }] of sorted(signing)) {
      const file = keyPath(domain, selector);
      const current = await system.readFile(file);
      const base = { kind: 'file', path: file, mode: 0o600, owner: RSPAMD_USER, current, secret: true, var: 'dkim_domains' } as const;
      if (current === null || keyAlgorithm(current) !== algorithm) changes.push({ ...base, content: await newKey(algorithm) });
      else if ((await system.stat(file))?.mode !== 0o600) changes.push({ ...base, content: current });
    }
    for (const [domain, { kept, purged }] of sorted(oldKeysOf(vars))) {
      for (const selector of purged) {
        // Never the key a domain signs with or keeps, whatever the lists say.
        if (signing[domain]?.selector === selector || kept.includes(selector)) continue;
        const file = keyPath(domain, selector);
        const current = await system.readFile(file);
        if (current !== null) changes.push({ kind: 'file.remove', path: file, current, secret: true, var: 'dkim_old_keys' });
      }
    }
    const conf = Object.keys(signing).length ? signingConf(system.root, signing) : null;
    const current = await system.readFile(SIGNING_CONF);
    if (conf !== null && conf !== current) changes.push({ kind: 'file', path: SIGNING_CONF, content: conf, mode: 0o644, current, var: 'dkim_domains' });
    if (conf === null && current !== null) changes.push({ kind: 'file.remove', path: SIGNING_CONF, current, var: 'dkim_domains' });
    if (changes.length) changes.push({ kind: 'service', service: 'rspamd', action: 'reload' });
    return changes;
  },
});
