import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { zodText } from '@scoped/sdk';

/** Everything scoped can be told, by flag or by the same key in a YAML `--config` file. */
/** Node turns a timer longer than this into 1 ms. */
const MAX_TIMER_MS = 2_147_483_647;

export const DaemonConfig = z
  .object({
    root: z.string().min(1).default('/'),
    socket: z.string().optional(),
    listen: z.string().default('127.0.0.1:8740'),
    store: z.string().optional(),
    tokenFile: z.string().optional(),
    kernelHostname: z.boolean().optional(),
    logLevel: z.enum(['info', 'warn', 'error', 'silent']).default('info'),
    maxBodyBytes: z
      .number()
      .int()
      .positive()
      .default(1024 * 1024),
    maxBatch: z.number().int().positive().default(100),
    maxResponseBytes: z
      .number()
      .int()
      .min(65_536)
      .default(8 * 1024 * 1024),
    maxWsPayloadBytes: z
      .number()
      .int()
      .positive()
      .default(1024 * 1024),
    wsPingIntervalMs: z.number().int().min(100).max(MAX_TIMER_MS).default(30_000),
    maxConnections: z.number().int().positive().default(256),
    authFailureLimit: z.number().int().positive().default(10),
    authFailureWindowMs: z.number().int().min(1).max(MAX_TIMER_MS).default(60_000),
    auditKeep: z.number().int().positive().default(10_000),
    auditMaxAgeDays: z.number().int().min(0).default(365),
    refusalKeep: z.number().int().positive().default(1_000),
    refusalNewPerMinute: z.number().int().positive().default(30),
    eventKeep: z.number().int().positive().default(10_000),
    // Flood limits: unauthenticated sockets, event subscribers that do not read, queued jobs.
    authTimeoutMs: z.number().int().min(100).max(MAX_TIMER_MS).default(5_000),
    maxPendingConnections: z.number().int().positive().default(64),
    maxConnectionsPerPeer: z.number().int().positive().default(128),
    maxSubscriptionsPerConnection: z.number().int().positive().default(32),
    maxWsBufferedBytes: z
      .number()
      .int()
      .positive()
      .default(1024 * 1024),
    maxJobsPerPrincipal: z.number().int().positive().default(8),
    maxJobs: z.number().int().positive().default(64),
    maxChangesPerMinute: z.number().int().positive().default(60),
    // Token holders: connections per token and the admins' share, replays that hold memory.
    maxConnectionsPerToken: z.number().int().positive().default(32),
    adminReservedConnections: z.number().int().min(0).default(32),
    maxReplays: z.number().int().positive().default(8),
    wsStallTimeoutMs: z.number().int().min(100).max(MAX_TIMER_MS).default(10_000),
    // Answers being built or written: requests in flight per WebSocket, answer bytes held daemon-wide.
    maxWsRequestsInFlight: z.number().int().positive().default(8),
    maxAnswerBytesInFlight: z
      .number()
      .int()
      .min(65_536)
      .default(64 * 1024 * 1024),
    plugins: z.array(z.string().min(1)).default([]),
    pluginDir: z.string().optional(),
    // How often daemons the config wants running (the spam filters) are looked at, and started again when found dead; 0: never.
    superviseIntervalMs: z.number().int().min(0).max(MAX_TIMER_MS).default(30_000),
    // The Scope GUI: how long a login address of cpcmd gui is good (once), and how long a session lasts.
    guiLoginTtlMs: z.number().int().min(100).max(MAX_TIMER_MS).default(60_000),
    guiSessionTtlMs: z.number().int().min(1_000).max(MAX_TIMER_MS).default(43_200_000),
  })
  .strict();

/** The config with every default resolved against the root. */
export interface ResolvedConfig {
  root: string;
  socket: string;
  listen: { host: string; port: number } | null;
  store: string;
  tokenFile: string;
  kernelHostname: boolean;
  logLevel: 'info' | 'warn' | 'error' | 'silent';
  maxBodyBytes: number;
  maxBatch: number;
  /** Most bytes one answer (a whole batch's) may take. */
  maxResponseBytes: number;
  maxWsPayloadBytes: number;
  wsPingIntervalMs: number;
  maxConnections: number;
  authFailureLimit: number;
  authFailureWindowMs: number;
  /** The history of changes keeps at most this many entries... */
  auditKeep: number;
  /** ...none older than this many days (0: no age limit). */
  auditMaxAgeDays: number;
  /** Refused calls, collapsed per caller, action and target, keep at most this many rows... */
  refusalKeep: number;
  /** ...and each caller adds at most this many new rows a minute (beyond, they are only counted). */
  refusalNewPerMinute: number;
  /** Vars to put back to their defaults in the store before starting (--reset-var, repeatable). */
  resetVars: string[];
  /** Events kept for subscribers that resume with `since`. */
  eventKeep: number;
  /** A TCP connection that has not sent an authenticated request by then is destroyed. */
  authTimeoutMs: number;
  /** TCP connections not yet authenticated; beyond, the oldest is dropped. */
  maxPendingConnections: number;
  /** TCP connections from one peer address. */
  maxConnectionsPerPeer: number;
  /** Event subscriptions on one WebSocket. */
  maxSubscriptionsPerConnection: number;
  /** Bytes a WebSocket may leave unread before it is closed (4008). */
  maxWsBufferedBytes: number;
  /** Queued and running jobs per token (admins: bounded by maxJobs only). */
  maxJobsPerPrincipal: number;
  /** How often scoped looks for daemons it runs that died, and starts them again (0: never). */
  superviseIntervalMs: number;
  /** Queued and running jobs in all. */
  maxJobs: number;
  /** Changes (scope, var and converge calls, dry runs too) one non-admin token may start a minute; beyond, busy. */
  maxChangesPerMinute: number;
  /** Authenticated TCP connections of one non-admin token. */
  maxConnectionsPerToken: number;
  /** The last of the maxConnections slots, kept for admins (at most half of them). */
  adminReservedConnections: number;
  /** Event replays (since) in progress at once; others wait their turn holding nothing. */
  maxReplays: number;
  /** A WebSocket whose peer leaves its backlog unread this long is closed (4008). */
  wsStallTimeoutMs: number;
  /** Requests one WebSocket may have in flight; beyond, it is not read until one is answered. */
  maxWsRequestsInFlight: number;
  /** Bytes of answers held at once, daemon-wide; calls beyond answer busy (-32008). */
  maxAnswerBytesInFlight: number;
  /** Third-party plugins: directories or npm package names. */
  plugins: string[];
  /** A directory whose subdirectories are plugins; outside the install, so installing scoped never adds one. */
  pluginDir: string;
  /** How long a Scope GUI login address (cpcmd gui) is good; it is good once. */
  guiLoginTtlMs: number;
  /** How long a Scope GUI session lasts at most (it ends sooner at logout or when its token is revoked). */
  guiSessionTtlMs: number;
}

export const USAGE = `Usage: scoped [options]

Runs the scoped daemon in the foreground, logging JSON lines to stderr.

Options:
  --root DIR             the system root to manage (default /); Postfix's config is DIR/etc/postfix
  --socket PATH          unix socket (default ROOT/run/scoped/scoped.sock), mode 0660, no token needed
  --listen HOST:PORT     HTTP and WebSocket on loopback (default 127.0.0.1:8740; "none" turns TCP off)
  --store URI            sqlite://PATH (default sqlite://ROOT/var/lib/scoped/scoped.sqlite)
  --token-file PATH      admin bearer token for TCP (default ROOT/etc/scoped/admin.token; created 0600 when missing)
  --kernel-hostname      also set the kernel hostname (default: on only when --root is /)
  --no-kernel-hostname   never set the kernel hostname
  --config FILE          a YAML file with the same keys (root, socket, listen, store, tokenFile, kernelHostname,
                         logLevel) and the limits: maxBodyBytes (1 MiB), maxBatch (100), maxResponseBytes
                         (8 MiB for one answer, a whole batch's), maxWsPayloadBytes (1 MiB), wsPingIntervalMs
                         (30000), maxConnections (256 TCP connections), authFailureLimit (10 failed logins per
                         peer per authFailureWindowMs, 60000), auditKeep (10000 entries of the history of
                         changes) and auditMaxAgeDays (365; 0 keeps them regardless of age), refusalKeep (1000
                         rows of refused calls, each counting the refusals of one caller, action and target)
                         and refusalNewPerMinute (30 new rows per caller a minute; beyond that they are only
                         counted), eventKeep (10000 events kept for subscribers resuming with since); and
                         against floods: authTimeoutMs (5000: a TCP connection without an authenticated
                         request by then is closed), maxPendingConnections (64 not yet authenticated; the
                         oldest is dropped for a new one), maxConnectionsPerPeer (128 pending from one address),
                         maxSubscriptionsPerConnection (32), maxWsBufferedBytes (1 MiB unread before a
                         WebSocket is closed with 4008), maxJobsPerPrincipal (8 queued or running per token),
                         maxJobs (64 in all); and against token holders: maxChangesPerMinute (60 changes,
                         dry runs included, per non-admin token a minute; beyond, busy -32008),
                         maxConnectionsPerToken (32 authenticated connections per non-admin token),
                         adminReservedConnections (32: the last
                         slots of maxConnections, which only admins take), maxReplays (8 event replays at once,
                         one per connection; the others wait holding nothing), wsStallTimeoutMs (10000: a
                         WebSocket that leaves its backlog unread this long is closed with 4008); and answers
                         in flight: maxWsRequestsInFlight (8 per WebSocket; beyond, it is read no further until
                         one is answered), maxAnswerBytesInFlight (64 MiB of answers held at once daemon-wide;
                         beyond, calls answer busy -32008); flags win
  --max-body-bytes N, --max-batch N, --max-response-bytes N, --max-ws-payload-bytes N, --ws-ping-interval-ms N,
  --max-connections N, --auth-failure-limit N, --auth-failure-window-ms N, --audit-keep N,
  --audit-max-age-days N, --refusal-keep N, --refusal-new-per-minute N, --event-keep N, --auth-timeout-ms N,
  --max-pending-connections N, --max-connections-per-peer N, --max-subscriptions-per-connection N,
  --max-ws-buffered-bytes N, --max-jobs-per-principal N, --max-jobs N, --max-changes-per-minute N,
  --max-connections-per-token N, --admin-reserved-connections N, --max-replays N, --ws-stall-timeout-ms N,
  --max-ws-requests-in-flight N, --max-answer-bytes-in-flight N
                         the same limits as flags
  --supervise-interval-ms N
                         how often scoped looks for a daemon it runs (a spam filter) that died and starts it
                         again, audited as "scoped (supervisor)" (default 30000; 0: never; config key
                         superviseIntervalMs)
  --gui-login-ttl-ms N   how long a login address of cpcmd gui for the Scope GUI (http://HOST:PORT/ on the TCP
                         listener) is good, once (default 60000; config key guiLoginTtlMs)
  --gui-session-ttl-ms N how long a Scope GUI session lasts at most; it ends sooner at logout, when its token is
                         revoked or expires, or when scoped stops (default 43200000, 12 h; config key guiSessionTtlMs)
  --reset-var NAME       put a var back to its default in the store before starting (repeatable), when the
                         start was refused because the store holds a value the var's schema refuses; nothing
                         is converged (cpcmd converge applies it) and the history records the reset
  --plugin DIR|PACKAGE   load a third-party plugin (repeatable; also the config key plugins: [...])
  --plugin-dir DIR       load every plugin directory in DIR (default ROOT/etc/scoped/plugins); plugins run as
                         root, so one is loaded only when it, its files and every directory above it are
                         owned by root and writable by nobody else
  --log-level LEVEL      info, warn, error or silent (default info)
  -h, --help             show this help
`;

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

function parseListen(value: string): ResolvedConfig['listen'] {
  if (value === 'none') return null;
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(value);
  if (!m) throw new ConfigError(`--listen takes HOST:PORT, such as 127.0.0.1:8740, or none; got ${value}`);
  const host = m[1]!.replace(/^\[|\]$/g, '');
  const port = Number(m[2]);
  if (port > 65535) throw new ConfigError(`--listen port ${port} is out of range`);
  if (!['127.0.0.1', '::1', 'localhost'].includes(host) && !host.startsWith('127.')) {
    throw new ConfigError(
      `--listen ${value} is not a loopback address; scoped serves TCP without TLS and so only on loopback (put a TLS proxy in front for remote access)`,
    );
  }
  return { host, port };
}

/** The limits, each also a flag: --max-body-bytes N and so on. */
const LIMITS = [
  ['max-body-bytes', 'maxBodyBytes'],
  ['max-batch', 'maxBatch'],
  ['max-response-bytes', 'maxResponseBytes'],
  ['max-ws-payload-bytes', 'maxWsPayloadBytes'],
  ['ws-ping-interval-ms', 'wsPingIntervalMs'],
  ['max-connections', 'maxConnections'],
  ['auth-failure-limit', 'authFailureLimit'],
  ['auth-failure-window-ms', 'authFailureWindowMs'],
  ['audit-keep', 'auditKeep'],
  ['audit-max-age-days', 'auditMaxAgeDays'],
  ['refusal-keep', 'refusalKeep'],
  ['refusal-new-per-minute', 'refusalNewPerMinute'],
  ['event-keep', 'eventKeep'],
  ['auth-timeout-ms', 'authTimeoutMs'],
  ['max-pending-connections', 'maxPendingConnections'],
  ['max-connections-per-peer', 'maxConnectionsPerPeer'],
  ['max-subscriptions-per-connection', 'maxSubscriptionsPerConnection'],
  ['max-ws-buffered-bytes', 'maxWsBufferedBytes'],
  ['max-jobs-per-principal', 'maxJobsPerPrincipal'],
  ['max-jobs', 'maxJobs'],
  ['max-changes-per-minute', 'maxChangesPerMinute'],
  ['max-connections-per-token', 'maxConnectionsPerToken'],
  ['admin-reserved-connections', 'adminReservedConnections'],
  ['max-replays', 'maxReplays'],
  ['ws-stall-timeout-ms', 'wsStallTimeoutMs'],
  ['max-ws-requests-in-flight', 'maxWsRequestsInFlight'],
  ['max-answer-bytes-in-flight', 'maxAnswerBytesInFlight'],
  ['supervise-interval-ms', 'superviseIntervalMs'],
  ['gui-login-ttl-ms', 'guiLoginTtlMs'],
  ['gui-session-ttl-ms', 'guiSessionTtlMs'],
] as const;

/** Parse argv (and the config file it names) into a resolved config. */
export function loadConfig(argv: readonly string[]): ResolvedConfig | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      options: {
        root: { type: 'string' },
        socket: { type: 'string' },
        listen: { type: 'string' },
        store: { type: 'string' },
        'token-file': { type: 'string' },
        'kernel-hostname': { type: 'boolean' },
        'no-kernel-hostname': { type: 'boolean' },
        plugin: { type: 'string', multiple: true },
        'reset-var': { type: 'string', multiple: true },
        'plugin-dir': { type: 'string' },
        config: { type: 'string' },
        'log-level': { type: 'string' },
        ...Object.fromEntries(LIMITS.map(([flag]) => [flag, { type: 'string' as const }])),
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (err) {
    throw new ConfigError(`${(err as Error).message}; scoped --help lists the options`);
  }
  const v = parsed.values;
  if (v.help) return 'help';
  let file: Record<string, unknown> = {};
  if (v.config) {
    try {
      file = (parseYaml(readFileSync(v.config, 'utf8')) as Record<string, unknown> | null) ?? {};
    } catch (err) {
      throw new ConfigError(`cannot read the config file ${v.config}: ${(err as Error).message}`);
    }
  }
  const flags: Record<string, unknown> = {
    root: v.root,
    socket: v.socket,
    listen: v.listen,
    store: v.store,
    tokenFile: v['token-file'],
    kernelHostname: v['no-kernel-hostname'] ? false : v['kernel-hostname'],
    logLevel: v['log-level'],
    plugins: v.plugin,
    pluginDir: v['plugin-dir'],
  };
  for (const [flag, key] of LIMITS) {
    const raw = (v as Record<string, unknown>)[flag] as string | undefined;
    if (raw === undefined) continue;
    if (!/^\d+$/.test(raw)) throw new ConfigError(`--${flag} takes a whole number, not ${raw}`);
    flags[key] = Number(raw);
  }
  const merged = { ...file, ...Object.fromEntries(Object.entries(flags).filter(([, x]) => x !== undefined)) };
  const r = DaemonConfig.safeParse(merged);
  if (!r.success) throw new ConfigError(`invalid configuration: ${zodText(r.error, 'config')}`);
  const c = r.data;
  const root = path.resolve(c.root);
  const under = (p: string) => path.join(root, p);
  return {
    root,
    socket: path.resolve(c.socket ?? under('run/scoped/scoped.sock')),
    listen: parseListen(c.listen),
    store: c.store ?? `sqlite://${under('var/lib/scoped/scoped.sqlite')}`,
    tokenFile: path.resolve(c.tokenFile ?? under('etc/scoped/admin.token')),
    kernelHostname: c.kernelHostname ?? root === '/',
    logLevel: c.logLevel,
    maxBodyBytes: c.maxBodyBytes,
    maxBatch: c.maxBatch,
    maxResponseBytes: c.maxResponseBytes,
    maxWsPayloadBytes: c.maxWsPayloadBytes,
    wsPingIntervalMs: c.wsPingIntervalMs,
    maxConnections: c.maxConnections,
    authFailureLimit: c.authFailureLimit,
    authFailureWindowMs: c.authFailureWindowMs,
    auditKeep: c.auditKeep,
    auditMaxAgeDays: c.auditMaxAgeDays,
    refusalKeep: c.refusalKeep,
    refusalNewPerMinute: c.refusalNewPerMinute,
    resetVars: v['reset-var'] ?? [],
    eventKeep: c.eventKeep,
    authTimeoutMs: c.authTimeoutMs,
    maxPendingConnections: c.maxPendingConnections,
    maxConnectionsPerPeer: c.maxConnectionsPerPeer,
    maxSubscriptionsPerConnection: c.maxSubscriptionsPerConnection,
    maxWsBufferedBytes: c.maxWsBufferedBytes,
    maxJobsPerPrincipal: c.maxJobsPerPrincipal,
    superviseIntervalMs: c.superviseIntervalMs,
    maxJobs: c.maxJobs,
    maxChangesPerMinute: c.maxChangesPerMinute,
    maxConnectionsPerToken: c.maxConnectionsPerToken,
    adminReservedConnections: c.adminReservedConnections,
    maxReplays: c.maxReplays,
    wsStallTimeoutMs: c.wsStallTimeoutMs,
    maxWsRequestsInFlight: c.maxWsRequestsInFlight,
    maxAnswerBytesInFlight: c.maxAnswerBytesInFlight,
    plugins: c.plugins,
    pluginDir: path.resolve(c.pluginDir ?? under('etc/scoped/plugins')),
    guiLoginTtlMs: c.guiLoginTtlMs,
    guiSessionTtlMs: c.guiSessionTtlMs,
  };
}
