import { REDACTED, ScopeInputError, type ScopeContext, argText, defineScope, z } from '@scoped/sdk';
import { AUTH_MAP, autoTlsLevel, credentialsTlsProblem, keptTlsLevel, observedSmartHost, tlsLevelOf, onOff, requirePostfix } from './configure-postfix.js';
import { verifyDeadlineMs, verifyRelay } from './smtp-verify.js';
import { RSPAMD_FILES, ownFile } from './rspamd-conf.js';
import { CONTENT_FILTER, milterAddress } from './spam-filter.js';
import { SmartHost } from './vars.js';

type SmartHostValue = false | SmartHost;

/** A CLI word for a credential, as it was typed: `1.50` stays 1.50, `TRUE` stays TRUE. */
function credential(args: readonly unknown[], i: number, ctx: ScopeContext, what: string): string {
  const text = argText(args, i, ctx);
  if (text === undefined) throw new ScopeInputError(`the ${what} must be text; quote it as "'…'" if it looks like a list or null`);
  return text;
}

async function currentSmartHost(ctx: ScopeContext, withPassword: boolean): Promise<SmartHostValue> {
  const sh = observedSmartHost(await ctx.system.postfix.mainCf(), await ctx.system.readFile(AUTH_MAP));
  return sh === false || sh.username === '' || withPassword ? sh : { ...sh, password: REDACTED };
}

/**
 * The TLS level a smart host would be used with: the var's, unless it is empty or merely what
 * scoped found on the system at its first start (no one's choice) and the credentials need more.
 */
function tlsLevelFor(value: SmartHostValue, ctx: ScopeContext): string {
  const level = ctx.vars.postfix_smtp_tls_security_level as string;
  if (!level || (ctx.adopted?.has('postfix_smtp_tls_security_level') && credentialsTlsProblem(value, level))) return autoTlsLevel(value);
  return level;
}

export const smartHostScope = defineScope<SmartHostValue>({
  name: 'mail.smart-host',
  summary: 'Relay all outbound mail through one host, optionally with SASL credentials over TLS',
  help:
    'HOST is name, name:port, [name], [name]:port, [192.0.2.1] or [ipv6:2001:db8::1] (brackets skip the MX lookup); ' +
    'quote brackets twice on the shell: "\'[relay.example.com]:587\'". With USER PASS, Postfix logs in with SASL ' +
    '(smtp_sasl_auth_enable, a 0600 credentials map) and TLS is required (smtp_tls_security_level=encrypt) unless ' +
    'postfix_smtp_tls_security_level says otherwise (a level scoped only found on the system gives way to encrypt); credentials with ' +
    'level none, may or dane are refused (Postfix could log in without TLS). Without USER PASS the TLS level is left as it is ' +
    '(may when scoped picks it). false turns relaying off and an empty postfix_smtp_tls_security_level back to may. ' +
    'scope:check --adopt takes a hand-edited relayhost and keeps the TLS level main.cf has. --verify looks the relay up in DNS as Postfix does (never in /etc/hosts), logs in to it first and ' +
    'changes nothing if that fails. ' +
    'scope:get shows what Postfix uses now; the password always comes back redacted.',
  usage: 'HOST [USER PASS] | false',
  examples: [
    'cpcmd scope:set mail.smart-host "\'[relay.example.com]:587\'" alice s3cret',
    'cpcmd scope:set mail.smart-host smtp.mailchannels.net ACCOUNT_ID PASSWORD --verify',
    'cpcmd scope:set mail.smart-host false',
    'cpcmd scope:get mail.smart-host',
  ],
  schema: z.union([z.literal(false), SmartHost]),
  vars: ['postfix_smarthost'],
  secretFields: ['password'],
  parseArgs(args, ctx) {
    const [host] = args;
    if (args.length === 1 && host === false) return false;
    if (Array.isArray(host) || (host !== null && typeof host === 'object')) {
      throw new ScopeInputError(
        `brackets were read as a list: quote the host twice, as "'[${Array.isArray(host) ? host.join(',') : 'relay.example.com'}]'" (add :PORT inside the quotes)`,
      );
    }
    const typed = argText(args, 0, ctx);
    if (typeof host === 'boolean' || (typed !== undefined && /^(?:true|false)$/i.test(typed))) {
      // A quoted 'false', or false with USER PASS, is no host name: only a bare false turns relaying off.
      throw new ScopeInputError(
        `${typed ?? String(host)} is not a relay host: false turns the smart host off only unquoted and alone (cpcmd scope:set mail.smart-host false); otherwise give the relay host, such as "'[relay.example.com]:587'"`,
      );
    }
    if (host === null || typed === undefined)
      throw new ScopeInputError('give the relay host, such as "\'[relay.example.com]:587\'", or false to turn the smart host off');
    if (args.length === 1) return { host: typed, username: '', password: '' };
    if (args.length === 3) return { host: typed, username: credential(args, 1, ctx, 'username'), password: credential(args, 2, ctx, 'password') };
    throw new ScopeInputError(`mail.smart-host takes HOST, or HOST USER PASS, or false; got ${args.length} arguments (give both USER and PASS, or neither)`);
  },
  async toVars(value, ctx) {
    await requirePostfix(ctx);
    const level = ctx.vars.postfix_smtp_tls_security_level as string;
    // A level scoped only found on the system (no one chose it) gives way to the encrypt credentials need, as the help says.
    if (level && tlsLevelFor(value, ctx) !== level) return { postfix_smarthost: value, postfix_smtp_tls_security_level: '' };
    return { postfix_smarthost: value };
  },
  get: (ctx) => currentSmartHost(ctx, false),
  adopt: async (ctx) => {
    const observed = await currentSmartHost(ctx, true);
    const stored = ctx.vars.postfix_smarthost as SmartHostValue;
    let adopted = observed;
    let note: string | undefined;
    if (observed === false || observed.username !== '' || stored === false || stored.username === '') adopted = observed;
    // Only the map is gone: the stored credentials stay with their own host (converging writes the map again).
    else if (observed.host === stored.host) adopted = stored;
    // A credential is never moved to another host: the hand-set host is adopted without one, and the user is told.
    else
      note =
        `credentials were not adopted: the credentials map has no entry for ${JSON.stringify(observed.host)}, and the stored ones ` +
        `belong to ${JSON.stringify(stored.host)}; give them again with cpcmd scope:set mail.smart-host HOST USER PASS`;
    const vars: Record<string, unknown> = { postfix_smarthost: adopted };
    // Adopting keeps the TLS level the system has: an empty level would otherwise pick another one for the adopted host.
    const params = await ctx.system.postfix.mainCf();
    const level = ctx.vars.postfix_smtp_tls_security_level as string;
    if ((level || autoTlsLevel(adopted)) !== tlsLevelOf(params)) vars.postfix_smtp_tls_security_level = keptTlsLevel(params, adopted);
    return note ? { vars, notes: [note] } : { vars };
  },
  async verify(value, ctx) {
    if (value === false) return;
    const level = tlsLevelFor(value, ctx);
    // Refused before anything connects: the set itself would be refused for the same reason.
    const weak = credentialsTlsProblem(value, level);
    if (weak) throw new ScopeInputError(`--verify failed, nothing was changed: ${weak}`);
    try {
      // The hostname an operator sets (net.hostname) is refused as a relay name: /etc/hosts maps it to this machine.
      const hostname = typeof ctx.vars.system_hostname === 'string' ? ctx.vars.system_hostname : '';
      await verifyRelay(value, { tlsLevel: level, timeoutMs: verifyDeadlineMs(), hostname });
    } catch (err) {
      throw new ScopeInputError(`--verify failed, nothing was changed: ${(err as Error).message}`);
    }
  },
});

const Filter = z.union([z.enum(['spamassassin', 'rspamd']), z.literal(false)]);

/** Which filters Postfix uses now: SpamAssassin by its content filter, rspamd by its milter (refusing spam, or passive beside another). */
async function activeFilters(ctx: ScopeContext): Promise<{ spamassassin: boolean; rspamd: 'filter' | 'passive' | null }> {
  const params = await ctx.system.postfix.mainCf();
  const milters = (params.get('smtpd_milters') ?? '').split(/[\s,]+/).filter(Boolean);
  // Asked only when there are milters: on a sandbox root the first ask chooses the ports.
  const milter = milters.length ? milterAddress(ctx.vars, await ctx.system.services.endpoint('rspamd.milter')) : undefined;
  const passive = ownFile(await ctx.system.readFile(RSPAMD_FILES.noReject));
  return {
    spamassassin: params.get('content_filter') === CONTENT_FILTER,
    rspamd: milter && milters.includes(milter) ? (passive ? 'passive' : 'filter') : null,
  };
}

export const spamFilterScope = defineScope<'spamassassin' | 'rspamd' | false>({
  name: 'mail.spam-filter',
  summary: 'Which spam filter inbound mail passes through: spamassassin, rspamd or false',
  help:
    'rspamd runs as a before-queue milter (smtpd_milters, non_smtpd_milters, milter_default_action=accept): spam is refused ' +
    "during SMTP with a 5xx, so the sender's server bounces it, and accepted mail carries rspamd's X-Spamd-Result and " +
    'X-Rspamd-* headers. spamassassin works after the queue, never as a milter (a before-queue SpamAssassin delays every ' +
    'connection too long): content_filter hands each message to spamd through spamc (a pipe service in a marked block of ' +
    'master.cf), and the marked message comes back on a loopback listener; spam is delivered with X-Spam-Flag: YES, never ' +
    "refused; it is refused while main.cf hands mail to another content filter (amavis), whose place it would take. scoped writes the filter's settings (rspamd's local.d files, marked as scoped's) and runs its daemons " +
    "(rspamd with redis-server, or spamd), and refuses the set with the check's own message when the filter's config fails " +
    '`rspamadm configtest` or `spamassassin --lint`. false takes the milter, the content filter, the master.cf block and ' +
    "scoped's files away and stops what scoped ran. The filter's Debian packages must be installed first (rspamd, " +
    'redis-server; spamassassin, spamd, spamc); if one is missing, the error names it and nothing changes. A filter that ' +
    'should run and does not shows in scope:check; cpcmd converge starts it.',
  usage: 'spamassassin | rspamd | false',
  examples: [
    'cpcmd scope:set mail.spam-filter rspamd',
    'cpcmd scope:set mail.spam-filter spamassassin',
    'cpcmd scope:set mail.spam-filter false',
    'cpcmd scope:get mail.spam-filter',
  ],
  schema: Filter,
  vars: ['spamfilter'],
  parseArgs(args) {
    if (args.length !== 1) throw new ScopeInputError('mail.spam-filter takes one of spamassassin, rspamd or false');
    return args[0] as never;
  },
  async toVars(value, ctx) {
    await requirePostfix(ctx);
    return { spamfilter: value };
  },
  async get(ctx) {
    const active = await activeFilters(ctx);
    if (active.spamassassin) return 'spamassassin';
    return active.rspamd === 'filter' ? 'rspamd' : false;
  },
});

export const piggybackScope = defineScope<boolean>({
  name: 'mail.rspamd-piggyback',
  summary: 'rspamd beside SpamAssassin: SpamAssassin filters, rspamd learns passively and serves as policy milter',
  help:
    "true sets spamfilter=spamassassin and rspamd_enabled=true: SpamAssassin filters after the queue, rspamd's milter runs " +
    'before it without refusing anything (it adds its headers, and signs DKIM for the domains mail.dkim names), and every ' +
    "message SpamAssassin classifies is fed to rspamd's learner as spam or ham (rspamd keeps it in Redis; `rspamc stat` " +
    'shows the counts). false sets rspamd_enabled=false and leaves spamfilter as it is. rspamd, redis-server, spamassassin, ' +
    'spamd and spamc must be installed.',
  usage: 'true | false',
  examples: ['cpcmd scope:set mail.rspamd-piggyback true', 'cpcmd scope:get mail.rspamd-piggyback'],
  schema: z.boolean(),
  vars: ['spamfilter', 'rspamd_enabled'],
  parseArgs(args) {
    return onOff(args, 'mail.rspamd-piggyback');
  },
  async toVars(on, ctx) {
    await requirePostfix(ctx);
    return on ? { spamfilter: 'spamassassin', rspamd_enabled: true } : { rspamd_enabled: false };
  },
  async get(ctx) {
    const active = await activeFilters(ctx);
    return active.spamassassin && active.rspamd === 'passive';
  },
});
