/**
 * A filter daemon's pid file lies in a directory its own user owns (run/rspamd is rspamd's), and
 * a pid file outlives a crash while the kernel hands its pid to someone else. A pid file naming
 * a process that only has an argument called rspamd (`journalctl -fu rspamd`, `less /etc/rspamd`,
 * run by the admin as root) made scoped count rspamd as running (so it never started the filter)
 * and signal that process on a reload or a stop.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { chooseServiceDriver } from './services.js';

const nowhere = { hostConfigDir: '/nonexistent', masterPidFile: async () => null, masterProgram: async () => '/nonexistent/master' };

let root: string | undefined;
let bystander: ChildProcess | undefined;
afterEach(async () => {
  bystander?.kill('SIGKILL');
  if (root) await rm(root, { recursive: true, force: true });
});

describe('a pid file naming a process that is not the daemon', () => {
  it('is not the daemon running, and a stop leaves that process alone', async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'scoped-pidfile-'));
    // A process whose argument, not its program, is named rspamd.
    bystander = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', path.join(root, 'etc/rspamd')], { stdio: 'ignore' });
    await new Promise((r) => bystander!.once('spawn', r));
    const pidFile = path.join(root, 'run/rspamd/rspamd.pid');
    await mkdir(path.dirname(pidFile), { recursive: true });
    await writeFile(pidFile, `${bystander.pid}\n`);

    const driver = chooseServiceDriver(root, nowhere);
    expect(await driver.running('rspamd')).toBe(false);
    await driver.control('rspamd', 'stop');
    expect(bystander.exitCode).toBeNull();
    expect(bystander.signalCode).toBeNull();
  });
});
