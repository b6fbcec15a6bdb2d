/**
 * mail.transport: per-destination transports (transport(5)), with the relaylim and oneshot
 * services the reference docs describe. scoped keeps its entries in a map of its own,
 * /etc/postfix/scoped-transport, listed first in transport_maps; the operator's own maps (such
 * as a hand-written /etc/postfix/transport) stay listed after it and are never read or
 * rewritten, so their entries keep working for every destination scoped has no entry for.
 */
import {
  type Change,
  MASTER_CF,
  type PlanContext,
  ScopeInputError,
  argText,
  defineScope,
  defineUnit,
  defineVar,
  managedBlock,
  masterBlockChange,
  masterCfProblem,
  z,
} from '@scoped/sdk';
import { MAIN_CF, requirePostfix } from './configure-postfix.js';
import { type OwnMap, mapChanges, mapsParam, observeMap } from './own-map.js';
import { destinationProblem, servicesUsed, transportMapText, transportProblem } from './transports.js';

/** scoped's transport map; the operator's stays /etc/postfix/transport. */
export const TRANSPORT_MAP = '/etc/postfix/scoped-transport';
const MAP_NAME = 'scoped-transport';
/** oneshot's status filter: a temporary failure of its delivery becomes final, so a message is tried once. */
export const ONESHOT_FILTER = '/etc/postfix/scoped-oneshot-status';
const ONESHOT_FILTER_TEXT = '# Written by scoped (mail.transport): a temporary failure of oneshot is final\n/^4(\\.[0-9]+\\.[0-9]+ .*)$/ 5$1\n';
/** relaylim delivers over one connection at a time per destination: the queue manager reads this from main.cf. */
const RELAYLIM_LIMIT = 'relaylim_destination_concurrency_limit';
const BLOCK = 'transport';

/** The master.cf lines of each service, as the docs describe them: both are Postfix's smtp client. */
const SERVICE_LINES: Record<'relaylim' | 'oneshot', string[]> = {
  relaylim: ['relaylim  unix  -       -       n       -       -       smtp', '  -o syslog_name=postfix/relaylim'],
  oneshot: [
    'oneshot   unix  -       -       n       -       -       smtp',
    '  -o syslog_name=postfix/oneshot',
    `  -o smtp_delivery_status_filter=regexp:$config_directory/${ONESHOT_FILTER.slice(ONESHOT_FILTER.lastIndexOf('/') + 1)}`,
  ],
};

const checked = (problem: (s: string) => string | null) =>
  z.string().superRefine((s, ctx) => {
    const p = problem(s);
    if (p) ctx.addIssue({ code: 'custom', message: p });
  });

export const mailTransports = defineVar({
  name: 'mail_transports',
  description:
    "scoped's per-destination transports (destination example.com, .example.com or * to relaylim:, oneshot:, smtp:[host]:port or error:TEXT), in /etc/postfix/scoped-transport ahead of the operator's maps",
  schema: z.record(checked(destinationProblem), checked(transportProblem)),
  default: {} as Record<string, string>,
});

interface Observed {
  present: boolean;
  main: Map<string, string>;
  master: string | null;
  map: OwnMap;
  filter: string | null;
}

async function observe({ system }: PlanContext): Promise<Observed> {
  const [present, main, master, map, filter] = await Promise.all([
    system.stat(MAIN_CF).then((s) => s !== null),
    system.postfix.mainCf(),
    system.readFile(MASTER_CF),
    observeMap(system, TRANSPORT_MAP),
    system.readFile(ONESHOT_FILTER),
  ]);
  return { present, main, master, map, filter };
}

const entriesOf = (vars: Readonly<Record<string, unknown>>) => (vars.mail_transports as Record<string, string> | undefined) ?? {};

export const transportUnit = defineUnit<Observed>({
  name: 'mail/transport',
  description: "scoped's transport map and its place first in transport_maps, and the relaylim and oneshot services in master.cf",
  reads: ['mail_transports'],
  async validate(vars, ctx) {
    const used = servicesUsed(entriesOf(vars));
    const master = await ctx.system.readFile(MASTER_CF);
    return (used.length && master !== null && masterCfProblem(master, BLOCK)) || undefined;
  },
  observe,
  plan(vars, o) {
    if (!o.present) return [];
    const entries = entriesOf(vars);
    const used = servicesUsed(entries);
    const any = Object.keys(entries).length > 0;
    const changes: Change[] = [];
    const v = 'mail_transports';
    const param = (name: string, value: string | null) => {
      const current = o.main.get(name) ?? null;
      if (current !== value) changes.push({ kind: 'postconf', param: name, value, current, var: v });
    };
    param('transport_maps', mapsParam(o.main.get('transport_maps') ?? null, any ? o.map.ref : null, MAP_NAME));
    // The limit goes with scoped's relaylim service; an operator's own relaylim (and its limit) is not scoped's to remove.
    const limit = o.main.get(RELAYLIM_LIMIT) ?? null;
    const block = o.master !== null && masterCfProblem(o.master, BLOCK) === null ? managedBlock(o.master, BLOCK) : null;
    const ourRelaylim = (block ?? []).some((l) => l.startsWith('relaylim '));
    param(RELAYLIM_LIMIT, used.includes('relaylim') ? '1' : ourRelaylim && limit === '1' ? null : limit);

    const master = masterBlockChange(o.master, BLOCK, used.length ? used.flatMap((s) => SERVICE_LINES[s]) : null, v);
    if (master) changes.push(master);

    const wantFilter = used.includes('oneshot');
    if (wantFilter && o.filter !== ONESHOT_FILTER_TEXT)
      changes.push({ kind: 'file', path: ONESHOT_FILTER, content: ONESHOT_FILTER_TEXT, mode: 0o644, current: o.filter, var: v });
    if (!wantFilter && o.filter !== null) changes.push({ kind: 'file.remove', path: ONESHOT_FILTER, current: o.filter, var: v });

    changes.push(...mapChanges(o.map, any ? transportMapText(entries) : null, v));
    if (changes.length) changes.push({ kind: 'service', service: 'postfix', action: 'reload' });
    return changes;
  },
});

/** One destination and its transport, or false to remove the destination's entry. */
export interface TransportEntry {
  destination: string;
  transport: string | false;
}

export const transportScope = defineScope<TransportEntry>({
  name: 'mail.transport',
  summary: 'Route mail for a destination through a transport: relaylim (serial), oneshot (no retry), smtp:[host]:port, error:TEXT',
  help:
    'relaylim: delivers to the destination over one connection at a time, for receivers that throttle (Postfix otherwise ' +
    'opens up to 20). oneshot: tries once; a failure bounces at once instead of being retried. error:TEXT bounces mail for ' +
    'the destination with TEXT. smtp:[host]:port sends it through that host. A destination is a domain, .domain for all its ' +
    'subdomains, or * for everything else. false removes the entry. scope:get lists the entries, or one with DESTINATION. ' +
    `scoped keeps its entries in ${TRANSPORT_MAP}, listed first in transport_maps: entries you write by hand go in ` +
    '/etc/postfix/transport (or any map of yours in transport_maps), which scoped never touches; they work for every ' +
    "destination scoped has no entry for (scoped's entry wins where both name one). relaylim and oneshot are in master.cf " +
    "while a scoped entry uses them, in scoped's marked block.",
  usage: 'DESTINATION TRANSPORT | DESTINATION false',
  examples: [
    'cpcmd scope:set mail.transport yahoo.com relaylim:',
    'cpcmd scope:set mail.transport .ru oneshot:',
    "cpcmd scope:set mail.transport example.com 'error:Bad domain!'",
    'cpcmd scope:set mail.transport partner.example smtp:[mx.partner.example]:2525',
    'cpcmd scope:set mail.transport example.com false',
    'cpcmd scope:get mail.transport',
  ],
  schema: z.object({ destination: checked(destinationProblem), transport: z.union([checked(transportProblem), z.literal(false)]) }),
  vars: ['mail_transports'],
  parseArgs(args, ctx) {
    if (args.length !== 2) throw new ScopeInputError('mail.transport takes DESTINATION TRANSPORT, such as yahoo.com relaylim:, or DESTINATION false');
    const destination = argText(args, 0, ctx);
    if (destination === undefined) throw new ScopeInputError('the destination is a domain such as example.com');
    if (args[1] === false) return { destination: destination.toLowerCase(), transport: false };
    const transport = argText(args, 1, ctx);
    if (transport === undefined) throw new ScopeInputError('the transport is text such as relaylim: or error:TEXT, or false');
    return { destination: destination.toLowerCase(), transport };
  },
  async toVars(value, { system, vars }) {
    await requirePostfix({ system });
    const entries = { ...entriesOf(vars) };
    if (value.transport === false) delete entries[value.destination];
    else entries[value.destination] = value.transport;
    return { mail_transports: entries };
  },
  async get({ system }, args) {
    const text = (await system.readFile(TRANSPORT_MAP)) ?? '';
    const entries: Record<string, string> = {};
    for (const line of text.split('\n')) {
      const m = /^([^#\s]\S*)\s+(.+)$/.exec(line);
      if (m) entries[m[1]!] = m[2]!;
    }
    if (args.length === 0) return entries;
    return entries[String(args[0]).toLowerCase()] ?? false;
  },
});
