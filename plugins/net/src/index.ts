import { ScopeInputError, argText, defineScope, defineUnit, defineVar, definePlugin, type Change } from '@scoped/sdk';
import { Hostname, HostnameVar, hostnameProblem, normalizeHostname } from './hostname.js';

export { Hostname, hostnameProblem, normalizeHostname } from './hostname.js';

const HOSTS_ADDRESS = '127.0.1.1';

export const systemHostname = defineVar({
  name: 'system_hostname',
  description: 'The fully qualified hostname of this server; empty leaves the hostname alone',
  schema: HostnameVar,
  default: '',
});

/** /etc/hosts with its 127.0.1.1 line naming `fqdn` (and its short name); every other line kept. */
export function hostsWith(current: string | null, fqdn: string): string {
  const short = fqdn.split('.')[0]!;
  const entry = `${HOSTS_ADDRESS}\t${fqdn} ${short}`;
  const lines = (current ?? '').split('\n');
  if (lines.at(-1) === '') lines.pop();
  const at = lines.findIndex((l) => l.trim().split(/\s+/)[0] === HOSTS_ADDRESS);
  if (at >= 0) lines[at] = entry;
  else lines.push(entry);
  return `${lines.join('\n')}\n`;
}

interface Observed {
  hostname: string | null;
  hosts: string | null;
  mailname: string | null;
  kernel: string | null;
}

export const hostnameUnit = defineUnit<Observed>({
  name: 'net/hostname',
  description: 'Writes /etc/hostname, the 127.0.1.1 line of /etc/hosts and /etc/mailname, and the kernel hostname when managed',
  reads: ['system_hostname'],
  async observe({ system }) {
    const [hostname, hosts, mailname, kernel] = await Promise.all([
      system.readFile('/etc/hostname'),
      system.readFile('/etc/hosts'),
      system.readFile('/etc/mailname'),
      system.kernelHostname(),
    ]);
    return { hostname, hosts, mailname, kernel };
  },
  plan(vars, o, { options }) {
    const name = vars.system_hostname as string;
    if (!name) return [];
    const changes: Change[] = [];
    const line = `${name}\n`;
    if (o.hostname !== line) changes.push({ kind: 'file', path: '/etc/hostname', content: line, mode: 0o644, current: o.hostname });
    const hosts = hostsWith(o.hosts, name);
    if (o.hosts !== hosts) changes.push({ kind: 'file', path: '/etc/hosts', content: hosts, mode: 0o644, current: o.hosts });
    if (o.mailname !== line) changes.push({ kind: 'file', path: '/etc/mailname', content: line, mode: 0o644, current: o.mailname });
    if (options.kernelHostname && o.kernel !== null && o.kernel !== name) changes.push({ kind: 'kernel-hostname', name, current: o.kernel });
    return changes;
  },
});

export const hostnameScope = defineScope<string>({
  name: 'net.hostname',
  summary: "The server's fully qualified hostname",
  help:
    'Sets the hostname in /etc/hostname, the 127.0.1.1 line of /etc/hosts and /etc/mailname, and the kernel hostname when ' +
    "scoped runs with --kernel-hostname. Postfix's myhostname follows it. The name is lowercased and a trailing dot " +
    'dropped; it needs at least one dot, labels of 1-63 letters, digits or hyphens (not at either end), 253 characters at most.',
  usage: 'FQDN',
  examples: ['cpcmd scope:set net.hostname mail.example.com', 'cpcmd scope:get net.hostname'],
  schema: Hostname,
  vars: ['system_hostname'],
  parseArgs(args, ctx) {
    if (args.length !== 1) throw new ScopeInputError(`net.hostname takes one argument, the fully qualified name, such as mail.example.com; got ${args.length}`);
    // The name as typed: 1.50 stays 1.50 (the grammar would read a number).
    const name = argText(args, 0, ctx);
    if (name === undefined || args[0] === null)
      throw new ScopeInputError(`the hostname must be a name such as mail.example.com, not ${JSON.stringify(args[0])}`);
    return name;
  },
  toVars(value) {
    const name = normalizeHostname(value);
    const problem = hostnameProblem(name);
    if (problem) throw new ScopeInputError(`${problem}`);
    return { system_hostname: name };
  },
  async get({ system }) {
    const file = await system.readFile('/etc/hostname');
    const name = file?.trim();
    return name || (await system.kernelHostname()) || null;
  },
});

export default definePlugin({
  name: '@scoped/plugin-net',
  version: '0.1.0',
  apiVersion: 1,
  vars: [systemHostname],
  units: [hostnameUnit],
  scopes: [hostnameScope],
});
