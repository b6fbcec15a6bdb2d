import { constants, existsSync } from 'node:fs';
import path from 'node:path';
import { open, readFile, readlink, realpath, stat } from 'node:fs/promises';
import type { Endpoint, EndpointName, ServiceView } from '@scoped/sdk';
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

/** Where Debian's packages listen by default: what scoped uses on `/`. */
export const DEBIAN_ENDPOINTS: Record<EndpointName, Endpoint> = {
  'rspamd.milter': { host: '127.0.0.1', port: 11332 },
  'rspamd.normal': { host: '127.0.0.1', port: 11333 },
  'rspamd.controller': { host: '127.0.0.1', port: 11334 },
  redis: { host: '127.0.0.1', port: 6379 },
  spamd: { host: '127.0.0.1', port: 783 },
  'postfix.filter-return': { host: '127.0.0.1', port: 10025 },
};

/** Whether a process with this pid exists (signal 0 tests without sending anything). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** How the direct driver runs a daemon: its program, the arguments that start it in the background, and its pid file. */
export interface DaemonSpec {
  program: string;
  start: readonly string[];
  pidFile: string;
  /** Its configuration check, when not the one on PATH (checkServiceConfig). */
  check?: { program: string; args: readonly string[] };
}

/** The spam filters as Debian installs them; their own programs daemonize and write these pid files. */
export const SPAM_DAEMONS: Record<string, DaemonSpec> = {
  rspamd: { program: '/usr/bin/rspamd', start: ['-u', '_rspamd', '-g', '_rspamd'], pidFile: '/run/rspamd/rspamd.pid' },
  spamassassin: {
    program: '/usr/sbin/spamd',
    start: ['--daemonize', '--create-prefs', '--max-children', '5', '--pidfile', '/run/spamd.pid'],
    pidFile: '/run/spamd.pid',
  },
};

/** Poll `done` every 50 ms for up to `ms`; whether it came true. */
async function until(done: () => Promise<boolean>, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 50))) if (await done()) return true;
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
    const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
    return cmdline.some((arg) => arg === program || path.basename(arg) === path.basename(program)) ? pid : null;
  } catch {
    return null;
  }
}

/**
 * Drives services directly, for machines without systemd and for sandboxes: Postfix with
 * `postfix -c DIR`, and the spam filters' own daemons (started by their programs, reloaded
 * with SIGHUP, stopped with SIGTERM, found by their pid files). Whether a service runs is
 * read from its pid file, which costs no process start. On `/` the spam daemons are the host's;
 * on a sandbox root (anything but `/`) they are the root's own (rootDaemons).
 */
export class DirectServiceDriver implements ServiceDriver {
  readonly name = 'direct';
  constructor(
    private readonly postfix: PostfixProcess,
    private readonly daemons: Record<string, DaemonSpec> = {},
  ) {}

  async endpoint(name: EndpointName): Promise<Endpoint> {
    return DEBIAN_ENDPOINTS[name];
  }

  async installed(service: string): Promise<boolean> {
    const program = service === 'postfix' ? '/usr/sbin/postfix' : (this.daemons[service]?.program ?? programs[service]);
    return program !== undefined && existsSync(program);
  }

  checkConfig(service: string): Promise<string | null> {
    const check = this.daemons[service]?.check;
    return check ? runConfigCheck(check.program, check.args) : checkServiceConfig(service);
  }

  async running(service: string): Promise<boolean> {
    if (service === 'postfix') return (await this.postfixMaster()) !== null;
    const daemon = this.daemons[service];
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
    const daemon = this.daemons[service];
    if (!daemon) throw new Error(`scoped cannot ${action} ${service} here (it is not one of the services scoped runs directly); ${action} it by hand`);
    const running = () => livePid(daemon.pidFile, daemon.program);
    const pid = await running();
    if (action === 'reload' && pid !== null) return void process.kill(pid, 'SIGHUP');
    if ((action === 'stop' || action === 'restart') && pid !== null) {
      process.kill(pid, 'SIGTERM');
      // Gone, or its pid file no longer names it (an unreaped zombie still answers signal 0).
      if (!(await until(async () => !alive(pid) || (await running()) !== pid, 5_000)))
        throw new Error(`${service} (pid ${pid}) did not stop within 5 s of SIGTERM`);
    }
    if (action === 'start' || action === 'restart' || (action === 'reload' && pid === null)) {
      if ((await running()) !== null) return;
      await exec(daemon.program, daemon.start, { timeoutMs: 60_000 });
      if (!(await until(async () => (await running()) !== null, 10_000)))
        throw new Error(`${service} did not start: no live pid in ${daemon.pidFile} after 10 s`);
    }
  }
}

/** Each service's own configuration check, where it has one. */
const configChecks: Record<string, [string, string[]]> = {
  rspamd: ['rspamadm', ['configtest']],
  spamassassin: ['spamassassin', ['--lint']],
};

/** Run a service's configuration check; the tool's complaint, or null when it passes or is not installed. */
export function checkServiceConfig(service: string): Promise<string | null> {
  const check = configChecks[service];
  return check ? runConfigCheck(check[0], check[1]) : Promise.resolve(null);
}

/** Run one configuration check; its complaint, or null when it passes or its program is absent. */
async function runConfigCheck(program: string, args: readonly string[]): Promise<string | null> {
  try {
    await exec(program, args, { timeoutMs: 60_000 });
    return null;
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') return null;
    const detail = ((err as { stderr?: string }).stderr ?? '').trim().split('\n').slice(-5).join(' | ');
    return `${path.basename(program)} ${args.join(' ')} failed${detail ? `: ${detail}` : ''}`;
  }
}

/** Where each spam filter's program lives when its Debian package is installed. */
const programs: Record<string, string> = Object.fromEntries(Object.entries(SPAM_DAEMONS).map(([name, d]) => [name, d.program]));

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
 * The spam daemons of a sandbox root: their programs, pid files and checks inside the root, so
 * a sandbox never sees or touches the host's (whether rspamd is installed on the machine does
 * not matter), and a test puts a stand-in program at ROOT/usr/bin/rspamd to have one. A
 * sandbox root is trusted as a whole: its Postfix config already decides what Postfix runs.
 */
export function rootDaemons(root: string): Record<string, DaemonSpec> {
  const inRoot = (p: string) => path.join(root, p);
  const checks: Record<string, string> = { rspamd: '/usr/bin/rspamadm', spamassassin: '/usr/bin/spamassassin' };
  return Object.fromEntries(
    Object.entries(SPAM_DAEMONS).map(([name, d]) => {
      const spec: DaemonSpec = { program: inRoot(d.program), start: d.start.map((a) => (a === d.pidFile ? inRoot(a) : a)), pidFile: inRoot(d.pidFile) };
      const check = configChecks[name];
      if (check && checks[name]) spec.check = { program: inRoot(checks[name]), args: check[1] };
      return [name, spec];
    }),
  );
}

/** systemd when it runs this machine and the root is `/`; direct control otherwise (on a sandbox root, of the root's own spam daemons). */
export function chooseServiceDriver(root: string, postfix: PostfixProcess): ServiceDriver {
  if (root !== '/') return new DirectServiceDriver(postfix, rootDaemons(root));
  return existsSync('/run/systemd/system') ? new SystemdServiceDriver() : new DirectServiceDriver(postfix, SPAM_DAEMONS);
}
