/**
 * mail.srs: the Sender Rewriting Scheme through PostSRSd. Postfix's cleanup asks postsrsd (two
 * tcp: lookup tables) to rewrite each envelope sender to an SRS0= address in the server's domain,
 * so a forward passes the next server's SPF check for that domain, and to turn a bounce to such
 * an address back into the original sender. As the reference docs want, only mail that arrives
 * over SMTP is rewritten: mail submitted on the server (sendmail, through pickup) goes through a
 * cleanup service of scoped's own that has no sender rewriting. The SRS secret (0600, root's) is
 * never shown.
 */
import { randomBytes } from 'node:crypto';
import {
  type Change,
  type Endpoint,
  MASTER_CF,
  type PlanContext,
  type VarValues,
  defineScope,
  defineUnit,
  defineVar,
  managedBlock,
  masterBlockChange,
  masterCfProblem,
  shellSettings,
  withShellSetting,
  z,
} from '@scoped/sdk';
import { MAIN_CF, noPostfix, onOff, requirePostfix } from './configure-postfix.js';

/** PostSRSd's settings, read by Debian's launcher (and by scoped where it runs postsrsd itself). */
export const SRS_DEFAULTS = '/etc/default/postsrsd';
/** The secret postsrsd signs with, unless its settings name another file (Debian's default). */
export const SRS_SECRET = '/etc/postsrsd.secret';
/** The cleanup service of mail submitted on the server: no sender rewriting. */
export const LOCAL_CLEANUP = 'scoped-srs-local';
/** scoped's master.cf block for SRS. */
const BLOCK = 'srs';

export const postsrsdEnabled = defineVar({
  name: 'postsrsd_enabled',
  description: 'Rewrite the envelope sender of mail forwarded from other servers with SRS (PostSRSd), and reverse bounces to those addresses',
  schema: z.boolean(),
  default: false,
});

const SENDER_CLASSES = 'envelope_sender';
const RECIPIENT_CLASSES = 'envelope_recipient,header_recipient';

/** The main.cf parameters SRS sets, for these postsrsd endpoints. */
export function srsParams(forward: Endpoint, reverse: Endpoint): Map<string, string> {
  return new Map([
    ['sender_canonical_maps', `tcp:${forward.host}:${forward.port}`],
    ['sender_canonical_classes', SENDER_CLASSES],
    ['recipient_canonical_maps', `tcp:${reverse.host}:${reverse.port}`],
    ['recipient_canonical_classes', RECIPIENT_CLASSES],
  ]);
}

/**
 * The domain SRS addresses are in: the server's hostname without its first label
 * (mail.example.com gives example.com), or the hostname itself when it has only two.
 */
export function srsDomain(hostname: string): string | null {
  const labels = hostname.split('.').filter(Boolean);
  if (labels.length < 2) return null;
  return labels.length > 2 ? labels.slice(1).join('.') : labels.join('.');
}

/** One service of master.cf: its lines as written (the first, then its continuation lines). */
export interface MasterEntry {
  lines: string[];
}

/**
 * The last entry of this service in master.cf outside scoped's blocks (the one Postfix uses:
 * of lines naming the same service and type only the last counts), or null when there is none.
 */
export function masterEntry(text: string, service: string, type: string): MasterEntry | null {
  let found: MasterEntry | null = null;
  let current: MasterEntry | null = null;
  let inBlock = false;
  for (const line of text.split('\n')) {
    if (/^# scoped: .* \(managed by scoped; do not edit\)$/.test(line)) {
      inBlock = true;
      current = null;
      continue;
    }
    if (inBlock) {
      if (line.startsWith('# scoped: end of ')) inBlock = false;
      continue;
    }
    if (/^\s*(#|$)/.test(line)) continue;
    if (/^\s/.test(line)) {
      current?.lines.push(line);
      continue;
    }
    const [name, kind] = line.split(/\s+/);
    current = name === service && kind === type ? { lines: [line] } : null;
    if (current) found = current;
  }
  return found;
}

/** The words of an entry's arguments (after the command), across its lines. */
function entryArgs(e: MasterEntry): string[] {
  return e.lines.join(' ').trim().split(/\s+/).slice(8);
}

/** The cleanup_service_name an entry's -o options give it, if any. */
function cleanupOverride(e: MasterEntry): string | undefined {
  const args = entryArgs(e);
  for (let i = 0; i < args.length; i++) {
    const opt = args[i] === '-o' ? args[i + 1] : args[i]!.startsWith('-o') ? args[i]!.slice(2) : undefined;
    const m = opt && /^cleanup_service_name=(.*)$/.exec(opt);
    if (m) return m[1];
  }
  return undefined;
}

/**
 * scoped's master.cf block: a copy of the admin's cleanup service, named LOCAL_CLEANUP, without
 * sender rewriting, and the admin's pickup entry again (the later entry wins) handing what it
 * picks up to that cleanup.
 */
export function srsBlockLines(masterCf: string): string[] {
  const cleanup = masterEntry(masterCf, 'cleanup', 'unix') ?? { lines: ['cleanup   unix  n       -       y       -       0       cleanup'] };
  const [first, ...rest] = cleanup.lines;
  const lines = [first!.replace(/^cleanup(\s+)/, (_m, gap: string) => `${LOCAL_CLEANUP}${gap.length > 1 ? ' ' : gap}`), ...rest];
  lines.push(`  -o syslog_name=postfix/${LOCAL_CLEANUP}`, '  -o sender_canonical_maps=');
  const pickup = masterEntry(masterCf, 'pickup', 'unix');
  if (pickup) lines.push(...pickup.lines, `  -o cleanup_service_name=${LOCAL_CLEANUP}`);
  return lines;
}

interface Observed {
  present: boolean;
  params: Map<string, string>;
  masterCf: string | null;
  defaults: string | null;
  /** The secret file postsrsd reads, as seen inside the root. */
  secretPath: string;
  secret: string | null;
  secretMode: number | null;
  installed(): Promise<boolean>;
  running(): Promise<boolean>;
  endpoints(): Promise<{ forward: Endpoint; reverse: Endpoint }>;
}

async function observe({ system }: PlanContext): Promise<Observed> {
  const defaults = await system.readFile(SRS_DEFAULTS);
  // Debian's launcher reads SRS_SECRET from the settings file; a relative one means nothing to it.
  const named = shellSettings(defaults).get('SRS_SECRET') ?? '';
  const secretPath = named.startsWith('/') ? named : SRS_SECRET;
  let endpoints: Promise<{ forward: Endpoint; reverse: Endpoint }> | undefined;
  const ask = async () => ({ forward: await system.services.endpoint('postsrsd.forward'), reverse: await system.services.endpoint('postsrsd.reverse') });
  return {
    present: (await system.stat(MAIN_CF)) !== null,
    params: await system.postfix.mainCf(),
    masterCf: await system.readFile(MASTER_CF),
    defaults,
    secretPath,
    secret: await system.readFile(secretPath),
    secretMode: (await system.stat(secretPath))?.mode ?? null,
    installed: () => system.services.installed('postsrsd'),
    running: async () => (await system.services.installed('postsrsd')) && (await system.services.running('postsrsd')),
    endpoints: () => (endpoints ??= ask()),
  };
}

/** The SRS domain the vars ask for, or null when SRS is off (or there is no hostname to take it from). */
function wantedDomain(vars: VarValues): string | null {
  if (vars.postsrsd_enabled !== true) return null;
  const hostname = typeof vars.system_hostname === 'string' ? vars.system_hostname : '';
  return srsDomain(hostname);
}

/** The SRS parameters main.cf sets now that are not scoped's (the admin's own rewriting), as `name = value`. */
function foreignParams(o: Observed, ours: Map<string, string>): string[] {
  return [...ours.keys()].filter((p) => o.params.has(p) && o.params.get(p) !== ours.get(p)).map((p) => `${p} = ${o.params.get(p)}`);
}

/** Whether main.cf or master.cf has scoped's SRS settings (what false takes away). */
async function configured(o: Observed): Promise<boolean> {
  if (o.masterCf !== null && masterCfProblem(o.masterCf, BLOCK) === null && managedBlock(o.masterCf, BLOCK) !== null) return true;
  if (![...o.params.values()].some((v) => v.startsWith('tcp:'))) return false;
  const { forward, reverse } = await o.endpoints();
  const ours = srsParams(forward, reverse);
  return (
    o.params.get('sender_canonical_maps') === ours.get('sender_canonical_maps') ||
    o.params.get('recipient_canonical_maps') === ours.get('recipient_canonical_maps')
  );
}

export const srsUnit = defineUnit<Observed>({
  name: 'mail/srs',
  description: "PostSRSd's domain and secret, the daemon, and Postfix's canonical maps through it (mail submitted on the server is left alone)",
  reads: ['postsrsd_enabled', 'system_hostname'],

  async validate(vars, ctx) {
    if (vars.postsrsd_enabled !== true) return undefined;
    const hostname = typeof vars.system_hostname === 'string' ? vars.system_hostname : '';
    if (!srsDomain(hostname))
      return "SRS addresses are in the domain of the server's hostname, and net.hostname is not set: set it first (cpcmd scope:set net.hostname mail.example.com), or turn SRS off (cpcmd scope:set mail.srs false)";
    const o = await observe(ctx);
    if (!o.present) return noPostfix(ctx.system.root);
    if (!(await o.installed())) return 'postsrsd is not installed: install it first (apt-get install postsrsd), then set mail.srs true again';
    const problem = o.masterCf !== null && masterCfProblem(o.masterCf, BLOCK);
    if (problem) return problem;
    const { forward, reverse } = await o.endpoints();
    const foreign = foreignParams(o, srsParams(forward, reverse));
    if (foreign.length)
      return `main.cf already rewrites addresses with settings scoped did not write (${foreign.join('; ')}), which SRS would replace: move that rewriting to canonical_maps, or remove them (postconf -X NAME), then set mail.srs true again`;
    const pickup = o.masterCf === null ? null : masterEntry(o.masterCf, 'pickup', 'unix');
    const cleanup = pickup && cleanupOverride(pickup);
    if (cleanup)
      return `master.cf's pickup service hands mail to its own cleanup service (cleanup_service_name=${cleanup}), which SRS would replace to keep mail submitted on this server unrewritten: remove that option, then set mail.srs true again`;
    return undefined;
  },

  observe,

  async plan(vars, o) {
    if (!o.present) return [];
    const domain = wantedDomain(vars);
    const changes: Change[] = [];
    let mainChanged = false;
    let masterChanged = false;

    if (domain !== null) {
      const { forward, reverse } = await o.endpoints();
      // The secret: made once, from random bytes, 0600 from its first byte; an existing one (Debian's) is kept.
      let restart = false;
      const base = { kind: 'file', path: o.secretPath, mode: 0o600, current: o.secret, secret: true, var: 'postsrsd_enabled' } as const;
      if (o.secret === null || o.secret.trim() === '') {
        changes.push({ ...base, content: `${randomBytes(24).toString('base64')}\n` });
        restart = true;
      } else if (o.secretMode !== 0o600) {
        changes.push({ ...base, content: o.secret });
      }
      const defaults = withShellSetting(o.defaults, 'SRS_DOMAIN', domain);
      if (defaults !== o.defaults) {
        changes.push({ kind: 'file', path: SRS_DEFAULTS, content: defaults, mode: 0o644, current: o.defaults, var: 'postsrsd_enabled' });
        restart = true;
      }
      // postsrsd answers before Postfix is told to ask it.
      if (!(await o.running())) changes.push({ kind: 'service', service: 'postsrsd', action: 'start', var: 'postsrsd_enabled' });
      else if (restart) changes.push({ kind: 'service', service: 'postsrsd', action: 'restart' });
      for (const [param, value] of srsParams(forward, reverse)) {
        const current = o.params.get(param) ?? null;
        if (current !== value) {
          changes.push({ kind: 'postconf', param, value, current, var: 'postsrsd_enabled' });
          mainChanged = true;
        }
      }
    } else if (await configured(o)) {
      const { forward, reverse } = await o.endpoints();
      // Only what scoped set goes: an admin's own rewriting stays.
      for (const [param, value] of srsParams(forward, reverse)) {
        const current = o.params.get(param) ?? null;
        if (current === value) {
          changes.push({ kind: 'postconf', param, value: null, current, var: 'postsrsd_enabled' });
          mainChanged = true;
        }
      }
    }

    const master = masterBlockChange(o.masterCf, BLOCK, domain !== null && o.masterCf !== null ? srsBlockLines(o.masterCf) : null, 'postsrsd_enabled');
    if (master) {
      changes.push(master);
      masterChanged = true;
    }

    if (mainChanged || masterChanged) changes.push({ kind: 'service', service: 'postfix', action: 'reload' });
    // Stopped once Postfix no longer asks it, and only when scoped is taking its own settings away.
    if (domain === null && (mainChanged || masterChanged) && (await o.running())) changes.push({ kind: 'service', service: 'postsrsd', action: 'stop' });
    return changes;
  },
});

export const srsScope = defineScope<boolean>({
  name: 'mail.srs',
  summary: 'Rewrite the envelope sender of forwarded mail with SRS (PostSRSd), and route bounces back to the original sender',
  help:
    'true has Postfix rewrite the envelope sender of mail that arrives over SMTP (from other servers, and from clients on ' +
    "this machine that relay through port 25) to an SRS0= address in the domain of the server's hostname (net.hostname " +
    'mail.example.com gives example.com, which must be a domain this server receives mail for), so a message forwarded ' +
    "to another server passes that server's SPF check; a bounce to such an address is turned back into the original " +
    "sender. Mail submitted on the server itself (sendmail, which Postfix picks up, and mail.submission's port 587) keeps its sender: it goes through a " +
    `cleanup service of scoped's own (${LOCAL_CLEANUP}) without sender rewriting. PostSRSd (apt-get install postsrsd) ` +
    `signs with the secret in ${SRS_SECRET} (0600, made once from random bytes when missing, never shown), takes its ` +
    `domain from SRS_DOMAIN in ${SRS_DEFAULTS} (the one line scoped writes there) and listens on 127.0.0.1:10001 and 10002. ` +
    'false takes the settings out of main.cf and master.cf and stops postsrsd; the secret stays, so addresses already ' +
    'handed out can be reversed when SRS is turned on again.',
  usage: 'true | false',
  examples: ['cpcmd scope:set mail.srs true', 'cpcmd scope:get mail.srs', 'cpcmd scope:set mail.srs false'],
  schema: z.boolean(),
  vars: ['postsrsd_enabled'],
  parseArgs(args) {
    return onOff(args, 'mail.srs');
  },
  async toVars(on, ctx) {
    await requirePostfix(ctx);
    return { postsrsd_enabled: on };
  },
  get: (ctx) => ctx.vars.postsrsd_enabled === true,
});
