/**
 * Authenticated submission: the 587 service (STARTTLS required, then a login) and logins on 25,
 * both checked by Dovecot's auth service. The reference docs want every local client on 25 or
 * 587 to log in (an audit trail of who sent what) unless postfix_relay_mynetworks says the
 * network may relay without one; this is what lets a client log in at all. scoped configures only
 * Dovecot's auth listener for Postfix: who may log in (the passdb) is the admin's.
 */
import path from 'node:path';
import {
  type Change,
  type Endpoint,
  MASTER_CF,
  type PlanContext,
  type ScopeContext,
  type VarValues,
  defineScope,
  defineUnit,
  defineVar,
  managedBlock,
  masterBlockChange,
  masterCfProblem,
  z,
} from '@scoped/sdk';
import { MAIN_CF, onOff, requirePostfix } from './configure-postfix.js';
import { LOCAL_CLEANUP } from './srs.js';

/** The master.cf block of the submission service. */
export const SUBMISSION_BLOCK = 'submission';
/** The Dovecot file scoped writes: the auth listener Postfix asks. Debian's dovecot.conf reads conf.d/*.conf. */
export const DOVECOT_AUTH_CONF = '/etc/dovecot/conf.d/99-scoped-postfix-auth.conf';
const DOVECOT_CONF = '/etc/dovecot/dovecot.conf';
/** The first line of every Dovecot file scoped writes. */
const OWN_MARK = '# scoped:';
const own = (text: string | null): boolean => text?.startsWith(OWN_MARK) ?? false;

/** Where smtpd asks Dovecot, relative to Postfix's queue directory (smtpd may run chrooted there). */
const SASL_PATH = 'private/auth';

export const postfixSubmission = defineVar({
  name: 'postfix_submission',
  description: "The submission service on 587 (STARTTLS required) and logins on 25, checked by Dovecot's auth service",
  schema: z.boolean(),
  default: false,
});

/** main.cf: logins on 25 too, through Dovecot, never before STARTTLS. */
const MAIN_PARAMS = {
  smtpd_sasl_auth_enable: 'yes',
  smtpd_sasl_type: 'dovecot',
  smtpd_sasl_path: SASL_PATH,
  smtpd_tls_auth_only: 'yes',
} as const;

/** The main.cf parameters this unit owns (postfix_custom_config may not set them). */
export const SUBMISSION_PARAMS = Object.keys(MAIN_PARAMS);

/** Who may send on 587: logged-in clients, and the network too when postfix_relay_mynetworks says so. */
export function submissionRestrictions(relayMynetworks: boolean): string {
  return relayMynetworks ? 'permit_mynetworks,permit_sasl_authenticated,reject' : 'permit_sasl_authenticated,reject';
}

/** The master.cf lines of the submission service: on `/` Debian's `submission` (587, every interface), elsewhere its own loopback endpoint. */
export function submissionLines(service: string, relayMynetworks: boolean, srs = false): string[] {
  const who = submissionRestrictions(relayMynetworks);
  return [
    `${service} inet n       -       y       -       -       smtpd`,
    '  -o syslog_name=postfix/submission',
    '  -o smtpd_tls_security_level=encrypt',
    '  -o smtpd_tls_auth_only=yes',
    '  -o smtpd_sasl_auth_enable=yes',
    '  -o smtpd_sasl_type=dovecot',
    `  -o smtpd_sasl_path=${SASL_PATH}`,
    `  -o smtpd_client_restrictions=${who}`,
    `  -o smtpd_relay_restrictions=${who}`,
    '  -o milter_macro_daemon_name=ORIGINATING',
    // Mail a user sends here originates on this server: with SRS on, it goes through mail.srs's cleanup, which does not rewrite senders.
    ...(srs ? [`  -o cleanup_service_name=${LOCAL_CLEANUP}`] : []),
  ];
}

/** Dovecot's auth listener for Postfix, in Postfix's queue directory, for Postfix's user only. */
export function dovecotAuthConf(queueDirectory: string, owner: string): string {
  return [
    `${OWN_MARK} Dovecot's auth listener for Postfix (managed by scoped; do not edit)`,
    '# Postfix asks here whether a login is good (smtpd_sasl_type = dovecot, smtpd_sasl_path = private/auth);',
    '# who may log in is the passdb configured elsewhere in Dovecot.',
    'service auth {',
    `  unix_listener ${path.posix.join(queueDirectory, SASL_PATH)} {`,
    '    mode = 0660',
    `    user = ${owner}`,
    `    group = ${owner}`,
    '  }',
    '}',
    '',
  ].join('\n');
}

interface Observed {
  present: boolean;
  root: string;
  params: Map<string, string>;
  masterCf: string | null;
  authConf: string | null;
  dovecotConf: string | null;
  dovecot(): Promise<{ installed: boolean; running: boolean }>;
  endpoint(): Promise<Endpoint>;
}

/** A path as Postfix reads it, seen inside the root: on a sandbox root main.cf names host paths under the root. */
function inRoot(root: string, p: string): string {
  return root !== '/' && p.startsWith(`${root.replace(/\/$/, '')}/`) ? p.slice(root.replace(/\/$/, '').length) : p;
}

async function observe({ system }: PlanContext): Promise<Observed> {
  let dovecot: Promise<{ installed: boolean; running: boolean }> | undefined;
  let endpoint: Promise<Endpoint> | undefined;
  const [present, params, masterCf, authConf, dovecotConf] = await Promise.all([
    system.stat(MAIN_CF).then((s) => s !== null),
    system.postfix.mainCf(),
    system.readFile(MASTER_CF),
    system.readFile(DOVECOT_AUTH_CONF),
    system.readFile(DOVECOT_CONF),
  ]);
  return {
    present,
    root: system.root,
    params,
    masterCf,
    authConf,
    dovecotConf,
    dovecot: () =>
      (dovecot ??= (async () => {
        const installed = await system.services.installed('dovecot');
        return { installed, running: installed && (await system.services.running('dovecot')) };
      })()),
    // Asked only when the service is wanted: on a sandbox root the first ask chooses the port.
    endpoint: () => (endpoint ??= system.services.endpoint('postfix.submission')),
  };
}

const queueDirectory = (o: Observed) => o.params.get('queue_directory') ?? '/var/spool/postfix';
const mailOwner = (o: Observed) => o.params.get('mail_owner') ?? 'postfix';
const serviceName = (o: Observed, e: Endpoint) => (o.root === '/' ? 'submission' : `${e.host}:${e.port}`);

/** The certificate files smtpd's STARTTLS uses, as main.cf names them (none: STARTTLS cannot be offered). */
function certificateFiles(params: Map<string, string>): string[] {
  const chain = (params.get('smtpd_tls_chain_files') ?? '').split(/[\s,]+/).filter(Boolean);
  if (chain.length) return chain;
  const cert = params.get('smtpd_tls_cert_file') ?? '';
  if (cert === '') return [];
  const key = params.get('smtpd_tls_key_file') ?? '';
  return key === '' || key === '$smtpd_tls_cert_file' ? [cert] : [cert, key];
}

/** An operator's service on the submission port, outside scoped's block (two listeners on one port: Postfix would fail to start it). */
function foreignSubmission(masterCf: string, service: string): string | undefined {
  const ours = new Set(managedBlock(masterCf, SUBMISSION_BLOCK) ?? []);
  const names = new Set([service, 'submission', '587']);
  return masterCf.split('\n').find((l) => {
    if (ours.has(l) || /^\s|^#/.test(l)) return false;
    const [name, type] = l.split(/\s+/);
    return type === 'inet' && name !== undefined && (names.has(name) || names.has(name.slice(name.lastIndexOf(':') + 1)));
  });
}

export const submissionUnit = defineUnit<Observed>({
  name: 'mail/submission',
  description: "The submission service on 587 and logins on 25 through Dovecot's auth service, and Dovecot's auth listener for Postfix",
  reads: ['postfix_submission', 'postfix_relay_mynetworks', 'postsrsd_enabled'],
  timeoutMs: 60_000,

  async validate(vars, ctx) {
    if (vars.postfix_submission !== true) return undefined;
    const o = await observe(ctx);
    if (!o.present) return undefined;
    if (!(await o.dovecot()).installed)
      return "Dovecot is not installed: Postfix checks logins through Dovecot's auth service. Install it first (apt-get install dovecot-core), then set mail.submission true again";
    const certs = certificateFiles(o.params);
    if (!certs.length)
      return (
        'main.cf names no certificate for STARTTLS (smtpd_tls_cert_file), and the submission service requires STARTTLS before a login: ' +
        'point smtpd_tls_cert_file and smtpd_tls_key_file at a certificate and its key (Debian: apt-get install ssl-cert makes ' +
        '/etc/ssl/certs/ssl-cert-snakeoil.pem and /etc/ssl/private/ssl-cert-snakeoil.key), then set mail.submission true again'
      );
    for (const file of certs) {
      if (file.includes('$')) continue;
      if ((await ctx.system.stat(inRoot(o.root, file))) === null)
        return `main.cf names ${file} for STARTTLS, and it does not exist: make the certificate (or point smtpd_tls_cert_file and smtpd_tls_key_file at one), then set mail.submission true again`;
    }
    const type = o.params.get('smtpd_sasl_type');
    if (type && type !== 'dovecot')
      return `main.cf checks logins with ${type} (smtpd_sasl_type = ${type}), and scoped would switch them to Dovecot: remove smtpd_sasl_type (postconf -X smtpd_sasl_type) if Dovecot should check them, then set mail.submission true again`;
    if (o.masterCf === null) return `${MASTER_CF} is missing: reinstall Postfix's master.cf, then set mail.submission true again`;
    const problem = masterCfProblem(o.masterCf, SUBMISSION_BLOCK);
    if (problem) return problem;
    const theirs = foreignSubmission(o.masterCf, serviceName(o, await o.endpoint()));
    if (theirs)
      return `${MASTER_CF} already runs a submission service scoped did not write (${JSON.stringify(theirs.trim())}): comment it out (and its -o lines), then set mail.submission true again`;
    if (o.authConf !== null && !own(o.authConf))
      return `${DOVECOT_AUTH_CONF} holds settings scoped did not write, and scoped would replace it: move them to another file in conf.d, then set mail.submission true again`;
    const failed = await ctx.system.services.checkConfig('dovecot');
    if (failed) return `Dovecot's configuration does not pass its own check, so the submission service was not switched on: ${failed}`;
    return undefined;
  },

  observe,

  async plan(vars: VarValues, o) {
    if (!o.present) return [];
    const want = vars.postfix_submission === true;
    const changes: Change[] = [];
    const dovecot = want || own(o.authConf) ? await o.dovecot() : undefined;

    const conf = want ? dovecotAuthConf(queueDirectory(o), mailOwner(o)) : null;
    let confChanged = false;
    if (conf !== null && o.authConf !== conf && (o.authConf === null || own(o.authConf))) {
      changes.push({ kind: 'file', path: DOVECOT_AUTH_CONF, content: conf, mode: 0o644, current: o.authConf, var: 'postfix_submission' });
      confChanged = true;
    } else if (conf === null && own(o.authConf)) {
      changes.push({ kind: 'file.remove', path: DOVECOT_AUTH_CONF, current: o.authConf, var: 'postfix_submission' });
      confChanged = true;
    }

    let postfixChanged = false;
    const lines = want ? submissionLines(serviceName(o, await o.endpoint()), vars.postfix_relay_mynetworks === true, vars.postsrsd_enabled === true) : null;
    const master = masterBlockChange(o.masterCf, SUBMISSION_BLOCK, lines, 'postfix_submission');
    if (master) {
      changes.push(master);
      postfixChanged = true;
    }

    // Taken away only as scoped set them: an operator's own SASL settings stay when the service goes.
    const removing = !want && (own(o.authConf) || (o.masterCf !== null && managedBlock(o.masterCf, SUBMISSION_BLOCK) !== null));
    for (const [param, value] of Object.entries(MAIN_PARAMS)) {
      const current = o.params.get(param) ?? null;
      const target = want ? value : removing && current === value ? null : current;
      if (current !== target) {
        changes.push({ kind: 'postconf', param, value: target, current, var: 'postfix_submission' });
        postfixChanged = true;
      }
    }

    // Dovecot runs while it checks logins; a Dovecot of scoped's own (a sandbox root's) stops with the service, the admin's IMAP server only reloads.
    if (want && dovecot?.installed && !dovecot.running) changes.push({ kind: 'service', service: 'dovecot', action: 'start', var: 'postfix_submission' });
    else if (confChanged && dovecot?.running) {
      const ownDovecot = own(o.dovecotConf);
      changes.push({ kind: 'service', service: 'dovecot', action: !want && ownDovecot ? 'stop' : 'reload' });
    }
    if (postfixChanged) changes.push({ kind: 'service', service: 'postfix', action: 'reload' });
    return changes;
  },
});

export const submissionScope = defineScope<boolean>({
  name: 'mail.submission',
  summary: "Authenticated submission on 587 (STARTTLS required) and logins on 25, checked by Dovecot's auth service",
  help:
    'true runs the submission service on port 587 (a marked block of master.cf): STARTTLS is required, and AUTH is offered only ' +
    "after it; logins are checked by Dovecot's auth service (smtpd_sasl_type=dovecot, smtpd_sasl_path=private/auth), and only " +
    'logged-in clients may send there. Logins work on 25 too, after STARTTLS (smtpd_sasl_auth_enable, smtpd_tls_auth_only in ' +
    'main.cf). postfix_relay_mynetworks decides whether clients in mynetworks (127.0.0.1 included) may relay without a login, ' +
    'on 25 and on 587: false (the default) makes every local program log in, so each message has an audit trail; true lets ' +
    'them relay unauthenticated. postfix_add_sasl_auth_header records the login name in the Received header. scoped writes ' +
    "only Dovecot's auth listener for Postfix (/etc/dovecot/conf.d/99-scoped-postfix-auth.conf) and runs Dovecot; who may log " +
    "in is Dovecot's passdb, which stays the admin's (Debian's default checks system users through PAM). Dovecot " +
    '(apt-get install dovecot-core) and a certificate named by smtpd_tls_cert_file and smtpd_tls_key_file must exist; ' +
    'otherwise the error says which and nothing changes. false takes the service, the listener file and the main.cf ' +
    'settings scoped made away again.',
  usage: 'true | false',
  examples: [
    'cpcmd scope:set mail.submission true',
    'cpcmd scope:set cp.bootstrapper postfix_relay_mynetworks false',
    'cpcmd scope:set cp.bootstrapper postfix_add_sasl_auth_header true',
    'cpcmd scope:set mail.submission false',
    'cpcmd scope:get mail.submission',
  ],
  schema: z.boolean(),
  vars: ['postfix_submission'],
  parseArgs(args) {
    return onOff(args, 'mail.submission');
  },
  async toVars(on, ctx: ScopeContext) {
    await requirePostfix(ctx);
    return { postfix_submission: on };
  },
  async get(ctx) {
    const master = await ctx.system.readFile(MASTER_CF);
    return master !== null && masterCfProblem(master, SUBMISSION_BLOCK) === null && managedBlock(master, SUBMISSION_BLOCK) !== null;
  },
});
