/**
 * The daemons scoped runs itself where systemd does not (a sandbox root, or `/` without
 * systemd): rspamd, spamd, redis-server, postsrsd and Dovecot (for Postfix logins), named by Debian's units. On `/` they are Debian's
 * (its programs, config, pid files and ports); on a sandbox root everything lives under the
 * root: config seeded from the host's package defaults, pid files, sockets, databases and logs
 * under ROOT/run, ROOT/var/lib and ROOT/var/log, and ports chosen once per root so that two
 * sandboxes never collide.
 */
import { randomBytes } from 'node:crypto';
import { constants, existsSync, readFileSync } from 'node:fs';
import { chmod, chown, cp, link, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, connect, isIP } from 'node:net';
import path from 'node:path';
import { type Endpoint, type EndpointName, shellSettings } from '@scoped/sdk';

/** Where Debian's packages listen by default: what scoped uses on `/`. */
export const DEBIAN_ENDPOINTS: Record<EndpointName, Endpoint> = {
  'rspamd.milter': { host: '127.0.0.1', port: 11332 },
  'rspamd.normal': { host: '127.0.0.1', port: 11333 },
  'rspamd.controller': { host: '127.0.0.1', port: 11334 },
  redis: { host: '127.0.0.1', port: 6379 },
  spamd: { host: '127.0.0.1', port: 783 },
  'postfix.filter-return': { host: '127.0.0.1', port: 10025 },
  'postsrsd.forward': { host: '127.0.0.1', port: 10001 },
  'postsrsd.reverse': { host: '127.0.0.1', port: 10002 },
  // On `/` the submission service listens on every interface (master.cf's `submission`); loopback is one of them.
  'postfix.submission': { host: '127.0.0.1', port: 587 },
};

const ENDPOINT_NAMES = Object.keys(DEBIAN_ENDPOINTS) as EndpointName[];

/** How the direct driver runs a daemon. */
export interface DaemonSpec {
  program: string;
  /** The arguments that start it in the background (it daemonizes and writes its pid file). */
  start: readonly string[];
  pidFile: string;
  /** Its configuration check, when not the one on PATH (checkServiceConfig). */
  check?: {
    program: string;
    args: readonly string[];
    env?: NodeJS.ProcessEnv;
    /**
     * A host directory the check writes whatever its flags say (rspamadm configtest compiles a
     * hyperscan cache into Debian's /var/lib/rspamd before it reads --var=DBDIR), and the root's own
     * directory put over it, in a private mount namespace, for the check's run only.
     */
    bind?: { over: string; from: string };
    /**
     * What the check reads: its program and these directories. A check that passed is not run
     * again while none of their files changed (checkFingerprint), which keeps it out of every set.
     */
    inputs?: readonly string[];
  };
  /** How long a stop waits for it to exit after SIGTERM (default 15 s). */
  stopTimeoutMs?: number;
  /** Where it accepts connections once it is up: a start waits for a live pid and this. */
  ready?: Endpoint;
  /** How long a start waits for it to come up (default 30 s). */
  readyTimeoutMs?: number;
  /** Its log file, whose last lines a failed start quotes. */
  log?: string;
  /** Started as this user (its primary group too), for a program that does not drop root itself. */
  user?: string;
  /** Before a start or a check: its directories made and owned, its config seeded. */
  prepare?: () => Promise<void>;
  /**
   * Some of its workers outlive a reload (Dovecot keeps anvil and its log process): a reload is
   * done once the signal is sent, rather than once the workers it had are gone.
   */
  reloadKeepsWorkers?: boolean;
}

/** SpamAssassin's site config, its rules as packaged and as sa-update fetched them. */
const SPAMASSASSIN_INPUTS = ['/etc/spamassassin', '/usr/share/spamassassin', '/var/lib/spamassassin'];

export type DaemonName = 'rspamd' | 'spamd' | 'redis-server' | 'postsrsd' | 'dovecot';

/** PostSRSd's settings file (Debian's, read by its unit's launcher): SRS_DOMAIN, SRS_SECRET and the rest. */
export const POSTSRSD_DEFAULTS = '/etc/default/postsrsd';
/** Where PostSRSd's secret lives when its settings name no other file. */
export const POSTSRSD_SECRET = '/etc/postsrsd.secret';

/**
 * PostSRSd's command line from its settings file, as Debian's launcher builds it, with the
 * listener (and the paths, under `root`) decided by the caller: it forks into the background
 * and writes its pid file. The secret is read as root before it drops to its user.
 */
function postsrsdArgs(root: string, forward: Endpoint, reverse: Endpoint, pidFile: string): string[] {
  const r = (p: string) => path.join(root, p);
  const s = shellSettings(existsSync(r(POSTSRSD_DEFAULTS)) ? readFileSync(r(POSTSRSD_DEFAULTS), 'utf8') : null);
  const user = s.get('RUN_AS') || 'postsrsd';
  const exclude = s.get('SRS_EXCLUDE_DOMAINS') ?? '';
  return [
    '-D',
    `-p${pidFile}`,
    `-d${s.get('SRS_DOMAIN') ?? ''}`,
    `-s${r(s.get('SRS_SECRET') || POSTSRSD_SECRET)}`,
    `-a${s.get('SRS_SEPARATOR') || '='}`,
    `-n${s.get('SRS_HASHLENGTH') || '4'}`,
    `-N${s.get('SRS_HASHMIN') || '4'}`,
    `-l${forward.host}`,
    `-f${forward.port}`,
    `-r${reverse.port}`,
    `-u${userIds(user) ? user : 'nobody'}`,
    `-c${r(s.get('CHROOT') || '/var/lib/postsrsd')}`,
    ...(exclude ? [`-X${exclude}`] : []),
  ];
}

/** Before PostSRSd starts: its chroot and pid directory, and a domain to rewrite to (it refuses to start without one). */
async function postsrsdPrepare(root: string, runDir: string): Promise<void> {
  const r = (p: string) => path.join(root, p);
  const defaults = existsSync(r(POSTSRSD_DEFAULTS)) ? readFileSync(r(POSTSRSD_DEFAULTS), 'utf8') : null;
  const s = shellSettings(defaults);
  if (!s.get('SRS_DOMAIN')) throw new Error(`postsrsd cannot start: ${r(POSTSRSD_DEFAULTS)} names no SRS_DOMAIN (cpcmd scope:set mail.srs true writes it)`);
  await ownedDir(r(s.get('CHROOT') || '/var/lib/postsrsd'), undefined);
  await ownedDir(runDir, undefined);
}

/** The first line of the Dovecot config scoped writes on a sandbox root: a config of scoped's own, only the auth service. */
export const DOVECOT_OWN_CONF = '# scoped: Dovecot for Postfix logins only (managed by scoped; do not edit)';

/**
 * Dovecot's config on a sandbox root: no protocols (no IMAP, no POP3), only the services every
 * Dovecot runs and its auth service, with its sockets, state and log inside the root. The auth
 * listener for Postfix and the passdb come from conf.d, as on Debian.
 */
export function sandboxDovecotConf(root: string): string {
  const r = (p: string) => path.join(root, p);
  return [
    DOVECOT_OWN_CONF,
    'protocols = none',
    `base_dir = ${r('/run/dovecot')}`,
    `state_dir = ${r('/var/lib/dovecot')}`,
    `log_path = ${r('/var/log/dovecot.log')}`,
    'ssl = no',
    '!include_try conf.d/*.conf',
    '',
  ].join('\n');
}

/** A user's uid and primary gid from the host's /etc/passwd (the kernel's users, whatever the root), or null when there is none. */
export function userIds(name: string): { uid: number; gid: number } | null {
  if (/^\d+$/.test(name)) return { uid: Number(name), gid: Number(name) };
  let passwd: string;
  try {
    passwd = readFileSync('/etc/passwd', 'utf8');
  } catch {
    return null;
  }
  for (const line of passwd.split('\n')) {
    const f = line.split(':');
    if (f[0] === name && f.length >= 4) return { uid: Number(f[2]), gid: Number(f[3]) };
  }
  return null;
}

/** A directory, made when missing and owned by the user when it exists (left root's when it does not). */
async function ownedDir(dir: string, user: string | undefined, mode = 0o755): Promise<void> {
  await mkdir(path.dirname(dir), { recursive: true, mode: 0o755 });
  await mkdir(dir, { recursive: true, mode });
  const ids = user ? userIds(user) : null;
  if (!ids) return;
  const st = await stat(dir);
  if (st.uid !== ids.uid || st.gid !== ids.gid) await chown(dir, ids.uid, ids.gid);
}

/** Copy the package's default config into the root: only files that are missing, never overwriting one. */
async function seed(from: string, to: string): Promise<void> {
  if (!existsSync(from)) return;
  await cp(from, to, { recursive: true, force: false, errorOnExist: false, preserveTimestamps: true });
}

/** Debian's daemons on `/`. */
export function debianDaemons(): Record<DaemonName, DaemonSpec> {
  const e = DEBIAN_ENDPOINTS;
  return {
    rspamd: {
      program: '/usr/bin/rspamd',
      start: ['-u', '_rspamd', '-g', '_rspamd'],
      pidFile: '/run/rspamd/rspamd.pid',
      check: { program: '/usr/bin/rspamadm', args: ['configtest'], inputs: ['/etc/rspamd', '/usr/share/rspamd'] },
      ready: e['rspamd.milter'],
      readyTimeoutMs: 90_000,
      stopTimeoutMs: 60_000,
      log: '/var/log/rspamd/rspamd.log',
      prepare: () => ownedDir('/run/rspamd', '_rspamd'),
    },
    spamd: {
      program: '/usr/sbin/spamd',
      start: [
        '--daemonize',
        '--create-prefs',
        '--max-children',
        '5',
        '--helper-home-dir=/var/lib/spamassassin',
        '-u',
        'debian-spamd',
        '-g',
        'debian-spamd',
        '--listen',
        `${e.spamd.host}:${e.spamd.port}`,
        '--pidfile',
        '/run/spamd.pid',
      ],
      pidFile: '/run/spamd.pid',
      check: { program: '/usr/bin/spamassassin', args: ['--lint'], inputs: SPAMASSASSIN_INPUTS },
      ready: e.spamd,
    },
    'redis-server': {
      program: '/usr/bin/redis-server',
      start: ['/etc/redis/redis.conf', '--daemonize', 'yes', '--supervised', 'no', '--pidfile', '/run/redis/redis-server.pid'],
      pidFile: '/run/redis/redis-server.pid',
      ready: e.redis,
      log: '/var/log/redis/redis-server.log',
      user: 'redis',
      prepare: () => ownedDir('/run/redis', 'redis'),
    },
    postsrsd: {
      program: '/usr/sbin/postsrsd',
      // Read when it starts: the settings file says which domain and secret.
      get start() {
        return postsrsdArgs('/', e['postsrsd.forward'], e['postsrsd.reverse'], '/run/postsrsd/postsrsd.pid');
      },
      pidFile: '/run/postsrsd/postsrsd.pid',
      ready: e['postsrsd.forward'],
      prepare: () => postsrsdPrepare('/', '/run/postsrsd'),
    },
    dovecot: {
      program: '/usr/sbin/dovecot',
      start: [],
      pidFile: '/run/dovecot/master.pid',
      check: { program: '/usr/bin/doveconf', args: ['-n'], inputs: ['/etc/dovecot'] },
      log: '/var/log/mail.log',
      reloadKeepsWorkers: true,
    },
  };
}

/**
 * The daemons of a sandbox root: programs, config, pid files, databases and logs inside the
 * root, listening on the root's own ports. A sandbox root is trusted as a whole (its Postfix
 * config already decides what Postfix runs), so a test puts a stand-in at ROOT/usr/bin/rspamd.
 */
export function rootDaemons(root: string, ports: Record<EndpointName, Endpoint>): Record<DaemonName, DaemonSpec> {
  const r = (p: string) => path.join(root, p);
  const reachable = async () => {
    // The daemons run as their own users (redis, debian-spamd, _rspamd), which must reach their files.
    for (let d = path.resolve(root); ; d = path.dirname(d)) {
      if (((await stat(d)).mode & 0o001) === 0)
        throw new Error(`the filter daemons run as their own users and cannot reach ${root}: ${d} is not searchable by others (chmod o+x ${d})`);
      if (d === path.dirname(d)) break;
    }
  };
  const rspamdVars = [
    `--var=CONFDIR=${r('/etc/rspamd')}`,
    `--var=LOCAL_CONFDIR=${r('/etc/rspamd')}`,
    `--var=RUNDIR=${r('/run/rspamd')}`,
    `--var=DBDIR=${r('/var/lib/rspamd')}`,
    `--var=LOGDIR=${r('/var/log/rspamd')}`,
  ];
  const rspamdPrepare = async () => {
    await reachable();
    await seed('/etc/rspamd', r('/etc/rspamd'));
    for (const d of ['/run/rspamd', '/var/lib/rspamd', '/var/log/rspamd']) await ownedDir(r(d), '_rspamd');
  };
  const saHome = r('/var/lib/spamassassin');
  const saPrepare = async () => {
    await reachable();
    await seed('/etc/spamassassin', r('/etc/spamassassin'));
    await ownedDir(r('/run'), undefined);
    await ownedDir(saHome, 'debian-spamd');
    await ownedDir(r('/var/log/spamd'), 'debian-spamd');
  };
  const redisDirs = async () => {
    await reachable();
    for (const d of ['/run/redis', '/var/lib/redis', '/var/log/redis']) await ownedDir(r(d), 'redis', 0o750);
  };
  const dovecotConf = r('/etc/dovecot/dovecot.conf');
  const dovecotPrepare = async () => {
    await reachable();
    await mkdir(r('/etc/dovecot/conf.d'), { recursive: true, mode: 0o755 });
    // scoped's own config, written once: what the admin adds goes into conf.d.
    if (!existsSync(dovecotConf)) await writeFile(dovecotConf, sandboxDovecotConf(root), { mode: 0o644, flag: 'wx' }).catch(ignoreExists);
    await ownedDir(r('/var/lib/dovecot'), undefined);
    await ownedDir(r('/var/log'), undefined);
  };
  return {
    rspamd: {
      program: r('/usr/bin/rspamd'),
      start: ['-c', r('/etc/rspamd/rspamd.conf'), ...rspamdVars, '-u', '_rspamd', '-g', '_rspamd'],
      pidFile: r('/run/rspamd/rspamd.pid'),
      check: {
        program: r('/usr/bin/rspamadm'),
        args: [...rspamdVars, 'configtest', '-c', r('/etc/rspamd/rspamd.conf')],
        inputs: [r('/etc/rspamd'), '/usr/share/rspamd'],
        bind: { over: '/var/lib/rspamd', from: r('/var/lib/rspamd') },
      },
      ready: ports['rspamd.milter'],
      stopTimeoutMs: 60_000,
      readyTimeoutMs: 90_000,
      log: r('/var/log/rspamd/rspamd.log'),
      prepare: rspamdPrepare,
    },
    spamd: {
      program: r('/usr/sbin/spamd'),
      start: [
        '--daemonize',
        '--pidfile',
        r('/run/spamd.pid'),
        '--listen',
        `${ports.spamd.host}:${ports.spamd.port}`,
        '--siteconfigpath',
        r('/etc/spamassassin'),
        '-u',
        'debian-spamd',
        '-g',
        'debian-spamd',
        '--nouser-config',
        `--helper-home-dir=${saHome}`,
        '--max-children',
        '2',
        '-s',
        r('/var/log/spamd/spamd.log'),
      ],
      pidFile: r('/run/spamd.pid'),
      // HOME inside the root: the check never writes a user's prefs outside it.
      check: {
        program: r('/usr/bin/spamassassin'),
        args: ['--siteconfigpath', r('/etc/spamassassin'), '--lint'],
        inputs: [r('/etc/spamassassin'), ...SPAMASSASSIN_INPUTS.slice(1)],
        env: { ...process.env, HOME: saHome },
      },
      ready: ports.spamd,
      log: r('/var/log/spamd/spamd.log'),
      prepare: saPrepare,
    },
    'redis-server': {
      program: r('/usr/bin/redis-server'),
      start: [
        '--port',
        String(ports.redis.port),
        '--bind',
        ports.redis.host,
        '--dir',
        r('/var/lib/redis'),
        '--pidfile',
        r('/run/redis/redis-server.pid'),
        '--daemonize',
        'yes',
        '--save',
        '',
        '--logfile',
        r('/var/log/redis/redis-server.log'),
      ],
      pidFile: r('/run/redis/redis-server.pid'),
      ready: ports.redis,
      log: r('/var/log/redis/redis-server.log'),
      user: 'redis',
      prepare: redisDirs,
    },
    postsrsd: {
      program: r('/usr/sbin/postsrsd'),
      get start() {
        return postsrsdArgs(root, ports['postsrsd.forward'], ports['postsrsd.reverse'], r('/run/postsrsd/postsrsd.pid'));
      },
      pidFile: r('/run/postsrsd/postsrsd.pid'),
      ready: ports['postsrsd.forward'],
      prepare: () => postsrsdPrepare(root, r('/run/postsrsd')),
    },
    dovecot: {
      program: r('/usr/sbin/dovecot'),
      start: ['-c', dovecotConf],
      pidFile: r('/run/dovecot/master.pid'),
      check: { program: r('/usr/sbin/dovecot'), args: ['-c', dovecotConf, '-n'], inputs: [r('/etc/dovecot')] },
      log: r('/var/log/dovecot.log'),
      reloadKeepsWorkers: true,
      prepare: dovecotPrepare,
    },
  };
}

function ignoreExists(err: unknown): void {
  if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
}

/** Where a sandbox root keeps its ports. */
export const PORTS_FILE = '/var/lib/scoped/ports.json';

/** Whether nothing listens on this port of the loopback address (binding it succeeds). */
function bindable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** Whether something accepts TCP connections at the endpoint. */
export function accepting(e: Endpoint, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: e.host, port: e.port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/**
 * Free ports from below the kernel's ephemeral range (so an outgoing connection is never handed
 * one of them later), each tried by binding it, none of them `taken`.
 */
async function freePorts(count: number, taken: Set<number>): Promise<number[]> {
  const out: number[] = [];
  for (let tries = 0; out.length < count; tries++) {
    if (tries > 5_000) throw new Error('no free loopback ports found for the filter daemons between 20000 and 32767');
    const port = 20_000 + (randomBytes(2).readUInt16BE(0) % 12_768);
    if (taken.has(port) || out.includes(port)) continue;
    if (await bindable('127.0.0.1', port)) out.push(port);
  }
  return out;
}

function parsePorts(text: string): Partial<Record<EndpointName, Endpoint>> {
  const out: Partial<Record<EndpointName, Endpoint>> = {};
  try {
    const raw = JSON.parse(text) as Record<string, unknown>;
    for (const name of ENDPOINT_NAMES) {
      const e = raw[name] as Partial<Endpoint> | undefined;
      // An IP address only: the host goes into rspamd's UCL files, master.cf's pipe argv and main.cf.
      if (e && typeof e.host === 'string' && isIP(e.host) !== 0 && Number.isInteger(e.port) && (e.port as number) > 0 && (e.port as number) < 65_536)
        out[name] = { host: e.host, port: e.port as number };
    }
  } catch {
    // unreadable: chosen again
  }
  return out;
}

/**
 * A sandbox root's endpoints: chosen free once and kept in ROOT/var/lib/scoped/ports.json
 * (0644), so the root's daemons, its Postfix and every scoped on it agree. The first writer
 * wins: a process that loses the race reads the winner's choice.
 */
export async function sandboxEndpoints(root: string): Promise<Record<EndpointName, Endpoint>> {
  const file = path.join(root, PORTS_FILE);
  const known = parsePorts(await readFile(file, 'utf8').catch(() => '{}'));
  const missing = ENDPOINT_NAMES.filter((n) => !known[n]);
  if (!missing.length) return known as Record<EndpointName, Endpoint>;
  const ports = await freePorts(missing.length, new Set(Object.values(known).map((e) => e.port)));
  const chosen = { ...known };
  missing.forEach((n, i) => {
    chosen[n] = { host: '127.0.0.1', port: ports[i]! };
  });
  await mkdir(path.dirname(file), { recursive: true, mode: 0o755 });
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(tmp, `${JSON.stringify(chosen, null, 2)}\n`, { mode: 0o644, flag: constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL });
  await chmod(tmp, 0o644);
  try {
    if (Object.keys(known).length === 0) {
      // Nothing there yet: create it only if no other process did meanwhile.
      try {
        await link(tmp, file);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        return sandboxEndpoints(root);
      }
    } else {
      await rename(tmp, file);
    }
  } finally {
    await rm(tmp, { force: true });
  }
  return chosen as Record<EndpointName, Endpoint>;
}
