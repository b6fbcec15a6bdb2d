import { createHash } from 'node:crypto';
import { type Stats, constants, existsSync } from 'node:fs';
import path from 'node:path';
import { lstat, open, readFile, readdir, readlink, realpath, rm, stat } from 'node:fs/promises';
import type { Endpoint, EndpointName, ServiceView } from '@scoped/sdk';
import { DEBIAN_ENDPOINTS, type DaemonSpec, accepting, debianDaemons, rootDaemons, sandboxEndpoints, userIds } from './daemons.js';
import { exec } from './exec.js';

export type ServiceAction = 'reload' | 'restart' | 'start' | 'stop';

/** Controls services: systemd in production, the services' own commands where systemd does not run. */
export interface ServiceDriver extends ServiceView {
  readonly name: string;
  control(service: string, action: ServiceAction): Promise<void>;
}

/** What the direct driver needs of Postfix: its config dir, where its master keeps its pid, and the master's program. */
export interface PostfixProcess {
  readonly hostConfigDir: string;
  /** The pid file as a host path inside the root, or null when it is missing or outside the root. */
  masterPidFile(): Promise<string | null>;
  /** Postfix's own master program (from Postfix's built-in daemon_directory). */
  masterProgram(): Promise<string>;
}

/** Whether a process with this pid exists (signal 0 tests without sending anything). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The filter daemons as Debian installs them on `/`; their own programs daemonize and write these pid files. */
export const SPAM_DAEMONS: Record<string, DaemonSpec> = debianDaemons();

/** Whether a process has exited: no such pid, or a zombie waiting to be reaped. */
async function gone(pid: number): Promise<boolean> {
  if (!alive(pid)) return true;
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  return stat === '' || stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
}

/** The processes whose parent is `pid` (a daemon's workers). */
async function childrenOf(pid: number): Promise<number[]> {
  const out: number[] = [];
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    // After the command (which may hold spaces and parentheses): the state, then the parent's pid.
    if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(entry));
  }
  return out;
}

/** Poll `done` every 50 ms for up to `ms`; whether it came true. */
async function until(done: () => Promise<boolean>, ms: number, everyMs = 50): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, everyMs))) if (await done()) return true;
  return done();
}

/** A pid file's text: a regular file, not a symlink, a FIFO or a device that could block or mislead the read. */
async function readPidFile(file: string): Promise<string> {
  const handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    const st = await handle.stat();
    if (!st.isFile() || st.size > 64) throw new Error(`${file} is not a pid file`);
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}

/**
 * Whether a process is Postfix's master: owned by root and running the master program itself
 * (its /proc/PID/exe), so a pid file naming any other live process is not taken for Postfix.
 */
export async function isPostfixMaster(pid: number, program: string): Promise<boolean> {
  try {
    const [exe, real, st] = await Promise.all([readlink(`/proc/${pid}/exe`), realpath(program), stat(`/proc/${pid}`)]);
    // A master still running from before a package upgrade shows its program as "PATH (deleted)".
    return exe.replace(/ \(deleted\)$/, '') === real && st.uid === 0;
  } catch {
    return false;
  }
}

/**
 * The pid in a pid file when that process is alive and is the program (a stale pid file may
 * name a pid the kernel has since given to something else, which root must never signal).
 */
async function livePid(file: string, program?: string): Promise<number | null> {
  try {
    const pid = Number((await readPidFile(file)).trim());
    if (!Number.isInteger(pid) || pid <= 0 || !alive(pid)) return null;
    if (program === undefined) return pid;
    return (await runsProgram(pid, program)) ? pid : null;
  } catch {
    return null;
  }
}

/**
 * Whether a live process runs this program: its executable is the program (a symlink to it
 * counts), its own name is the program's (a daemon that retitles itself `rspamd: main process`
 * or `spamd`), or it is an interpreter running the program as its script.
 */
async function runsProgram(pid: number, program: string): Promise<boolean> {
  const base = path.basename(program);
  const [exe, real, cmdline] = await Promise.all([
    readlink(`/proc/${pid}/exe`).catch(() => ''),
    realpath(program).catch(() => program),
    readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => ''),
  ]);
  if (exe !== '' && exe.replace(/ \(deleted\)$/, '') === real) return true;
  const args = cmdline.split('\0');
  // The name the process gives itself (spamd's "spamd", redis's "PATH HOST:PORT", rspamd's "rspamd: main process"):
  // never any later argument, which any process may carry (`journalctl -fu rspamd`, `less /etc/rspamd`).
  const name = args[0]!;
  if (path.basename(name.split(' ')[0]!) === base || name.startsWith(`${base}: `)) return true;
  // A script its interpreter runs (spamd before it renames itself): the interpreter's first operand.
  const interpreter = /^(?:perl|python|ruby|node|sh|bash|dash)[\d.]*$/.test(path.basename(exe.replace(/ \(deleted\)$/, '')));
  return interpreter && args.slice(1).find((a) => !a.startsWith('-')) === program;
}

/** The last lines of a log file, for an error; empty when it cannot be read. */
async function logTail(file: string, lines = 5): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.trimEnd().split('\n').slice(-lines).join(' | ');
}

/** What to read when a daemon did not come up: its log file and how it ends, or the system log. */
async function whereToLook(daemon: DaemonSpec): Promise<string> {
  if (!daemon.log) return 'see the system log (mail.log) for why';
  const tail = await logTail(daemon.log);
  return tail ? `its log ${daemon.log} ends: ${tail}` : `its log ${daemon.log} says nothing`;
}

type DaemonSource = Record<string, DaemonSpec> | (() => Promise<Record<string, DaemonSpec>>);

/**
 * Drives services directly, for machines without systemd and for sandboxes: Postfix with
 * `postfix -c DIR`, and the filter daemons (rspamd, spamd, redis-server) run by scoped itself:
 * started by their programs and waited for until their pid is live and their port accepts
 * connections, reloaded with SIGHUP, stopped with SIGTERM (and waited for), found by their pid
 * files (a stale one counts as not running). On `/` the daemons are Debian's; on a sandbox root
 * (anything but `/`) they are the root's own (rootDaemons), on the root's own ports.
 */
export class DirectServiceDriver implements ServiceDriver {
  readonly name = 'direct';
  private daemonSpecs: Promise<Record<string, DaemonSpec>> | null = null;
  constructor(
    private readonly postfix: PostfixProcess,
    private readonly daemonSource: DaemonSource = {},
    private readonly endpoints: () => Promise<Record<EndpointName, Endpoint>> = async () => DEBIAN_ENDPOINTS,
    /** The daemons' programs and pid files alone, for installed() and running(): reading state never chooses ports. */
    private readonly located: DaemonSource = daemonSource,
  ) {}

  private daemons(): Promise<Record<string, DaemonSpec>> {
    const source = this.daemonSource;
    if (typeof source !== 'function') return Promise.resolve(source);
    this.daemonSpecs ??= source().catch((err: unknown) => {
      this.daemonSpecs = null;
      throw err;
    });
    return this.daemonSpecs;
  }

  private async daemon(service: string): Promise<DaemonSpec | undefined> {
    return (await this.daemons())[service];
  }

  private async locate(service: string): Promise<Pick<DaemonSpec, 'program' | 'pidFile'> | undefined> {
    const source = this.located;
    return (typeof source === 'function' ? await source() : source)[service];
  }

  async endpoint(name: EndpointName): Promise<Endpoint> {
    const e = (await this.endpoints())[name];
    if (!e) throw new Error(`no endpoint named ${name}`);
    return e;
  }

  async installed(service: string): Promise<boolean> {
    const program = service === 'postfix' ? '/usr/sbin/postfix' : (await this.locate(service))?.program;
    return program !== undefined && existsSync(program);
  }

  async checkConfig(service: string): Promise<string | null> {
    const daemon = await this.daemon(service);
    if (!daemon?.check) return checkServiceConfig(service);
    if (!existsSync(daemon.check.program)) return null;
    const { program, args, env, bind, inputs } = daemon.check;
    // A check that passed on these very files passes again (preparing seeds only missing files, which would change the fingerprint).
    const key = `${program}\0${args.join('\0')}`;
    const passed = passedChecks.get(key);
    if (inputs && passed !== undefined && passed === (await checkFingerprint([program, ...inputs]))) return null;
    await daemon.prepare?.();
    const fingerprint = inputs ? await checkFingerprint([program, ...inputs]) : null;
    const problem = await runConfigCheck(program, args, env, bind);
    if (problem === null && fingerprint !== null) {
      if (passedChecks.size >= 64) passedChecks.clear();
      passedChecks.set(key, fingerprint);
    }
    return problem;
  }

  async running(service: string): Promise<boolean> {
    if (service === 'postfix') return (await this.postfixMaster()) !== null;
    const daemon = await this.locate(service);
    return daemon !== undefined && (await livePid(daemon.pidFile, daemon.program)) !== null;
  }

  /**
   * The live Postfix master's pid: its pid file inside the root (never read elsewhere), naming
   * a live root process whose executable is Postfix's master program.
   */
  private async postfixMaster(): Promise<number | null> {
    const file = await this.postfix.masterPidFile();
    const pid = file === null ? null : await livePid(file);
    return pid !== null && (await isPostfixMaster(pid, await this.postfix.masterProgram())) ? pid : null;
  }

  async control(service: string, action: ServiceAction): Promise<void> {
    if (service === 'postfix') {
      const verb = action === 'restart' ? 'reload' : action;
      // Done when postfix exits: a reload leaves postsuper running in the background, holding its output, which is not part of the reload.
      await exec('postfix', ['-c', this.postfix.hostConfigDir, verb], { timeoutMs: 60_000, untilExit: true });
      return;
    }
    const daemon = await this.daemon(service);
    if (!daemon) throw new Error(`scoped cannot ${action} ${service} here (it is not one of the services scoped runs directly); ${action} it by hand`);
    const running = () => livePid(daemon.pidFile, daemon.program);
    const pid = await running();
    if (action === 'reload' && pid !== null) {
      // rspamd (and spamd) start new workers on SIGHUP and retire the old ones, which go on serving
      // with the old configuration until they exit: the reload is done once they are gone, so a
      // change (a new DKIM selector) holds for the next message. A worker busy past the limit is left to finish.
      const workers = await childrenOf(pid);
      process.kill(pid, 'SIGHUP');
      if (daemon.reloadKeepsWorkers) return;
      await until(async () => (await Promise.all(workers.map(gone))).every(Boolean), daemon.stopTimeoutMs ?? 15_000);
      return;
    }
    if ((action === 'stop' || action === 'restart') && pid !== null) {
      process.kill(pid, 'SIGTERM');
      // Gone (an unreaped zombie still answers signal 0, and a daemon may remove its pid file before it exits).
      const ms = daemon.stopTimeoutMs ?? 15_000;
      if (!(await until(async () => gone(pid), ms))) throw new Error(`${service} (pid ${pid}) did not stop within ${ms / 1000} s of SIGTERM`);
    }
    if (action === 'start' || action === 'restart' || (action === 'reload' && pid === null)) {
      if ((await running()) !== null) return;
      await this.startDaemon(service, daemon);
    }
  }

  /** Run the daemon's program and wait until its pid is live and its port accepts connections. */
  private async startDaemon(service: string, daemon: DaemonSpec): Promise<void> {
    const { ready } = daemon;
    if (ready && (await accepting(ready)))
      throw new Error(
        `${service} cannot start: something else already listens on ${ready.host}:${ready.port}; stop it, or (on a sandbox root) remove the root's var/lib/scoped/ports.json to choose other ports`,
      );
    await daemon.prepare?.();
    // A pid file whose process is gone (a crash, a kill -9) is stale: some daemons refuse to start over one.
    await rm(daemon.pidFile, { force: true });
    let ids: { uid: number; gid: number } | undefined;
    if (daemon.user) {
      const found = userIds(daemon.user);
      if (!found) throw new Error(`${service} cannot start: its user ${daemon.user} does not exist; reinstall Debian's ${service} package`);
      ids = found;
    }
    // Done when the program exits: the daemon it forked keeps the inherited output open for as long as it runs.
    await exec(daemon.program, daemon.start, { timeoutMs: 60_000, untilExit: true, ...ids });
    const timeoutMs = daemon.readyTimeoutMs ?? 30_000;
    let seen: number | null = null;
    let died = false;
    const up = await until(
      async () => {
        const pid = await running();
        if (pid !== null) seen = pid;
        else if (seen !== null) died = true;
        return died || (pid !== null && (!ready || (await accepting(ready))));
        // Polled often: the wait for its port is most of what switching a filter on costs.
      },
      timeoutMs,
      10,
    );
    if (up && !died) return;
    // A daemon that runs but never became ready is stopped again: a failed start leaves nothing running.
    const stray = await running();
    if (stray !== null) {
      process.kill(stray, 'SIGTERM');
      const ms = daemon.stopTimeoutMs ?? 15_000;
      if (!(await until(async () => gone(stray), ms))) process.kill(stray, 'SIGKILL');
    }
    const what = died
      ? `its process (pid ${seen}) exited`
      : seen === null
        ? `no live process in ${daemon.pidFile} after ${timeoutMs / 1000} s`
        : `nothing accepts connections on ${ready!.host}:${ready!.port} after ${timeoutMs / 1000} s`;
    throw new Error(`${service} did not come up: ${what}; ${await whereToLook(daemon)}`);

    async function running(): Promise<number | null> {
      return livePid(daemon.pidFile, daemon.program);
    }
  }
}

/** Each service's own configuration check, where it has one. */
const configChecks: Record<string, [string, string[]]> = {
  rspamd: ['rspamadm', ['configtest']],
  spamd: ['spamassassin', ['--lint']],
};

/** Run a service's configuration check; the tool's complaint, or null when it passes or is not installed. */
export function checkServiceConfig(service: string): Promise<string | null> {
  const check = configChecks[service];
  return check ? runConfigCheck(check[0], check[1]) : Promise.resolve(null);
}

/** The checks that passed, by program and arguments, with the fingerprint of what they read then. */
const passedChecks = new Map<string, string>();

/**
 * What a check reads, as one digest: every file and symlink under these paths (a file itself for
 * a program) with its size, mode, inode, change and modification times, and each directory's names. Any edit, package
 * upgrade or file added or taken away changes it; reading it costs a stat per file (about 300
 * for rspamd), against the second a check takes.
 */
export async function checkFingerprint(paths: readonly string[]): Promise<string> {
  const hash = createHash('sha256');
  const visit = async (p: string, depth: number): Promise<void> => {
    let st: Stats;
    try {
      st = await lstat(p);
    } catch {
      hash.update(`${p}\0-\n`);
      return;
    }
    // A directory counts by the names in it (visited below), not its times: a file written and
    // removed again in it leaves what the check reads as it was.
    hash.update(st.isDirectory() ? `${p}\0dir\n` : `${p}\0${st.size}\0${st.mode}\0${st.ino}\0${st.mtimeMs}\0${st.ctimeMs}\n`);
    if (st.isSymbolicLink()) {
      hash.update(await readlink(p).catch(() => ''));
      // A linked program or config dir: what it points to counts too.
      if (depth === 0) await visit(await realpath(p).catch(() => p), 1);
      return;
    }
    if (!st.isDirectory() || depth > 8) return;
    const names = (await readdir(p).catch(() => [] as string[])).sort();
    for (const name of names) await visit(path.join(p, name), depth + 1);
  };
  for (const p of paths) await visit(p, 0);
  return hash.digest('hex');
}

/** Whether this process may make a private mount namespace (root with CAP_SYS_ADMIN and util-linux's unshare). */
let namespaces: Promise<boolean> | null = null;
function canUnshare(): Promise<boolean> {
  namespaces ??= exec('unshare', ['--mount', 'true'], { timeoutMs: 10_000 }).then(
    () => true,
    () => false,
  );
  return namespaces;
}

/**
 * Run one configuration check; its complaint, or null when it passes or its program is absent.
 * With `bind`, the check runs in a private mount namespace with the root's directory over the
 * host's one, so what it writes there stays in the root.
 */
async function runConfigCheck(
  program: string,
  args: readonly string[],
  env?: NodeJS.ProcessEnv,
  bind?: { over: string; from: string },
): Promise<string | null> {
  let file = program;
  let argv = args;
  if (bind && existsSync(bind.over) && existsSync(bind.from) && (await canUnshare())) {
    file = 'unshare';
    argv = ['--mount', '--', '/bin/sh', '-c', 'mount --bind "$1" "$2" && shift 2 && exec "$@"', 'sh', bind.from, bind.over, program, ...args];
  }
  try {
    await exec(file, argv, { timeoutMs: 60_000, ...(env ? { env } : {}) });
    return null;
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') return null;
    const detail = ((err as { stderr?: string }).stderr ?? '').trim().split('\n').slice(-5).join(' | ');
    return `${path.basename(program)} ${args.join(' ')} failed${detail ? `: ${detail}` : ''}`;
  }
}

/** Drives services through systemctl. */
export class SystemdServiceDriver implements ServiceDriver {
  readonly name = 'systemd';
  constructor(private readonly systemctl = 'systemctl') {}

  async endpoint(name: EndpointName): Promise<Endpoint> {
    return DEBIAN_ENDPOINTS[name];
  }

  async installed(service: string): Promise<boolean> {
    try {
      const { stdout } = await exec(this.systemctl, ['list-unit-files', `${service}.service`, '--no-legend'], { timeoutMs: 10_000 });
      return stdout.trim() !== '';
    } catch {
      return false;
    }
  }

  checkConfig(service: string): Promise<string | null> {
    return checkServiceConfig(service);
  }

  async running(service: string): Promise<boolean> {
    try {
      await exec(this.systemctl, ['is-active', '--quiet', service], { timeoutMs: 10_000 });
      return true;
    } catch {
      return false;
    }
  }

  async control(service: string, action: ServiceAction): Promise<void> {
    await exec(this.systemctl, [action, service], { timeoutMs: 60_000 });
  }
}

/**
 * systemd when it runs this machine and the root is `/` (Debian's units rspamd, spamd,
 * redis-server); direct control otherwise: Debian's daemons on `/`, the root's own on a sandbox
 * root, on ports chosen once for that root.
 */
export function chooseServiceDriver(root: string, postfix: PostfixProcess): ServiceDriver {
  if (root !== '/') {
    let chosen: Promise<Record<EndpointName, Endpoint>> | null = null;
    const endpoints = () => {
      chosen ??= sandboxEndpoints(root).catch((err: unknown) => {
        chosen = null;
        throw err;
      });
      return chosen;
    };
    // Programs and pid files do not depend on the ports: looking at a daemon never chooses them (nor writes ports.json).
    const located = rootDaemons(root, DEBIAN_ENDPOINTS);
    return new DirectServiceDriver(postfix, async () => rootDaemons(root, await endpoints()), endpoints, located);
  }
  return existsSync('/run/systemd/system') ? new SystemdServiceDriver() : new DirectServiceDriver(postfix, SPAM_DAEMONS);
}
