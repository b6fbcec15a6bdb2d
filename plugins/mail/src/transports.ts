/**
 * Transport map entries, as transport(5) reads them: `DESTINATION TRANSPORT:NEXTHOP`. Every
 * piece is checked so that no value can start a second map entry or a second parameter.
 */

/** Transports an entry may name; relaylim and oneshot are the two mail.transport adds to master.cf. */
export const TRANSPORTS = ['smtp', 'relay', 'relaylim', 'oneshot', 'error', 'discard', 'lmtp'] as const;

const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/** Why a destination is refused, or null: a domain, `.domain` for its subdomains, or `*`. */
export function destinationProblem(dest: string): string | null {
  if (dest === '*') return null;
  const name = dest.startsWith('.') ? dest.slice(1) : dest;
  if (name.length === 0 || name.length > 253 || !name.split('.').every((l) => LABEL.test(l))) {
    return `${JSON.stringify(dest)} is not a destination: give a domain (example.com), .example.com for its subdomains, or *`;
  }
  return null;
}

/** Why a next hop is refused, or null: host, host:port, [host] or [host]:port. */
function nexthopProblem(hop: string): string | null {
  if (hop === '') return null;
  const m = /^(\[[a-z0-9.:-]+\]|[a-z0-9.-]+)(?::(\d{1,5}))?$/i.exec(hop);
  if (!m || (m[2] !== undefined && (Number(m[2]) < 1 || Number(m[2]) > 65535)))
    return `${JSON.stringify(hop)} is not a next hop: write host, host:port, [host] or [host]:port`;
  return null;
}

/** Why a transport is refused, or null: NAME:, NAME:NEXTHOP, or error:TEXT. */
export function transportProblem(spec: string): string | null {
  if (/[\r\n\0]/.test(spec)) return 'a transport may not contain a line break or NUL';
  const m = /^([a-z]+):(.*)$/.exec(spec);
  if (!m) return `${JSON.stringify(spec)} is not a transport: write relaylim:, oneshot:, smtp:[relay]:587 or error:TEXT`;
  const [, name, rest] = m;
  if (!(TRANSPORTS as readonly string[]).includes(name!)) return `unknown transport ${name}: use one of ${TRANSPORTS.join(', ')}`;
  if (name === 'error') return rest!.trim() === '' ? 'error: needs a text, such as error:Bad domain!' : null;
  if (name === 'discard') return null;
  return nexthopProblem(rest!);
}

/** The transport map file for a set of entries, sorted so the same entries give the same bytes. */
export function transportMapText(entries: Readonly<Record<string, string>>): string {
  const lines = Object.keys(entries)
    .sort()
    .map((dest) => `${dest} ${entries[dest]}`);
  return lines.length
    ? `# Written by scoped (mail.transport): edit with cpcmd scope:set mail.transport; entries of your own go in /etc/postfix/transport\n${lines.join('\n')}\n`
    : '';
}

/** Which of mail.transport's master.cf services the entries use. */
export function servicesUsed(entries: Readonly<Record<string, string>>): ('relaylim' | 'oneshot')[] {
  const used = new Set(Object.values(entries).map((t) => t.split(':')[0]));
  return (['relaylim', 'oneshot'] as const).filter((s) => used.has(s));
}
