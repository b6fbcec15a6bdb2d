/**
 * Smart host syntax, as Postfix's relayhost takes it: `name`, `name:port`, `[name]`,
 * `[name]:port`, `[ipv4]`, `[ipv6:addr]`, each with an optional port. Brackets mean "no MX
 * lookup". Nothing that could end a main.cf line, start a second parameter or a second map
 * entry gets through.
 */

const LABEL = /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$/;

/** A hostname; its last label is not all digits, so a mistyped IPv4 address is not taken for a name. */
function isName(s: string): boolean {
  const labels = s.split('.');
  return s.length <= 253 && labels.every((l) => LABEL.test(l)) && !/^\d+$/.test(labels.at(-1)!);
}

function isIpv4(s: string): boolean {
  const parts = s.split('.');
  return parts.length === 4 && parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255 && (p === '0' || !p.startsWith('0')));
}

function isIpv6(s: string): boolean {
  if (!/^[0-9A-Fa-f:.]+$/.test(s) || !s.includes(':')) return false;
  const double = s.split('::').length - 1;
  if (double > 1) return false;
  const groups = s.split(':').filter((g) => g !== '');
  const last = groups.at(-1) ?? '';
  const v4 = last.includes('.') ? (isIpv4(last) ? 2 : NaN) : 0;
  const hex = v4 ? groups.slice(0, -1) : groups;
  if (!hex.every((g) => /^[0-9A-Fa-f]{1,4}$/.test(g))) return false;
  const count = hex.length + v4;
  return double ? count < 8 : count === 8;
}

/** Why a smart host is refused (phrased as what to type instead), or null when it is valid. */
export function relayProblem(host: string): string | null {
  if (host === '') return 'the smart host is empty; give a host such as "[relay.example.com]:587", or false to turn it off';
  if (/[\s\0-\x1f\x7f=,]/.test(host))
    return `the smart host ${JSON.stringify(host)} contains whitespace, a control character, "=" or ","; give one host such as [relay.example.com]:587`;
  const m = /^(\[[^\]]*\]|[^[\]:]+)(?::(\d+))?$/.exec(host);
  if (!m) return `${JSON.stringify(host)} is not a host: write name, name:port, [name], [name]:port, [192.0.2.1] or [ipv6:2001:db8::1], with an optional :port`;
  const [, target, port] = m;
  if (port !== undefined && (!/^[1-9]\d{0,4}$/.test(port) || Number(port) > 65535)) return `the port ${port} is out of range; use 1-65535, such as 587`;
  if (target!.startsWith('[')) {
    const inner = target!.slice(1, -1);
    if (inner.toLowerCase().startsWith('ipv6:')) return isIpv6(inner.slice(5)) ? null : `${inner.slice(5)} is not an IPv6 address`;
    if (isIpv4(inner) || isName(inner)) return null;
    return `${JSON.stringify(inner)} inside the brackets is not a hostname or IPv4 address (IPv6 is written [ipv6:2001:db8::1])`;
  }
  return isName(target!) ? null : `${JSON.stringify(target)} is not a hostname`;
}

/**
 * The longest SASL username and password taken: far beyond any relay's (providers use an
 * address, an account id or an API key), small enough that each set, the history of changes
 * and the events keep small values.
 */
export const MAX_USERNAME = 256;
export const MAX_PASSWORD = 1024;

/** Why a SASL username is refused, or null. */
export function userProblem(user: string): string | null {
  if (user === '') return 'the username is empty; give USER and PASS, or neither';
  if (user.length > MAX_USERNAME)
    return `the username is ${user.length} characters long, and may be at most ${MAX_USERNAME} characters; give the login name the relay expects`;
  if (/[\s\0-\x1f\x7f:]/.test(user)) return 'the username may not contain ":", whitespace or control characters';
  return null;
}

/** Why a SASL password is refused, or null. The password itself never appears in the reason. */
export function passwordProblem(pass: string): string | null {
  if (pass === '') return 'the password is empty; give USER and PASS, or neither';
  if (pass.length > MAX_PASSWORD)
    return `the password is too long: it may be at most ${MAX_PASSWORD} characters; give the password or API key the relay expects`;
  if (/[\r\n\0]/.test(pass)) return 'the password may not contain a line break or a NUL character';
  if (/^\s|\s$/.test(pass)) return 'the password may not start or end with whitespace (the credentials map would drop it)';
  return null;
}

/**
 * Whether a relay name is this machine's own hostname or its first label. net.hostname (an
 * operator's scope) writes both into /etc/hosts as 127.0.1.1, and a resolver that serves
 * /etc/hosts (systemd-resolved, dnsmasq) would send Postfix's login to this machine, where any
 * local user may listen on a high port.
 */
export function isOwnName(name: string, hostname: string | undefined): boolean {
  const own = (hostname ?? '').toLowerCase().replace(/\.$/, '');
  const n = name.toLowerCase().replace(/\.$/, '');
  return own !== '' && (n === own || n === own.split('.')[0]);
}

/** The name a relayhost value names (brackets and port removed), or null for an address literal. */
export function relayName(host: string): string | null {
  const m = /^(\[[^\]]*\]|[^[\]:]+)(?::\d+)?$/.exec(host);
  const target = m?.[1] ?? host;
  const inner = target.startsWith('[') ? target.slice(1, -1) : target;
  return inner.toLowerCase().startsWith('ipv6:') || isIpv4(inner) ? null : inner;
}
