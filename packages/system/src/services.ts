import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { ServiceView } from '@scoped/sdk';
import { exec } from './exec.js';

export type ServiceAction = 'reload' | 'restart' | 'start' | 'stop';

/** Controls services: systemd in production, the services' own commands where systemd does not run. */
export interface ServiceDriver extends ServiceView {
  readonly name: string;
  control(service: string, action: ServiceAction): Promise<void>;
}

/** What the direct driver needs of Postfix: its config dir and where its master keeps its pid. */
export interface PostfixProcess {
  readonly hostConfigDir: string;
  masterPidFile(): Promise<string>;
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

/**
 * Drives services directly, for machines without systemd and for sandboxes: Postfix with
 * `postfix -c DIR`, spam filters by their own programs. Whether Postfix runs is read from
 * its master's pid file, which costs no process start.
 */
export class DirectServiceDriver implements ServiceDriver {
  readonly name = 'direct';
  constructor(private readonly postfix: PostfixProcess) {}

  async installed(service: string): Promise<boolean> {
    const program = programs[service];
    if (!program) return false;
    return program.some((p) => existsSync(p));
  }

  checkConfig(service: string): Promise<string | null> {
    return checkServiceConfig(service);
  }

  async running(service: string): Promise<boolean> {
    if (service !== 'postfix') return false;
    try {
      const pid = Number((await readFile(await this.postfix.masterPidFile(), 'utf8')).trim());
      return Number.isInteger(pid) && pid > 0 && alive(pid);
    } catch {
      return false;
    }
  }

  async control(service: string, action: ServiceAction): Promise<void> {
    if (service !== 'postfix') throw new Error(`scoped cannot ${action} ${service} without systemd here; ${action} it by hand`);
    const verb = action === 'restart' ? 'reload' : action;
    await exec('postfix', ['-c', this.postfix.hostConfigDir, verb], { timeoutMs: 60_000 });
  }
}

/** Each service's own configuration check, where it has one. */
const configChecks: Record<string, [string, string[]]> = {
  rspamd: ['rspamadm', ['configtest']],
  spamassassin: ['spamassassin', ['--lint']],
};

/** Run a service's configuration check; the tool's complaint, or null when it passes or is not installed. */
export async function checkServiceConfig(service: string): Promise<string | null> {
  const check = configChecks[service];
  if (!check) return null;
  try {
    await exec(check[0], check[1], { timeoutMs: 60_000 });
    return null;
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') return null;
    const detail = ((err as { stderr?: string }).stderr ?? '').trim().split('\n').slice(-5).join(' | ');
    return `${check[0]} ${check[1].join(' ')} failed${detail ? `: ${detail}` : ''}`;
  }
}

/** Where each service's program lives when its Debian package is installed. */
const programs: Record<string, string[]> = {
  postfix: ['/usr/sbin/postfix'],
  rspamd: ['/usr/bin/rspamd'],
  spamassassin: ['/usr/sbin/spamd'],
};

/** Drives services through systemctl. */
export class SystemdServiceDriver implements ServiceDriver {
  readonly name = 'systemd';

  async installed(service: string): Promise<boolean> {
    try {
      const { stdout } = await exec('systemctl', ['list-unit-files', `${service}.service`, '--no-legend'], { timeoutMs: 10_000 });
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
      await exec('systemctl', ['is-active', '--quiet', service], { timeoutMs: 10_000 });
      return true;
    } catch {
      return false;
    }
  }

  async control(service: string, action: ServiceAction): Promise<void> {
    await exec('systemctl', [action, service], { timeoutMs: 60_000 });
  }
}

/** systemd when it runs this machine and the root is `/`; direct control otherwise. */
export function chooseServiceDriver(root: string, postfix: PostfixProcess): ServiceDriver {
  return root === '/' && existsSync('/run/systemd/system') ? new SystemdServiceDriver() : new DirectServiceDriver(postfix);
}
