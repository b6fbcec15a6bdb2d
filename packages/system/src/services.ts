import { existsSync } from 'node:fs';
import type { ServiceView } from '@scoped/sdk';
import { exec } from './exec.js';

export type ServiceAction = 'reload' | 'restart' | 'start' | 'stop';

/** Controls services: systemd in production, the services' own commands where systemd does not run. */
export interface ServiceDriver extends ServiceView {
  readonly name: string;
  control(service: string, action: ServiceAction): Promise<void>;
}

/** Drives Postfix directly with `postfix -c DIR`, for machines without systemd and for sandboxes. */
export class DirectServiceDriver implements ServiceDriver {
  readonly name = 'direct';
  constructor(private readonly postfixConfigDir: string) {}

  async installed(service: string): Promise<boolean> {
    if (service !== 'postfix') return false;
    try {
      await exec('postconf', ['-h', '-d', 'mail_version'], { timeoutMs: 5_000 });
      return true;
    } catch {
      return false;
    }
  }

  async running(service: string): Promise<boolean> {
    if (service !== 'postfix') return false;
    try {
      await exec('postfix', ['-c', this.postfixConfigDir, 'status'], { timeoutMs: 10_000 });
      return true;
    } catch {
      return false;
    }
  }

  async control(service: string, action: ServiceAction): Promise<void> {
    if (service !== 'postfix') throw new Error(`the direct service driver does not control ${service}`);
    const verb = action === 'restart' ? 'reload' : action;
    await exec('postfix', ['-c', this.postfixConfigDir, verb], { timeoutMs: 60_000 });
  }
}

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
export function chooseServiceDriver(root: string, postfixConfigDir: string): ServiceDriver {
  return root === '/' && existsSync('/run/systemd/system') ? new SystemdServiceDriver() : new DirectServiceDriver(postfixConfigDir);
}
