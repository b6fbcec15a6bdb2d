import { type Change, type PlanContext, type ScopeContext, ScopeInputError, type VarValues, defineUnit } from '@scoped/sdk';
import type { SmartHost } from './vars.js';
import { isOwnName, relayName } from './relay.js';

export const MAIN_CF = '/etc/postfix/main.cf';

/** Why a mail scope is refused where Postfix is not configured (rather than store a value nothing uses). */
export const noPostfix = (root: string): string =>
  `Postfix is not configured under ${root} (no etc/postfix/main.cf): install it first (apt-get install postfix)`;

/** The mail scopes change Postfix: refuse them where Postfix is not configured. */
export async function requirePostfix(ctx: Pick<ScopeContext, 'system'>): Promise<void> {
  if ((await ctx.system.stat(MAIN_CF)) === null) throw new ScopeInputError(noPostfix(ctx.system.root));
}

/** The one argument of a `true | false` scope. */
export function onOff(args: readonly unknown[], scope: string): boolean {
  if (args.length !== 1 || typeof args[0] !== 'boolean') throw new ScopeInputError(`${scope} takes true or false`);
  return args[0];
}
/** The SASL credentials map, under Postfix's config dir. */
export const AUTH_MAP = '/etc/postfix/smarthost-auth';
/** The names postfix_custom_config set last time, so a name taken out of it is unset again. */
export const CUSTOM_KEYS = '/etc/postfix/scoped-custom-keys';

const RELAY_WITH_MYNETWORKS = 'permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination';
const RELAY_AUTHENTICATED = 'permit_sasl_authenticated, defer_unauth_destination';

/** Which var each owned parameter serves, for drift reports; postfix_custom_config may not override them. */
export const PARAM_VARS: Record<string, string> = {
  relayhost: 'postfix_smarthost',
  smtp_sasl_auth_enable: 'postfix_smarthost',
  smtp_sasl_password_maps: 'postfix_smarthost',
  smtp_sasl_security_options: 'postfix_smarthost',
  smtp_tls_security_level: 'postfix_smtp_tls_security_level',
  smtpd_sasl_authenticated_header: 'postfix_add_sasl_auth_header',
  smtpd_relay_restrictions: 'postfix_relay_mynetworks',
  myhostname: 'system_hostname',
  // mail/submission's (submission.ts): logins on 25 through Dovecot.
  smtpd_sasl_auth_enable: 'postfix_submission',
  smtpd_sasl_type: 'postfix_submission',
  smtpd_sasl_path: 'postfix_submission',
  smtpd_tls_auth_only: 'postfix_submission',
  // mail/srs's (srs.ts): the canonical maps through PostSRSd.
  sender_canonical_maps: 'postsrsd_enabled',
  sender_canonical_classes: 'postsrsd_enabled',
  recipient_canonical_maps: 'postsrsd_enabled',
  recipient_canonical_classes: 'postsrsd_enabled',
  // mail/transport's (transport.ts): relaylim's one connection per destination.
  relaylim_destination_concurrency_limit: 'mail_transports',
};

/** Parameters set beside the TLS level when it needs them (raw overrides of them are refused as outbound TLS anyway). */
const COMPANION_VARS: Record<string, string> = {
  smtp_dns_support_level: 'postfix_smtp_tls_security_level',
  smtp_tls_fingerprint_cert_match: 'postfix_smtp_tls_fingerprints',
  smtp_tls_fingerprint_digest: 'postfix_smtp_tls_fingerprints',
};

export interface PostfixObserved {
  /** Whether Postfix is configured under this root at all (main.cf exists). */
  present: boolean;
  params: Map<string, string>;
  auth: string | null;
  authMode: number | null;
  authMtime: number | null;
  dbMtime: number | null;
  customKeys: string | null;
  mapType: string;
  dbPath: string;
}

const smartHost = (vars: VarValues) => vars.postfix_smarthost as false | SmartHost;
const hasCredentials = (sh: false | SmartHost): sh is SmartHost => sh !== false && sh.username !== '';

/**
 * The TLS level an empty postfix_smtp_tls_security_level picks: encrypt when Postfix logs in to
 * a smart host (the password must never cross in the clear), may otherwise, with or without a
 * smart host (a relay without credentials does not need TLS forced on it).
 */
export const autoTlsLevel = (sh: false | SmartHost): string => (hasCredentials(sh) ? 'encrypt' : 'may');

/** The TLS level main.cf gives Postfix: unset or empty is none. */
export const tlsLevelOf = (params: ReadonlyMap<string, string>): string => (params.get('smtp_tls_security_level') ?? '').trim() || 'none';

/**
 * What each owned parameter means when main.cf does not set it (Postfix's built-in default),
 * so an unset parameter and one set to that default are the same. smtpd_relay_restrictions:
 * Postfix lets mynetworks relay by default at every compatibility level (at level 0 through
 * smtpd_recipient_restrictions).
 */
const UNSET: Record<string, string> = {
  relayhost: '',
  smtp_sasl_auth_enable: 'no',
  smtp_sasl_password_maps: '',
  smtp_sasl_security_options: 'noplaintext, noanonymous',
  smtp_tls_security_level: 'none',
  smtpd_sasl_authenticated_header: 'no',
  smtpd_relay_restrictions: RELAY_WITH_MYNETWORKS,
};

/** A value as Postfix reads it: commas and whitespace both separate list items; yes/no and TLS levels in any case. */
const words = (v: string) =>
  v
    .trim()
    .split(/[\s,]+/)
    .filter(Boolean)
    .join(' ');

/**
 * Whether main.cf's value already means what is wanted, so nothing is rewritten for a
 * difference of form: Debian writes `permit_mynetworks permit_sasl_authenticated
 * defer_unauth_destination` with spaces, `relayhost =` empty, and leaves the TLS level unset.
 */
export function sameParam(name: string, wanted: string | null, current: string | null): boolean {
  if (wanted === current) return true;
  if (!(name in UNSET)) return false;
  const norm = (v: string | null) => {
    const w = words(v ?? UNSET[name]!) || UNSET[name]!;
    return name === 'smtp_tls_security_level' || name.endsWith('_enable') || name.endsWith('_header') ? w.toLowerCase() : w;
  };
  return norm(wanted) === norm(current);
}

/**
 * The credentials map's entry for exactly this relayhost. Never another host's entry: a
 * credential is only ever sent to the host it was given for, so a relayhost changed by hand
 * has no credentials until they are given again.
 */
export function credentialsFor(authMap: string | null, host: string): { username: string; password: string } | undefined {
  const m = (authMap ?? '')
    .split('\n')
    .filter((l) => l.trim() && !l.startsWith('#'))
    .map((l) => /^(\S+)\s+([^:]*):(.*)$/.exec(l))
    .find((e) => e !== null && e[1] === host);
  return m ? { username: m[2]!, password: m[3]! } : undefined;
}

/** The smart host main.cf and the credentials map give Postfix now. */
export function observedSmartHost(params: ReadonlyMap<string, string>, authMap: string | null): false | SmartHost {
  const relayhost = (params.get('relayhost') ?? '').trim();
  if (relayhost === '') return false;
  const creds = credentialsFor(authMap, relayhost);
  return { host: relayhost, username: creds?.username ?? '', password: creds?.password ?? '' };
}

/**
 * The postfix_smtp_tls_security_level that keeps the system's TLS level with this smart host:
 * empty when the automatic choice is that level already, else the level itself.
 */
export function keptTlsLevel(params: ReadonlyMap<string, string>, sh: false | SmartHost): string {
  const level = tlsLevelOf(params);
  return level === autoTlsLevel(sh) ? '' : level;
}

/**
 * TLS levels at which Postfix may log in without TLS: none never encrypts, may and dane fall
 * back to plain text when the relay (or someone between) offers no STARTTLS, and the SASL
 * password would then cross the network in the clear.
 */
export const PLAINTEXT_LEVELS: readonly string[] = ['none', 'may', 'dane'];

/** Why credentials are refused at this TLS level (empty picks encrypt), or undefined. */
export function credentialsTlsProblem(sh: false | SmartHost, level: string): string | undefined {
  if (!hasCredentials(sh) || !PLAINTEXT_LEVELS.includes(level)) return undefined;
  return (
    `credentials are refused with TLS level ${level}: Postfix would log in without TLS whenever the relay, or someone between, ` +
    'offers no STARTTLS, and the password would cross the network in the clear. Set postfix_smtp_tls_security_level to encrypt ' +
    '(or dane-only, fingerprint, verify, secure), or give the smart host without USER PASS'
  );
}

/** The credentials map's text: one entry keyed by the relayhost exactly as main.cf names it. */
export function authMapText(sh: SmartHost): string {
  return `${sh.host} ${sh.username}:${sh.password}\n`;
}

/**
 * smtpd_relay_restrictions with postfix_relay_mynetworks applied: the var owns only whether
 * `permit_mynetworks` is in the list. A list that already agrees is kept as it is (unset too),
 * and one that does not gains or loses that one item, so the rest of an admin's own list
 * (reject_unauth_destination, a check_client_access) stays as written.
 */
export function relayRestrictions(mynetworks: boolean, current: string | null): string | null {
  const items = words(current ?? UNSET.smtpd_relay_restrictions!)
    .split(' ')
    .filter(Boolean);
  if (items.includes('permit_mynetworks') === mynetworks) return current;
  if (mynetworks) return ['permit_mynetworks', ...items].join(', ');
  const rest = items.filter((i) => i !== 'permit_mynetworks');
  return rest.length ? rest.join(', ') : RELAY_AUTHENTICATED;
}

/**
 * The main.cf parameters this unit owns and the value each should have (null: not set), given
 * what main.cf has now (`current`, for the relay restrictions: see relayRestrictions).
 */
export function desiredParams(vars: VarValues, mapType: string, current: ReadonlyMap<string, string> = new Map()): Map<string, string | null> {
  const sh = smartHost(vars);
  const creds = hasCredentials(sh);
  const level = vars.postfix_smtp_tls_security_level as string;
  const p = new Map<string, string | null>([
    ['relayhost', sh === false ? null : sh.host],
    ['smtp_sasl_auth_enable', creds ? 'yes' : null],
    ['smtp_sasl_password_maps', creds ? `${mapType}:$config_directory/smarthost-auth` : null],
    ['smtp_sasl_security_options', creds ? 'noanonymous' : null],
    ['smtp_tls_security_level', level || autoTlsLevel(sh)],
    ['smtpd_sasl_authenticated_header', vars.postfix_add_sasl_auth_header ? 'yes' : null],
    ['smtpd_relay_restrictions', relayRestrictions(vars.postfix_relay_mynetworks === true, current.get('smtpd_relay_restrictions') ?? null)],
  ]);
  const hostname = vars.system_hostname as string;
  if (hostname) p.set('myhostname', hostname);
  // What a level needs beside it; set only where a level needs it, else left as the admin has it.
  const effective = level || autoTlsLevel(sh);
  const policy = Object.values((vars.postfix_tls_policy as Record<string, { level: string }> | undefined) ?? {});
  if (effective.startsWith('dane') || policy.some((e) => e.level.startsWith('dane'))) p.set('smtp_dns_support_level', 'dnssec');
  const fingerprints = (vars.postfix_smtp_tls_fingerprints as string[] | undefined) ?? [];
  if (fingerprints.length) {
    p.set('smtp_tls_fingerprint_cert_match', fingerprints.join(', '));
    p.set('smtp_tls_fingerprint_digest', 'sha256');
  }
  return p;
}

/**
 * Why the credentials map is rebuilt, as the plan shows it. Credentials the caller just gave
 * (PlanContext.rewrite) are always 'credentials given', never 'credentials changed': the
 * reason must not say whether they equal the stored ones.
 */
function postmapReason(o: PostfixObserved, text: string, given: boolean): string {
  if (o.dbMtime === null) return 'database missing';
  if (given) return 'credentials given';
  return o.auth !== text ? 'credentials changed' : 'database older than its source';
}

export const configurePostfix = defineUnit<PostfixObserved>({
  name: 'mail/configure-postfix',
  description:
    'main.cf: smart host, SASL client and credentials map, TLS level (with DNSSEC for dane, fingerprints for fingerprint), relay restrictions, myhostname, custom parameters',
  reads: [
    'postfix_smarthost',
    'postfix_smtp_tls_security_level',
    'postfix_add_sasl_auth_header',
    'postfix_relay_mynetworks',
    'postfix_custom_config',
    'system_hostname',
    'postfix_smtp_tls_fingerprints',
    'postfix_tls_policy',
  ],

  async validate(vars, { system }) {
    const sh = smartHost(vars);
    if (vars.postfix_smtp_tls_security_level === 'fingerprint' && !((vars.postfix_smtp_tls_fingerprints as string[] | undefined) ?? []).length)
      return (
        'TLS level fingerprint needs the fingerprints to accept: set them first with cpcmd scope:set cp.bootstrapper ' +
        'postfix_smtp_tls_fingerprints "\'AB:CD:…\'" (openssl x509 -noout -fingerprint -sha256 prints them)'
      );
    const weak = credentialsTlsProblem(sh, vars.postfix_smtp_tls_security_level as string);
    if (weak) return weak;
    // Either order: a smart host named as this machine, or a hostname set to the smart host's name.
    const relay = sh === false ? null : relayName(sh.host);
    const hostname = String(vars.system_hostname ?? '').toLowerCase();
    // A bare relay name is looked up by MX, whose hosts usually lie under it: /etc/hosts must not answer for one of them either.
    const underRelay = relay !== null && sh !== false && !sh.host.startsWith('[') && hostname.endsWith(`.${relay.toLowerCase()}`);
    if (relay !== null && (isOwnName(relay, hostname) || underRelay)) {
      return (
        `the smart host ${relay} and this machine's hostname would be the same name, which /etc/hosts maps to this machine ` +
        '(127.0.1.1): Postfix could hand the relay login to whoever listens here, and would loop its mail. ' +
        'Give the relay its own name, or its address in brackets such as [192.0.2.1]:587, or pick another hostname'
      );
    }
    const custom = vars.postfix_custom_config as Record<string, string>;
    const unknown: string[] = [];
    for (const name of Object.keys(custom)) if (!(await system.postfix.isKnownParameter(name))) unknown.push(name);
    if (unknown.length) return `postfix_custom_config names parameters Postfix does not know: ${unknown.join(', ')} (postconf -d lists the known ones)`;
    return undefined;
  },

  /**
   * What main.cf and the credentials map say now, as the vars' values (see UnitDef.adopt): the
   * relay restrictions as whether they let mynetworks relay (any list, an admin's own too), the
   * TLS level only when it differs from what an empty var picks, and never a level the
   * credentials would be refused with.
   */
  adopt(o) {
    if (!o.present) return {};
    const sh = observedSmartHost(o.params, o.auth);
    const out: Record<string, unknown> = {
      postfix_smarthost: sh,
      postfix_add_sasl_auth_header: sameParam('smtpd_sasl_authenticated_header', 'yes', o.params.get('smtpd_sasl_authenticated_header') ?? null),
    };
    const relay = o.params.get('smtpd_relay_restrictions') ?? null;
    out.postfix_relay_mynetworks = relayRestrictions(true, relay) === relay;
    const level = keptTlsLevel(o.params, sh);
    if (!credentialsTlsProblem(sh, level || autoTlsLevel(sh))) out.postfix_smtp_tls_security_level = level;
    return out;
  },

  async observe({ system }: PlanContext) {
    const mapType = await system.postfix.defaultMapType();
    const dbPath = await system.postfix.mapDatabase(AUTH_MAP);
    const [present, params, auth, authStat, dbStat, customKeys] = await Promise.all([
      system.stat(MAIN_CF).then((s) => s !== null),
      system.postfix.mainCf(),
      system.readFile(AUTH_MAP),
      system.stat(AUTH_MAP),
      system.stat(dbPath),
      system.readFile(CUSTOM_KEYS),
    ]);
    return {
      present,
      params,
      auth,
      authMode: authStat?.mode ?? null,
      authMtime: authStat?.mtimeMs ?? null,
      dbMtime: dbStat?.mtimeMs ?? null,
      customKeys,
      mapType,
      dbPath,
    };
  },

  plan(vars, o, ctx) {
    // No main.cf: Postfix is not set up under this root, so there is nothing to converge (the mail scopes refuse to set).
    if (!o.present) return [];
    const changes: Change[] = [];
    const sh = smartHost(vars);
    const desired = desiredParams(vars, o.mapType, o.params);
    const custom = vars.postfix_custom_config as Record<string, string>;
    const previousCustom = (o.customKeys ?? '').split('\n').filter((l) => /^[a-z][a-z0-9_]*$/.test(l));
    for (const name of previousCustom) if (!desired.has(name) && !(name in custom)) desired.set(name, null);
    for (const [name, value] of Object.entries(custom)) desired.set(name, value);

    let postfixChanged = false;
    for (const [param, value] of desired) {
      const current = o.params.get(param) ?? null;
      if (param in custom ? current === value : sameParam(param, value, current)) continue;
      changes.push({
        kind: 'postconf',
        param,
        value,
        current,
        var: param in custom ? 'postfix_custom_config' : (PARAM_VARS[param] ?? COMPANION_VARS[param] ?? 'postfix_custom_config'),
      });
      postfixChanged = true;
    }

    const keysText = Object.keys(custom).length ? `${Object.keys(custom).sort().join('\n')}\n` : null;
    if (keysText !== o.customKeys) {
      changes.push(
        keysText === null
          ? { kind: 'file.remove', path: CUSTOM_KEYS, current: o.customKeys, var: 'postfix_custom_config' }
          : { kind: 'file', path: CUSTOM_KEYS, content: keysText, mode: 0o644, current: o.customKeys, var: 'postfix_custom_config' },
      );
    }

    if (hasCredentials(sh)) {
      const text = authMapText(sh);
      // Credentials the caller just gave are written anew whether or not they match the map, so the plan cannot tell a right guess from a wrong one.
      const given = ctx.rewrite?.has('postfix_smarthost') ?? false;
      const rewrite = given || o.auth !== text || o.authMode !== 0o600;
      if (rewrite) changes.push({ kind: 'file', path: AUTH_MAP, content: text, mode: 0o600, current: o.auth, secret: true, var: 'postfix_smarthost' });
      const stale = o.dbMtime === null || (o.authMtime !== null && o.dbMtime < o.authMtime);
      if (given || o.auth !== text || stale) {
        changes.push({ kind: 'postmap', path: AUTH_MAP, reason: postmapReason(o, text, given), var: 'postfix_smarthost', secret: true });
        postfixChanged = true;
      }
    } else {
      if (o.auth !== null) changes.push({ kind: 'file.remove', path: AUTH_MAP, current: o.auth, secret: true, var: 'postfix_smarthost' });
      if (o.dbMtime !== null) changes.push({ kind: 'file.remove', path: o.dbPath, current: '(database)', secret: true, var: 'postfix_smarthost' });
      if (o.auth !== null || o.dbMtime !== null) postfixChanged = true;
    }

    if (postfixChanged) changes.push({ kind: 'service', service: 'postfix', action: 'reload' });
    return changes;
  },
});
