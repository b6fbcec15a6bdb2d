/**
 * mail.sender-ip: the reference docs' "Splitting delivery IPs". Mail from a sender (a domain or
 * one address) leaves from one of this machine's IP addresses and names itself with a HELO of
 * its own: an smtp service per address and HELO in master.cf (scoped's `sender-ip` block, with
 * smtp_bind_address and smtp_helo_name), and the sender's entry in scoped's own sender transport
 * map, listed first in sender_dependent_default_transport_maps (the operator's maps after it).
 */
import { createHash } from 'node:crypto';
import { createServer, isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import {
  type Change,
  MASTER_CF,
  type PlanContext,
  ScopeInputError,
  type VarValues,
  argText,
  defineScope,
  defineUnit,
  defineVar,
  masterBlockChange,
  masterCfProblem,
  z,
} from '@scoped/sdk';
import { MAIN_CF, requirePostfix } from './configure-postfix.js';
import { type OwnMap, mapChanges, mapsParam, observeMap } from './own-map.js';

/** scoped's sender transport map. */
export const SENDER_TRANSPORT_MAP = '/etc/postfix/scoped-sender-transport';
const MAP_NAME = 'scoped-sender-transport';
const PARAM = 'sender_dependent_default_transport_maps';
const BLOCK = 'sender-ip';

const LABEL = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?';
const DOMAIN = new RegExp(`^(?=.{1,253}$)(?:${LABEL}\\.)+[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$`);
const ADDRESS = new RegExp(`^[a-z0-9!#$%&'*+/=?^_\`{|}~.-]{1,64}@${DOMAIN.source.slice(1, -1)}$`);

// A map line that begins with # is a comment to Postfix: such a sender would silently do nothing.
const Sender = z
  .string()
  .refine((s) => (DOMAIN.test(s) || ADDRESS.test(s)) && !s.startsWith('#'), 'a sender is a domain such as example.com or an address such as news@example.com');
// No zone id (fe80::1%eth0): Postfix binds by address alone.
const Ip = z.string().refine((s) => isIP(s) !== 0 && !s.includes('%'), 'an IP address such as 192.0.2.10 or 2001:db8::10');
const Helo = z.string().regex(DOMAIN, 'a HELO name is a host name such as mail.example.com');

/** Where a sender's mail leaves from: the address it binds to, and the HELO name it gives (myhostname when absent). */
export const SenderRoute = z.object({ ip: Ip, helo: Helo.optional() }).strict();
export type SenderRoute = z.output<typeof SenderRoute>;

export const mailSenderIps = defineVar({
  name: 'mail_sender_ips',
  description: 'Delivery IPs by sender (a domain or an address): the address of this machine its mail leaves from, and the HELO name it gives',
  schema: z.record(Sender, SenderRoute),
  default: {} as Record<string, SenderRoute>,
});

const routesOf = (vars: VarValues) => (vars.mail_sender_ips as Record<string, SenderRoute> | undefined) ?? {};

/** The master.cf service of one address and HELO: readable, and short enough for its socket's path. */
export function serviceName(r: SenderRoute): string {
  const base = `ip-${r.ip.replace(/[.:]/g, '-')}`.replace(/-+/g, '-').replace(/-$/, '');
  return r.helo === undefined ? base : `${base}-${createHash('sha256').update(r.helo).digest('hex').slice(0, 8)}`;
}

/** The master.cf lines of every service the routes use, one per address and HELO, in a stable order. */
export function serviceLines(routes: Record<string, SenderRoute>): string[] {
  const services = new Map<string, SenderRoute>();
  for (const r of Object.values(routes)) services.set(serviceName(r), r);
  return [...services.keys()].sort().flatMap((name) => {
    const r = services.get(name)!;
    return [
      `${name.padEnd(9)} unix  -       -       n       -       -       smtp`,
      `  -o syslog_name=postfix/${name}`,
      `  -o ${isIP(r.ip) === 6 ? 'smtp_bind_address6' : 'smtp_bind_address'}=${r.ip}`,
      ...(r.helo === undefined ? [] : [`  -o smtp_helo_name=${r.helo}`]),
    ];
  });
}

/** The sender transport map: `@domain` for a domain, the address itself for one sender. */
export function senderMapText(routes: Record<string, SenderRoute>): string | null {
  const senders = Object.keys(routes).sort();
  if (!senders.length) return null;
  const lines = senders.map((s) => `${s.includes('@') ? s : `@${s}`} ${serviceName(routes[s]!)}:`);
  return `# Written by scoped (mail.sender-ip): edit with cpcmd scope:set mail.sender-ip\n${lines.join('\n')}\n`;
}

/** The addresses this machine's interfaces name (all of 127.0.0.0/8 is local on Linux, but only 127.0.0.1 is named). */
function machineAddresses(): string[] {
  return Object.values(networkInterfaces())
    .flatMap((list) => list ?? [])
    .map((a) => a.address);
}

/** Whether a socket can bind to the address here: the kernel's own answer to "does this machine have it". */
function canBind(ip: string): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ host: ip, port: 0, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** Why mail cannot leave from this address, naming the ones the machine has; null when it can. */
export async function addressProblem(ip: string): Promise<string | null> {
  if (await canBind(ip)) return null;
  return `${ip} is not an address of this machine, so mail cannot leave from it: use one it has (${machineAddresses().join(', ')}; on Linux all of 127.0.0.0/8), or add ${ip} to an interface first`;
}

interface Observed {
  present: boolean;
  main: Map<string, string>;
  master: string | null;
  map: OwnMap;
}

async function observe({ system }: PlanContext): Promise<Observed> {
  const [present, main, master, map] = await Promise.all([
    system.stat(MAIN_CF).then((s) => s !== null),
    system.postfix.mainCf(),
    system.readFile(MASTER_CF),
    observeMap(system, SENDER_TRANSPORT_MAP),
  ]);
  return { present, main, master, map };
}

export const senderIpUnit = defineUnit<Observed>({
  name: 'mail/sender-ip',
  description:
    "The smtp services that bind to a sender's IP (master.cf), scoped's sender transport map and its place in sender_dependent_default_transport_maps",
  reads: ['mail_sender_ips'],
  async validate(vars, ctx) {
    const routes = routesOf(vars);
    for (const ip of new Set(Object.values(routes).map((r) => r.ip))) {
      const problem = await addressProblem(ip);
      if (problem) return problem;
    }
    const master = await ctx.system.readFile(MASTER_CF);
    return (Object.keys(routes).length && master !== null && masterCfProblem(master, BLOCK)) || undefined;
  },
  observe,
  plan(vars, o) {
    if (!o.present) return [];
    const routes = routesOf(vars);
    const any = Object.keys(routes).length > 0;
    const v = 'mail_sender_ips';
    const changes: Change[] = [];
    const current = o.main.get(PARAM) ?? null;
    const value = mapsParam(current, any ? o.map.ref : null, MAP_NAME);
    if (value !== current) changes.push({ kind: 'postconf', param: PARAM, value, current, var: v });
    const master = masterBlockChange(o.master, BLOCK, any ? serviceLines(routes) : null, v);
    if (master) changes.push(master);
    changes.push(...mapChanges(o.map, senderMapText(routes), v));
    if (changes.length) changes.push({ kind: 'service', service: 'postfix', action: 'reload' });
    return changes;
  },
});

/** A sender's delivery IP and HELO, or false to send its mail the ordinary way again. */
const SenderIpValue = z.union([
  z.object({ sender: Sender, ip: Ip, helo: Helo.optional() }).strict(),
  z.object({ sender: Sender, ip: z.literal(false) }).strict(),
]);
type SenderIpValue = z.output<typeof SenderIpValue>;

export const senderIpScope = defineScope<SenderIpValue>({
  name: 'mail.sender-ip',
  summary: "Send a domain's (or one address's) mail from one of this machine's IP addresses, with a HELO name of its own",
  help:
    'DOMAIN|ADDRESS IP [HELO]: mail whose envelope sender is in DOMAIN (or is ADDRESS) leaves from IP and says HELO (this ' +
    "server's myhostname when not given; give the name IP's PTR record points to). The IP must be one this machine has: " +
    'an address it does not have is refused, naming the ones it has. scoped adds an smtp service per IP and HELO to ' +
    `master.cf (its marked sender-ip block, with smtp_bind_address and smtp_helo_name) and the sender to ${SENDER_TRANSPORT_MAP}, ` +
    'listed first in sender_dependent_default_transport_maps (maps of your own stay after it, untouched). It applies to mail ' +
    'for remote destinations, also through the smart host; a mail.transport entry for the destination takes precedence. ' +
    'DOMAIN|ADDRESS false removes the sender; scope:get lists the senders, or one with DOMAIN|ADDRESS.',
  usage: 'DOMAIN|ADDRESS IP [HELO] | DOMAIN|ADDRESS false',
  examples: [
    'cpcmd scope:set mail.sender-ip example.com 192.0.2.10 mail.example.com',
    'cpcmd scope:set mail.sender-ip news@example.com 192.0.2.11',
    'cpcmd scope:set mail.sender-ip example.com false',
    'cpcmd scope:get mail.sender-ip',
  ],
  schema: SenderIpValue,
  vars: ['mail_sender_ips'],
  parseArgs(args, ctx) {
    const sender = argText(args, 0, ctx)?.toLowerCase();
    if (sender === undefined || args.length < 2 || args.length > 3)
      throw new ScopeInputError('mail.sender-ip takes DOMAIN|ADDRESS IP [HELO], such as example.com 192.0.2.10 mail.example.com, or DOMAIN|ADDRESS false');
    if (args[1] === false) {
      if (args.length !== 2) throw new ScopeInputError('DOMAIN|ADDRESS false takes nothing after false');
      return { sender, ip: false };
    }
    const ip = argText(args, 1, ctx);
    if (ip === undefined) throw new ScopeInputError('the IP is one address of this machine, such as 192.0.2.10');
    const helo = args.length === 3 ? argText(args, 2, ctx)?.toLowerCase() : undefined;
    if (args.length === 3 && helo === undefined) throw new ScopeInputError('the HELO is a host name such as mail.example.com');
    return helo === undefined ? { sender, ip } : { sender, ip, helo };
  },
  async toVars(value, { system, vars }) {
    await requirePostfix({ system });
    const routes = { ...routesOf(vars) };
    if (value.ip === false) {
      if (!routes[value.sender]) {
        const senders = Object.keys(routes);
        throw new ScopeInputError(
          `${value.sender} has no delivery IP of its own${senders.length ? `; the senders that have one are ${senders.join(', ')}` : ''}`,
          [],
          'not-found',
        );
      }
      delete routes[value.sender];
    } else {
      const problem = await addressProblem(value.ip);
      if (problem) throw new ScopeInputError(problem, ['ip']);
      routes[value.sender] = value.helo === undefined ? { ip: value.ip } : { ip: value.ip, helo: value.helo };
    }
    return { mail_sender_ips: routes };
  },
  get({ vars }, args) {
    const routes = routesOf(vars);
    if (args.length === 0) return routes;
    return routes[String(args[0]).toLowerCase()] ?? false;
  },
});
