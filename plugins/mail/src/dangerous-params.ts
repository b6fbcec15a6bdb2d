/**
 * The main.cf parameters postfix_custom_config refuses, for every caller, the admin included,
 * reviewed against postconf(5). scoped runs as root and `postfix reload` runs as root, so a
 * raw parameter that names a program, a directory, an owner, the environment, a filter, a
 * transport or a file outside Postfix's config directory is a way to run code as root or to
 * read or route what should stay put. Such parameters are set in main.cf by hand, as root.
 *
 * The policy errs on the safe side: a whole family of names is refused when some of its
 * members are dangerous, and every value is checked for paths and lookup tables too.
 */
import path from 'node:path';
import { PARAM_VARS } from './configure-postfix.js';

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
    reason: 'it decides which user or group Postfix runs as or delivers as, or who may submit and manage mail',
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
    ],
    // XCLIENT and XFORWARD let the listed clients claim another client's address or login, which relay restrictions trust.
    patterns: [/^authorized_.*_users$/, /_authorized_x(client|forward)_hosts$/, /authorized_verp_clients$/],
  },
  {
    name: 'environment',
    reason: 'it passes environment variables (LD_PRELOAD, PATH, ...) to Postfix programs that run as root',
    names: ['import_environment', 'export_environment'],
  },
  {
    name: 'filters and milters',
    reason:
      'it sends or copies mail to another program, service or address (a content filter, a milter, a blind copy) that ' +
      'sees, and for filters can change, every message; the mail.spam-filter scope owns the milters',
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
    ],
    patterns: [/_milters$/, /^milter_/],
  },
  {
    name: 'transports and services',
    reason:
      'it names a master.cf transport or service that mail is handed to, such as a pipe service that runs a ' +
      'program with the message',
    names: ['defer_transports', 'master_service_disable'],
    patterns: [/_transport$/, /transport_maps$/, /_service_name$/],
  },
  {
    name: 'relay and credentials',
    reason:
      'it decides where the relay password is sent or whether it crosses the network in the clear; set the relay ' +
      'with mail.smart-host and the TLS level with postfix_smtp_tls_security_level',
    names: ['fallback_relay', 'smtp_sender_dependent_authentication', 'smtp_tls_policy_maps', 'smtp_enforce_tls', 'smtp_use_tls', 'smtp_tls_wrappermode'],
    patterns: [/relayhost/, /_fallback_relay$/, /^(smtp|lmtp)_sasl_/, /^tlsproxy_client_/],
  },
  {
    name: 'log files',
    reason: 'postlogd writes the log file as root, so it could append to any file',
    names: ['maillog_file', 'maillog_file_prefixes', 'maillog_file_rotate_suffix'],
  },
];

/** Map types that reach outside Postfix's own files: the network, databases, the environment, or other maps' combinations. */
export const REFUSED_MAP_TYPES = new Set(['tcp', 'socketmap', 'memcache', 'ldap', 'mysql', 'pgsql', 'sqlite', 'mongodb', 'nis', 'nisplus', 'netinfo', 'environ', 'pipemap', 'unionmap']);
/** Map types read from a file (or from the value itself, or the password database). */
const FILE_MAP_TYPES = ['btree', 'cdb', 'cidr', 'dbm', 'hash', 'lmdb', 'pcre', 'regexp', 'sdbm', 'texthash', 'inline', 'static', 'fail', 'randmap', 'unix', 'proxy', 'internal'];
const MAP_TYPES = new Set([...FILE_MAP_TYPES, ...REFUSED_MAP_TYPES]);

const CONFIG_DIR = '/etc/postfix';
/** `$config_directory` in its three spellings. */
const CONFIG_DIR_REF = /\$(?:\{config_directory\}|\(config_directory\)|config_directory(?![a-z0-9_]))/g;
/** A network in CIDR form, as mynetworks and cidr tables write it. */
const CIDR = /^!?\[?[0-9A-Fa-f:.]+\]?\/\d{1,3}$/;
/** Postfix's own IPC sockets, relative to the queue directory (such as private/auth for Dovecot SASL). */
const IPC_SOCKET = /^(private|public)\/[A-Za-z0-9_.-]+$/;

/** Why a path in a value is refused, or null: only files under Postfix's config directory are allowed. */
function pathProblem(p: string): string | null {
  if (CIDR.test(p) || IPC_SOCKET.test(p)) return null;
  const segments = p.split('/');
  if (p.startsWith('/') && !segments.includes('..') && path.posix.normalize(p).startsWith(`${CONFIG_DIR}/`)) return null;
  return `${JSON.stringify(p)} is a path outside ${CONFIG_DIR} (or relative, or built from another parameter): only files under ${CONFIG_DIR} may be named`;
}

/** Why a value is refused, or null: lookup tables outside Postfix's files, paths outside its config dir, FILTER actions. */
export function valueProblem(value: string): string | null {
  const tokens = value.replace(CONFIG_DIR_REF, CONFIG_DIR).split(/[\s,{}=]+/).filter(Boolean);
  for (let token of tokens) {
    if (/^filter$/i.test(token)) return 'a FILTER action hands mail to a master.cf transport, such as a pipe service that runs a program';
    for (let m = /^([a-z0-9_]+):(.*)$/.exec(token); m && MAP_TYPES.has(m[1]!); m = /^([a-z0-9_]+):(.*)$/.exec(token)) {
      if (REFUSED_MAP_TYPES.has(m[1]!)) return `a ${m[1]}: lookup table reaches outside Postfix's own files (the network, a database or the environment)`;
      token = m[2]!;
    }
    if (token.includes('/')) {
      const problem = pathProblem(token);
      if (problem) return problem;
    }
  }
  return null;
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
  const problem = valueProblem(value);
  if (problem) return `${name} is refused: ${problem}`;
  return null;
}
