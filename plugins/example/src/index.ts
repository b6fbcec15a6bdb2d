import { type Change, ScopeInputError, definePlugin, defineScope, defineUnit, defineVar, z } from '@scoped/sdk';
import { masterCfWith } from './mastercf.js';
import { destinationProblem, servicesUsed, transportMapText, transportProblem } from './transports.js';

export { destinationProblem, transportMapText, transportProblem } from './transports.js';

const MAP = '/etc/postfix/transport';
const MASTER_CF = '/etc/postfix/master.cf';
const MAIN_CF = '/etc/postfix/main.cf';
const ONESHOT_FILTER = '/etc/postfix/oneshot-status';
const ONESHOT_FILTER_TEXT = '# Written by scoped (mail.transport): a temporary failure of oneshot is final\n/^4(\\.[0-9]+\\.[0-9]+ .*)$/ 5$1\n';

const checked = (problem: (s: string) => string | null) =>
  z.string().superRefine((s, ctx) => {
    const p = problem(s);
    if (p) ctx.addIssue({ code: 'custom', message: p });
  });

const Entries = z.record(checked(destinationProblem), checked(transportProblem));

export const transportsVar = defineVar({
  name: 'mail_transports',
  description: 'Per-destination transports: destination (example.com, .example.com, *) to relaylim:, oneshot:, smtp:[host]:port or error:TEXT',
  schema: Entries,
  default: {} as Record<string, string>,
});

interface Observed {
  present: boolean;
  main: Map<string, string>;
  master: string | null;
  map: string | null;
  mapMtime: number | null;
  dbMtime: number | null;
  filter: string | null;
  mapType: string;
  dbPath: string;
}

export const transportUnit = defineUnit<Observed>({
  name: 'mail/transport',
  description: 'The transport map, its postmap database, transport_maps, and the relaylim and oneshot services in master.cf',
  reads: ['mail_transports'],
  async observe({ system }) {
    const mapType = await system.postfix.defaultMapType();
    const dbPath = await system.postfix.mapDatabase(MAP);
    const [mainStat, main, master, map, mapStat, dbStat, filter] = await Promise.all([
      system.stat(MAIN_CF),
      system.postfix.mainCf(),
      system.readFile(MASTER_CF),
      system.readFile(MAP),
      system.stat(MAP),
      system.stat(dbPath),
      system.readFile(ONESHOT_FILTER),
    ]);
    return { present: mainStat !== null, main, master, map, mapMtime: mapStat?.mtimeMs ?? null, dbMtime: dbStat?.mtimeMs ?? null, filter, mapType, dbPath };
  },
  plan(vars, o) {
    if (!o.present) return [];
    const entries = vars.mail_transports as Record<string, string>;
    const used = servicesUsed(entries);
    const changes: Change[] = [];
    const param = (name: string, value: string | null) => {
      const current = o.main.get(name) ?? null;
      if (current !== value) changes.push({ kind: 'postconf', param: name, value, current });
    };
    const any = Object.keys(entries).length > 0;
    param('transport_maps', any ? `${o.mapType}:$config_directory/transport` : null);
    param('relaylim_destination_concurrency_limit', used.includes('relaylim') ? '1' : null);

    const master = masterCfWith(o.master ?? '', used);
    if (o.master !== null && master !== o.master) changes.push({ kind: 'file', path: MASTER_CF, content: master, mode: 0o644, current: o.master });

    const wantFilter = used.includes('oneshot');
    if (wantFilter && o.filter !== ONESHOT_FILTER_TEXT)
      changes.push({ kind: 'file', path: ONESHOT_FILTER, content: ONESHOT_FILTER_TEXT, mode: 0o644, current: o.filter });
    if (!wantFilter && o.filter !== null) changes.push({ kind: 'file.remove', path: ONESHOT_FILTER, current: o.filter });

    const text = transportMapText(entries);
    if (any) {
      if (o.map !== text) changes.push({ kind: 'file', path: MAP, content: text, mode: 0o644, current: o.map });
      const stale = o.dbMtime === null || (o.mapMtime !== null && o.dbMtime < o.mapMtime);
      if (o.map !== text || stale) changes.push({ kind: 'postmap', path: MAP, reason: o.map !== text ? 'entries changed' : 'database missing or stale' });
    } else {
      if (o.map !== null) changes.push({ kind: 'file.remove', path: MAP, current: o.map });
      if (o.dbMtime !== null) changes.push({ kind: 'file.remove', path: o.dbPath, current: '(database)' });
    }
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
    'relaylim: delivers to the destination over one connection at a time, for receivers that throttle. oneshot: tries ' +
    'once; a failure bounces at once instead of being retried. error:TEXT rejects mail for the destination with TEXT. ' +
    'smtp:[host]:port sends it through a given host. A destination is a domain, .domain for all its subdomains, or *. ' +
    'false removes the entry. scope:get lists the entries, or one with DESTINATION.',
  usage: 'DESTINATION TRANSPORT | DESTINATION false',
  examples: [
    'cpcmd scope:set mail.transport yahoo.com relaylim:',
    'cpcmd scope:set mail.transport .ru oneshot:',
    "cpcmd scope:set mail.transport example.com 'error:Bad domain!'",
    'cpcmd scope:set mail.transport example.com false',
    'cpcmd scope:get mail.transport',
  ],
  schema: z.object({ destination: checked(destinationProblem), transport: z.union([checked(transportProblem), z.literal(false)]) }),
  vars: ['mail_transports'],
  parseArgs(args) {
    if (args.length !== 2) throw new ScopeInputError('mail.transport takes DESTINATION TRANSPORT, such as yahoo.com relaylim:, or DESTINATION false');
    const [destination, transport] = args;
    if (typeof destination !== 'string') throw new ScopeInputError('the destination is a domain such as example.com');
    if (transport !== false && typeof transport !== 'string') throw new ScopeInputError('the transport is text such as relaylim: or error:TEXT, or false');
    return { destination: destination.toLowerCase(), transport };
  },
  async toVars(value, { system, vars }) {
    if ((await system.stat(MAIN_CF)) === null) throw new ScopeInputError('Postfix is not configured under this root (no etc/postfix/main.cf)');
    const entries = { ...(vars.mail_transports as Record<string, string>) };
    if (value.transport === false) delete entries[value.destination];
    else entries[value.destination] = value.transport;
    return { mail_transports: entries };
  },
  async get({ system }, args) {
    const text = (await system.readFile(MAP)) ?? '';
    const entries: Record<string, string> = {};
    for (const line of text.split('\n')) {
      const m = /^([^#\s]\S*)\s+(.+)$/.exec(line);
      if (m) entries[m[1]!] = m[2]!;
    }
    if (args.length === 0) return entries;
    const dest = String(args[0]).toLowerCase();
    return entries[dest] ?? false;
  },
});

export default definePlugin({
  name: 'scoped-plugin-mail-transport',
  version: '0.1.0',
  apiVersion: 1,
  vars: [transportsVar],
  units: [transportUnit],
  scopes: [transportScope],
});
