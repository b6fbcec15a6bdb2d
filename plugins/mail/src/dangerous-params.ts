/**
 * The main.cf parameters postfix_custom_config refuses, for every caller, the admin included,
 * reviewed against postconf(5). scoped runs as root and `postfix reload` runs as root, so a
 * raw parameter that names a program, a directory, an owner, the environment, a filter, a
 * transport or a file outside Postfix's config directory is a way to run code as root or to
 * read or route what should stay put. Such parameters are set in main.cf by hand, as root.
 *
 * The policy errs on the safe side: a whole family of names is refused when some of its
 * members are dangerous, and every value is checked for paths, lookup tables, actions and
 * $-references too. A value is checked on its own, so it may refer only to parameters whose
 * values are plain names: otherwise `masquerade_exceptions = ..` plus
 * `virtual_alias_maps = texthash:$config_directory/$masquerade_exceptions/…` builds a path
 * outside /etc/postfix that no single value shows.
 */
import path from 'node:path';
import { AUTH_MAP, CUSTOM_KEYS, PARAM_VARS } from './configure-postfix.js';

/** A family of parameters refused by name, with the reason shown to whoever tries one. */
export interface ParameterClass {
  readonly name: string;
  readonly reason: string;
  readonly names?: readonly string[];
  readonly patterns?: readonly RegExp[];
}

export const DANGEROUS_CLASSES: readonly ParameterClass[] = [
  {
    name: 'programs and commands',
    reason:
      'it names or runs a program, or decides what a delivery may run (mailbox_command runs as the recipient, ' +
      '$daemon_directory/postfix-script and postlogd run as root)',
    names: [
      'local_command_shell',
      'allow_mail_to_commands',
      'allow_mail_to_files',
      'alias_maps',
      'alias_database',
      'maillog_file_compressor',
      'tls_config_file',
      'tls_config_name',
    ],
    // *_command (mailbox_command, debugger_command), *_command_maps, *_path (sendmail_path, openssl_path,
    // forward_path, *_sasl_path), the expansion filters that guard command lines, postmulti's commands.
    patterns: [/_command$/, /_command_maps$/, /_path$/, /_expansion_filter$/, /^postmulti_/],
  },
  {
    name: 'directories',
    reason:
      'it says where Postfix finds its programs, libraries, queue, pid file or mailboxes; postfix reload runs ' +
      '$daemon_directory/postfix-script as root, and the daemons trust what they find there',
    names: ['home_mailbox', 'virtual_mailbox_base', 'multi_instance_enable', 'multi_instance_name', 'multi_instance_wrapper'],
    patterns: [/_directory$/, /_directories$/],
  },
  {
    name: 'owners, groups and privileges',
    reason:
      'it decides which user or group Postfix runs as or delivers as, who may submit and manage mail, or lets a client ' +
      "claim another client's address (XCLIENT, XFORWARD, the proxy protocol), which relay restrictions trust",
    names: [
      'mail_owner',
      'setgid_group',
      'default_privs',
      'multi_instance_group',
      'allow_min_user',
      'strict_mailbox_ownership',
      'virtual_uid_maps',
      'virtual_gid_maps',
      'virtual_minimum_uid',
      'qmqpd_authorized_clients',
    ],
    // XCLIENT, XFORWARD and the proxy protocol let clients claim another client's address or login, which relay restrictions trust.
    patterns: [/^authorized_.*_users$/, /_authorized_x(client|forward)_hosts$/, /authorized_verp_clients$/, /_upstream_proxy_protocol$/],
  },
  {
    name: 'environment',
    reason: 'it passes environment variables (LD_PRELOAD, PATH, ...) to Postfix programs that run as root',
    names: ['import_environment', 'export_environment'],
  },
  {
    name: 'filters and milters',
    reason:
      'it sends or copies mail to another program, service or address (a content filter, a milter, a blind copy, ' +
      'copies of bounces and errors, mail for unknown users, rewritten SMTP commands) that sees, and for filters can ' +
      'change, every message; the mail.spam-filter scope owns the milters',
    names: [
      'content_filter',
      'smtpd_proxy_filter',
      'smtpd_milter_maps',
      'default_filter_nexthop',
      'internal_mail_filter_classes',
      'receive_override_options',
      'always_bcc',
      'sender_bcc_maps',
      'recipient_bcc_maps',
      'notify_classes',
      'luser_relay',
      'empty_address_recipient',
    ],
    // *_notice_recipient: who gets copies of bounces and errors; *_command_filter rewrites each SMTP command (RCPT TO included).
    patterns: [/_milters$/, /^milter_/, /_notice_recipient$/, /_command_filter$/],
  },
  {
    name: 'transports and services',
    reason: 'it names a master.cf transport or service that mail is handed to, such as a pipe service that runs a ' + 'program with the message',
    names: ['defer_transports', 'master_service_disable'],
    patterns: [/_transport$/, /transport_maps$/, /_service_name$/],
  },
  {
    name: 'relay and credentials',
    reason:
      'it decides where the relay password is sent, or writes it to the mail log (debug_peer_list logs whole SMTP ' +
      'sessions, AUTH included); set the relay with mail.smart-host',
    names: ['fallback_relay', 'smtp_sender_dependent_authentication', 'debug_peer_list', 'debug_peer_level'],
    patterns: [/relayhost/, /_fallback_relay$/, /^(smtp|lmtp)_sasl_/],
  },
  {
    name: 'outbound TLS and host lookups',
    reason:
      "it decides whether the connection that carries mail and the relay password is encrypted and verified, or how the relay's " +
      'address is found: a per-site table or TLS policy overrides the level (smtp_tls_per_site NONE sends AUTH in the clear ' +
      'despite encrypt), cipher lists, CA files, discarded EHLO keywords and reply filters weaken it, and native host lookups ' +
      'follow /etc/hosts, which system_hostname writes; set the TLS level with postfix_smtp_tls_security_level',
    names: ['smtp_host_lookup', 'lmtp_host_lookup', 'disable_dns_lookups', 'smtp_never_send_ehlo', 'smtp_always_send_ehlo'],
    patterns: [
      /^(smtp|lmtp)_tls_/,
      /^(smtp|lmtp)_(use|enforce)_tls$/,
      /^tls_/,
      /^tlsproxy_client_/,
      /^(smtp|lmtp)_dns_/,
      /^(smtp|lmtp)_discard_(ehlo|lhlo)_keyword/,
      /^(smtp|lmtp)_pix_workaround/,
      /^(smtp|lmtp)_reply_filter$/,
    ],
  },
  {
    name: 'who may relay',
    reason:
      "it decides which clients may relay through this server, and its smart host's credentials, and to which domains: " +
      'a network too wide (0.0.0.0/0, or 256 /8s), a top-level domain in relay_domains (it matches every domain under it), ' +
      'a table or file that matches everything, or mynetworks_style=class make an open relay',
    names: ['mynetworks', 'mynetworks_style', 'relay_domains', 'permit_mx_backup_networks'],
  },
  {
    name: 'log files',
    reason: 'postlogd writes the log file as root, so it could append to any file',
    names: ['maillog_file', 'maillog_file_prefixes', 'maillog_file_rotate_suffix'],
  },
];

/** Map types that reach outside Postfix's own files: the network, databases, the environment, or other maps' combinations. */
export const REFUSED_MAP_TYPES = new Set([
  'tcp',
  'socketmap',
  'memcache',
  'ldap',
  'mysql',
  'pgsql',
  'sqlite',
  'mongodb',
  'nis',
  'nisplus',
  'netinfo',
  'environ',
  'pipemap',
  'unionmap',
]);
/** Map types whose argument is a file (pcre, regexp and cidr also take `{…}` entries written into the value). */
const PATH_MAP_TYPES = new Set(['btree', 'cdb', 'cidr', 'dbm', 'hash', 'lmdb', 'pcre', 'regexp', 'sdbm', 'texthash']);
/** Map types whose entries are the value itself. */
const VALUE_MAP_TYPES = new Set(['inline', 'static', 'randmap']);
/** The rest: a wrapper, the password database, a table that always fails, Postfix's own. */
const OTHER_MAP_TYPES = ['fail', 'unix', 'proxy', 'internal'];
const MAP_TYPES = new Set([...PATH_MAP_TYPES, ...VALUE_MAP_TYPES, ...OTHER_MAP_TYPES, ...REFUSED_MAP_TYPES]);

/**
 * The parameters a value may refer to with `$name`: their values are plain names, never paths or
 * tables (config_directory is written out as /etc/postfix before anything else is checked;
 * myhostname is owned by system_hostname, which checks it; the others are checked by plainNameProblem).
 */
export const SAFE_REFERENCES: readonly string[] = ['config_directory', 'myhostname', 'mydomain', 'myorigin', 'mail_name', 'mail_version'];
/** The safe references a value may set with postfix_custom_config, so long as it stays a plain name. */
const PLAIN_NAME_PARAMS = new Set(SAFE_REFERENCES.filter((n) => n !== 'config_directory' && n !== 'myhostname'));

/** Access-table and header_checks actions that copy or divert mail, or hand it to a transport. */
const MAIL_ACTIONS: Record<string, string> = {
  filter: 'a FILTER action hands mail to a master.cf transport, such as a pipe service that runs a program',
  bcc: 'a BCC action sends a copy of the message to another address',
  redirect: 'a REDIRECT action sends the message to another address instead',
};
/** Restrictions that hand data to an outside service. */
const SERVICE_RESTRICTIONS: Record<string, string> = {
  check_policy_service: "check_policy_service sends every transaction's envelope (sender, recipients, client, login) to another service",
};
/**
 * Parameters whose tables rewrite or add recipients: a table written into the value (inline:,
 * static:, randmap:, pcre:{…}) could send anyone's mail elsewhere without a file on disk to show it.
 */
const ADDRESS_REWRITE_MAPS = new Set([
  'virtual_alias_maps',
  'canonical_maps',
  'sender_canonical_maps',
  'recipient_canonical_maps',
  'smtp_generic_maps',
  'lmtp_generic_maps',
]);

const CONFIG_DIR = '/etc/postfix';
/** `$config_directory` in its three spellings. */
const CONFIG_DIR_REF = /\$(?:\{config_directory\}|\(config_directory\)|config_directory(?![A-Za-z0-9_]))/g;
/** A plain reference as Postfix reads it: `$name`, `${name}` or `$(name)`. */
const PLAIN_REF = /^\$(?:([A-Za-z0-9_]+)|\{([A-Za-z0-9_]+)\}|\(([A-Za-z0-9_]+)\))/;
/** A network in CIDR form, as mynetworks and cidr tables write it. */
const CIDR = /^!?\[?[0-9A-Fa-f:.]+\]?\/\d{1,3}$/;
/** Postfix's own IPC sockets, relative to the queue directory (such as private/auth for Dovecot SASL). */
const IPC_SOCKET = /^(private|public)\/[A-Za-z0-9_.-]+$/;

const WRITE_IT_OUT = 'write the value out instead';

/** Why a `$` in a value is refused, or null: only plain references to SAFE_REFERENCES are allowed. */
function referenceProblem(value: string): string | null {
  for (let at = value.indexOf('$'); at >= 0; at = value.indexOf('$', at + 1)) {
    const m = PLAIN_REF.exec(value.slice(at));
    if (!m) {
      return (
        `${JSON.stringify(value.slice(at, at + 20))} is not a plain reference ($name, \${name} or $(name)); ` +
        `$$, conditional \${name?…} and \${name:…} forms and other expressions are refused: ${WRITE_IT_OUT}`
      );
    }
    const name = m[1] ?? m[2] ?? m[3]!;
    if (!SAFE_REFERENCES.includes(name)) {
      return (
        `$${name} refers to another parameter, whose value this check cannot see (it may be a path, a table or '..'); ` +
        `only ${SAFE_REFERENCES.map((n) => `$${n}`).join(', ')} may be referred to: ${WRITE_IT_OUT}`
      );
    }
  }
  return null;
}

/** Why a path in a value is refused, or null: only files under Postfix's config directory are allowed. */
function pathProblem(p: string, { relativeSockets }: { relativeSockets: boolean }): string | null {
  if (p.includes('$')) return `${JSON.stringify(p)} is built from another parameter: ${WRITE_IT_OUT}`;
  if (relativeSockets && (CIDR.test(p) || IPC_SOCKET.test(p))) return null;
  const segments = p.split('/');
  const normal = path.posix.normalize(p);
  // scoped's own files: a lookup table over the credentials map would put the relay password in Postfix's log.
  if (normal.startsWith(AUTH_MAP) || normal === CUSTOM_KEYS)
    return `${JSON.stringify(p)} is one of scoped's own files (the relay credentials map holds the password): no parameter may read it`;
  if (p.startsWith('/') && !segments.includes('..') && normal.startsWith(`${CONFIG_DIR}/`)) return null;
  return `${JSON.stringify(p)} is a path outside ${CONFIG_DIR} (or relative): only files under ${CONFIG_DIR} may be named`;
}

/** Why a word of a value is refused as an action or restriction, or null. */
function actionProblem(word: string): string | null {
  const lower = word.toLowerCase();
  const why =
    (Object.hasOwn(MAIL_ACTIONS, lower) ? MAIL_ACTIONS[lower] : undefined) ??
    (Object.hasOwn(SERVICE_RESTRICTIONS, lower) ? SERVICE_RESTRICTIONS[lower] : undefined);
  return why ? `${why}; such rules go in main.cf by hand, as root` : null;
}

/**
 * Why a value is refused, or null: $-references beyond the safe names, lookup tables outside
 * Postfix's files, paths outside its config dir, actions and restrictions that copy, divert or
 * send out mail, and (for address rewriting) tables written into the value.
 */
export function valueProblem(value: string, { rewritesAddresses = false } = {}): string | null {
  const refProblem = referenceProblem(value);
  if (refProblem) return refProblem;
  const tokens = value
    .replace(CONFIG_DIR_REF, CONFIG_DIR)
    .split(/[\s,{}=]+/)
    .filter(Boolean);
  for (let token of tokens) {
    // A refused table behind a wrapper this check does not unwrap (a newer Postfix's debug:, say) is refused all the same.
    const hidden = new RegExp(`(?:^|:)(${[...REFUSED_MAP_TYPES].join('|')}):`).exec(token);
    if (hidden) return `a ${hidden[1]}: lookup table reaches outside Postfix's own files (the network, a database or the environment)`;
    let mapArg = false;
    for (let m = /^([a-z0-9_]+):(.*)$/.exec(token); m && MAP_TYPES.has(m[1]!); m = /^([a-z0-9_]+):(.*)$/.exec(token)) {
      const type = m[1]!;
      const arg = m[2]!;
      if (REFUSED_MAP_TYPES.has(type)) return `a ${type}: lookup table reaches outside Postfix's own files (the network, a database or the environment)`;
      if (rewritesAddresses && (VALUE_MAP_TYPES.has(type) || (PATH_MAP_TYPES.has(type) && arg === ''))) {
        return `a ${type}: table here has its entries written into the value, and could send anyone's mail to another address; keep the table in a file under ${CONFIG_DIR}`;
      }
      mapArg = PATH_MAP_TYPES.has(type) && arg !== '';
      token = arg;
    }
    const action = actionProblem(token);
    if (action) return action;
    if (mapArg || token.includes('/')) {
      const problem = pathProblem(token, { relativeSockets: !mapArg });
      if (problem) return problem;
    }
  }
  return null;
}

/** Why a value for one of the safe references is refused, or null: it must stay a plain name. */
function plainNameProblem(value: string): string | null {
  const written = value.replace(new RegExp(PLAIN_REF.source.slice(1), 'g'), '');
  if (/^[A-Za-z0-9._-]*$/.test(written) && !written.includes('..')) return null;
  return `other values may refer to it, so it must be a plain name (letters, digits, '.', '-', '_', no '..')`;
}

/** The class that refuses a parameter by name, if any. */
export function dangerousClass(name: string): ParameterClass | undefined {
  return DANGEROUS_CLASSES.find((c) => c.names?.includes(name) || c.patterns?.some((p) => p.test(name)));
}

/**
 * Why postfix_custom_config may not set this parameter to this value, or null when it may.
 * Refused for everyone, the admin included: such a parameter is set in main.cf by hand, as root.
 */
export function customParameterProblem(name: string, value: string): string | null {
  const owner = Object.hasOwn(PARAM_VARS, name) ? PARAM_VARS[name] : undefined;
  if (owner) return `${name} is owned by the var ${owner}: set that var or its scope instead (a raw override would bypass its checks)`;
  const cls = dangerousClass(name);
  if (cls) return `${name} is refused (${cls.name}): ${cls.reason}. Set it in main.cf by hand, as root, if it must change`;
  const plain = PLAIN_NAME_PARAMS.has(name) ? plainNameProblem(value) : null;
  if (plain) return `${name} is refused: ${plain}`;
  const problem = valueProblem(value, { rewritesAddresses: ADDRESS_REWRITE_MAPS.has(name) });
  if (problem) return `${name} is refused: ${problem}`;
  return null;
}
