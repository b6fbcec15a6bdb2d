/**
 * The spam filters in Postfix. rspamd is a before-queue milter: spam is refused during SMTP, so
 * the sender's server bounces it. SpamAssassin works after the queue, as the reference docs
 * describe (a before-queue SpamAssassin delays every connection too long): Postfix hands each
 * message to spamd through a pipe service in master.cf and takes the marked message back on a
 * loopback listener. Beside SpamAssassin (piggyback), or when it only signs DKIM, rspamd's milter
 * refuses nothing, and with piggyback it learns from SpamAssassin's verdicts.
 */
import path from 'node:path';
import {
  type Change,
  type Endpoint,
  type EndpointName,
  MASTER_CF,
  type PlanContext,
  type VarValues,
  defineUnit,
  masterBlockChange,
  masterCfProblem,
} from '@scoped/sdk';
import { MAIN_CF } from './configure-postfix.js';
import { RSPAMD_FILES, type RspamdFile, type RspamdMode, ownFile, rspamdFiles } from './rspamd-conf.js';
import { FILTER_SERVICE, SPAMC_FILTER, SPAMC_FILTER_SCRIPT } from './spamc-filter.js';

/** The content_filter value that sends mail through SpamAssassin. */
export const CONTENT_FILTER = `${FILTER_SERVICE}:`;

/** The programs the filters need inside the root, and the Debian package that brings each. */
const PROGRAMS = { spamc: { path: '/usr/bin/spamc', package: 'spamc' }, rspamc: { path: '/usr/bin/rspamc', package: 'rspamd' } } as const;

/** The services scoped runs for the filters (Debian's unit names). */
const SERVICES = ['rspamd', 'spamd', 'redis-server'] as const;
type Service = (typeof SERVICES)[number];
const PACKAGE: Record<Service, string> = { rspamd: 'rspamd', spamd: 'spamd spamassassin', 'redis-server': 'redis-server' };

const ENDPOINTS: EndpointName[] = ['rspamd.milter', 'rspamd.normal', 'rspamd.controller', 'redis', 'spamd', 'postfix.filter-return'];

/** What the vars ask of the filters. */
export interface Wanted {
  spamassassin: boolean;
  /** rspamd's part: none, the filter, or passive (beside SpamAssassin or for DKIM signing). */
  rspamd: RspamdMode | null;
  /** rspamd learns from SpamAssassin's verdicts (piggyback). */
  learn: boolean;
}

/** Whether any domain signs DKIM (mail.dkim's var; absent where that scope is not loaded). */
function signsDkim(vars: VarValues): boolean {
  const domains = vars.dkim_domains;
  return domains !== null && typeof domains === 'object' && Object.keys(domains).length > 0;
}

export function wanted(vars: VarValues): Wanted {
  const spamassassin = vars.spamfilter === 'spamassassin';
  const rspamd = vars.spamfilter === 'rspamd' ? 'filter' : vars.rspamd_enabled === true || signsDkim(vars) ? 'passive' : null;
  return { spamassassin, rspamd, learn: spamassassin && vars.rspamd_enabled === true };
}

/** The milter address Postfix gets for rspamd: the var when set, rspamd's own endpoint otherwise. */
export function milterAddress(vars: VarValues, milter: Endpoint): string {
  return typeof vars.rspamd_milter === 'string' && vars.rspamd_milter !== '' ? vars.rspamd_milter : `inet:${milter.host}:${milter.port}`;
}

interface Observed {
  present: boolean;
  root: string;
  params: Map<string, string>;
  masterCf: string | null;
  /** Each file scoped may write, with its text now (null when absent). */
  files: Record<RspamdFile | 'script', string | null>;
  /** Which daemons are installed and run, asked for only where scoped has a filter to run or to stop. */
  daemons(): Promise<Daemons>;
  /** The filters' endpoints, asked for only where a filter is wanted (a sandbox root chooses its ports on the first ask). */
  endpoints(): Promise<Endpoints>;
}

type Endpoints = Record<EndpointName, Endpoint>;

interface Daemons {
  installed: Record<Service | keyof typeof PROGRAMS, boolean>;
  running: Record<Service, boolean>;
}

const FILES: Record<RspamdFile | 'script', string> = { ...RSPAMD_FILES, script: SPAMC_FILTER };

async function observe({ system }: PlanContext): Promise<Observed> {
  const files = {} as Observed['files'];
  for (const [name, file] of Object.entries(FILES)) files[name as keyof typeof FILES] = await system.readFile(file);
  let daemons: Promise<Daemons> | undefined;
  const look = async (): Promise<Daemons> => {
    const installed = {} as Daemons['installed'];
    const running = {} as Daemons['running'];
    for (const s of SERVICES) {
      installed[s] = await system.services.installed(s);
      running[s] = installed[s] && (await system.services.running(s));
    }
    for (const [name, p] of Object.entries(PROGRAMS)) installed[name as keyof typeof PROGRAMS] = (await system.stat(p.path)) !== null;
    return { installed, running };
  };
  let endpoints: Promise<Endpoints> | undefined;
  const ask = async () => {
    const out = {} as Endpoints;
    for (const e of ENDPOINTS) out[e] = await system.services.endpoint(e);
    return out;
  };
  return {
    present: (await system.stat(MAIN_CF)) !== null,
    root: system.root,
    params: await system.postfix.mainCf(),
    masterCf: await system.readFile(MASTER_CF),
    files,
    daemons: () => (daemons ??= look()),
    endpoints: () => (endpoints ??= ask()),
  };
}

/** The master.cf lines of the SpamAssassin filter: the pipe to spamc, and the listener that takes the marked mail back. */
export function filterServiceLines(root: string, endpoints: Endpoints, learn: boolean): string[] {
  const host = (p: string) => path.join(root, p);
  const at = (e: Endpoint) => `${e.host}:${e.port}`;
  const back = endpoints['postfix.filter-return'];
  const learning = learn ? ` --rspamc ${host(PROGRAMS.rspamc.path)} --controller ${at(endpoints['rspamd.controller'])}` : '';
  return [
    `${FILTER_SERVICE} unix -       n       n       -       10      pipe`,
    '  flags=Rq user=debian-spamd null_sender=',
    `  argv=${host(SPAMC_FILTER)} --spamc ${host(PROGRAMS.spamc.path)} --spamd ${at(endpoints.spamd)} --return ${at(back)}${learning} -f \${sender} -- \${recipient}`,
    `${at(back)} inet n       -       n       -       -       smtpd`,
    `  -o syslog_name=postfix/${FILTER_SERVICE}`,
    '  -o content_filter=',
    '  -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks,no_milters',
    '  -o smtpd_milters=',
    '  -o non_smtpd_milters=',
    '  -o mynetworks=127.0.0.0/8',
    '  -o smtpd_client_restrictions=permit_mynetworks,reject',
    '  -o smtpd_helo_restrictions=',
    '  -o smtpd_sender_restrictions=',
    '  -o smtpd_relay_restrictions=permit_mynetworks,reject',
    '  -o smtpd_recipient_restrictions=permit_mynetworks,reject',
    '  -o smtpd_data_restrictions=',
    '  -o smtpd_tls_security_level=none',
    '  -o smtpd_sasl_auth_enable=no',
  ];
}

/** The files scoped wants and their content; a file of ours not named here goes. */
function desiredFiles(w: Wanted, redis: boolean, e: Endpoints): Partial<Record<RspamdFile | 'script', { content: string; mode: number }>> {
  const out: Partial<Record<RspamdFile | 'script', { content: string; mode: number }>> = {};
  if (w.rspamd) {
    const store = redis ? { redis: e.redis } : {};
    const files = rspamdFiles(w.rspamd, { milter: e['rspamd.milter'], normal: e['rspamd.normal'], controller: e['rspamd.controller'], ...store });
    for (const [name, content] of Object.entries(files)) out[name as RspamdFile] = { content, mode: 0o644 };
  }
  if (w.spamassassin) out.script = { content: SPAMC_FILTER_SCRIPT, mode: 0o755 };
  return out;
}

/** A file of the operator's where scoped wants to write one (scoped never overwrites those). */
function foreignFile(w: Wanted, o: Observed, redis: boolean, e: Endpoints): string | undefined {
  const names = Object.keys(desiredFiles(w, redis, e)) as (keyof typeof FILES)[];
  const theirs = names.find((n) => o.files[n] !== null && !ownFile(o.files[n]!));
  return theirs && FILES[theirs];
}

export const spamFilterUnit = defineUnit<Observed>({
  name: 'mail/spam-filter',
  description: 'The spam filters in Postfix (rspamd as milter, SpamAssassin after the queue), their config and the daemons that run them',
  reads: ['spamfilter', 'rspamd_enabled', 'rspamd_milter', 'dkim_domains'],
  // rspamd's first start compiles its pattern cache (about 10 s) before it answers.
  timeoutMs: 120_000,

  async validate(vars, ctx) {
    const w = wanted(vars);
    const need: Service[] = [];
    if (w.rspamd) need.push('rspamd');
    if (w.spamassassin) need.push('spamd');
    if (w.learn) need.push('redis-server');
    const o = await observe(ctx);
    if (!need.length) return undefined;
    const { installed } = await o.daemons();
    for (const s of need) {
      if (!installed[s])
        return `${s} is not installed: install it first (apt-get install ${PACKAGE[s]}), then set the filter again${s === 'redis-server' ? ' (rspamd keeps what it learns in Redis)' : ''}`;
    }
    if (w.spamassassin && !installed.spamc) return 'spamc is not installed: install it first (apt-get install spamc), then set the filter again';
    if (w.learn && !installed.rspamc) return 'rspamc is not installed: install it first (apt-get install rspamd), then set the filter again';
    const problem = o.masterCf !== null && masterCfProblem(o.masterCf);
    if (w.spamassassin && problem) return problem;
    // Another content filter (amavis) would lose its place, and nothing would bring it back.
    const other = o.params.get('content_filter');
    if (w.spamassassin && other && other !== CONTENT_FILTER)
      return `main.cf hands mail to another content filter (content_filter = ${other}), and SpamAssassin would take its place: have that filter call SpamAssassin, use mail.spam-filter rspamd (a milter, beside it), or remove it (postconf -X content_filter), then set the filter again`;
    const foreign = foreignFile(w, o, installed['redis-server'], await o.endpoints());
    if (foreign)
      return `${foreign} holds settings scoped did not write, and scoped would replace it: move them to rspamd's override.d (or remove the file), then set the filter again`;
    for (const s of need) {
      const failed = await ctx.system.services.checkConfig(s);
      if (failed) return `${s}'s configuration does not pass its own check, so the filter was not switched: ${failed}`;
    }
    return undefined;
  },

  observe,

  async plan(vars, o) {
    if (!o.present) return [];
    const w = wanted(vars);
    const changes: Change[] = [];
    const wants = w.rspamd !== null || w.spamassassin;
    const e = wants ? await o.endpoints() : undefined;
    const ours = Object.values(o.files).some(ownFile);
    const { installed, running } = wants || ours ? await o.daemons() : { installed: undefined, running: undefined };

    const desired = e && installed ? desiredFiles(w, installed['redis-server'], e) : {};
    let rspamdConfChanged = false;
    for (const name of Object.keys(FILES) as (keyof typeof FILES)[]) {
      const current = o.files[name];
      const want = desired[name];
      if (want && current !== want.content) {
        if (current !== null && !ownFile(current)) continue;
        changes.push({ kind: 'file', path: FILES[name], content: want.content, mode: want.mode, current, var: 'spamfilter' });
        if (name !== 'script') rspamdConfChanged = true;
      } else if (!want && ownFile(current)) {
        changes.push({ kind: 'file.remove', path: FILES[name], current, var: 'spamfilter' });
      }
    }

    const master = masterBlockChange(o.masterCf, 'spam filter', w.spamassassin && e ? filterServiceLines(o.root, e, w.learn) : null, 'spamfilter');
    if (master) changes.push(master);
    const masterChanged = master !== undefined;

    const milter = w.rspamd && e ? milterAddress(vars, e['rspamd.milter']) : null;
    const currentFilter = o.params.get('content_filter') ?? null;
    const params = new Map<string, string | null>([
      ['smtpd_milters', milter],
      ['non_smtpd_milters', milter ? '$smtpd_milters' : null],
      ['milter_default_action', milter ? 'accept' : null],
      // Another content filter (the operator's) stays unless SpamAssassin takes its place.
      ['content_filter', w.spamassassin ? CONTENT_FILTER : currentFilter === CONTENT_FILTER ? null : currentFilter],
    ]);
    let mainChanged = false;
    for (const [param, value] of params) {
      const current = o.params.get(param) ?? null;
      if (current !== value) {
        changes.push({ kind: 'postconf', param, value, current, var: param === 'smtpd_milters' && vars.rspamd_milter ? 'rspamd_milter' : 'spamfilter' });
        mainChanged = true;
      }
    }

    // What scoped configured and no longer wants stops: a daemon of the operator's, configured without scoped, is left alone.
    const removes = (n: keyof typeof FILES) => changes.some((c) => c.kind === 'file.remove' && c.path === FILES[n]);
    if (!w.rspamd && running?.rspamd && removes('proxy')) changes.push({ kind: 'service', service: 'rspamd', action: 'stop' });
    if (!w.rspamd && running?.['redis-server'] && removes('redis')) changes.push({ kind: 'service', service: 'redis-server', action: 'stop' });
    if (!w.spamassassin && running?.spamd && removes('script')) changes.push({ kind: 'service', service: 'spamd', action: 'stop' });

    // What should run and does not starts, also when nothing else changed: that is how converge restarts a dead filter.
    if (w.rspamd && installed?.['redis-server'] && !running?.['redis-server'])
      changes.push({ kind: 'service', service: 'redis-server', action: 'start', var: 'spamfilter' });
    if (w.rspamd && installed?.rspamd && !running?.rspamd) changes.push({ kind: 'service', service: 'rspamd', action: 'start', var: 'spamfilter' });
    else if (w.rspamd && rspamdConfChanged) changes.push({ kind: 'service', service: 'rspamd', action: 'reload' });
    if (w.spamassassin && installed?.spamd && !running?.spamd) changes.push({ kind: 'service', service: 'spamd', action: 'start', var: 'spamfilter' });

    if (mainChanged || masterChanged) changes.push({ kind: 'service', service: 'postfix', action: 'reload' });
    return changes;
  },
});
