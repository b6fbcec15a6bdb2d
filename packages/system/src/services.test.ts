/**
 * One contract for both service drivers. The direct driver runs a real daemon (a small Node
 * program that daemonizes, writes its pid file, logs SIGHUP and exits on SIGTERM); systemd
 * cannot run here, so the systemd driver drives a stand-in `systemctl` that keeps unit
 * states in a file and answers the same commands the same way (exit status 0/3 of
 * is-active, list-unit-files lines).
 */
import { spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DirectServiceDriver, type ServiceDriver, SystemdServiceDriver, chooseServiceDriver, isPostfixMaster } from './services.js';

const DAEMON = String.raw`
const fs = require('node:fs');
const { spawn } = require('node:child_process');
const [mode, pidFile, log] = process.argv.slice(2);
if (mode === 'start') {
  // Like a real daemon: fork into the background and return at once.
  spawn(process.execPath, [__filename, 'run', pidFile, log], { detached: true, stdio: 'ignore' }).unref();
} else {
  fs.writeFileSync(pidFile, process.pid + '\n');
  process.on('SIGHUP', () => fs.appendFileSync(log, 'reload\n'));
  process.on('SIGTERM', () => { fs.rmSync(pidFile, { force: true }); process.exit(0); });
  setInterval(() => {}, 1000);
}
`;

const SYSTEMCTL = (state: string) => String.raw`#!${process.execPath}
const fs = require('node:fs');
const file = ${JSON.stringify(state)};
const units = JSON.parse(fs.readFileSync(file, 'utf8'));
const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const [verb, name] = args;
const unit = name && units[name.replace(/\.service$/, '')];
const save = () => fs.writeFileSync(file, JSON.stringify(units));
switch (verb) {
  case 'list-unit-files': if (unit) console.log(name + ' enabled enabled'); process.exit(0);
  case 'is-active': if (!process.argv.includes('--quiet')) console.log(unit?.active ? 'active' : 'inactive'); process.exit(unit?.active ? 0 : 3);
  case 'start': case 'stop': case 'restart': case 'reload':
    if (!unit) { console.error('Unit ' + name + '.service not found.'); process.exit(5); }
    if (verb === 'reload' && !unit.active) { console.error('Job for ' + name + '.service failed: not active'); process.exit(1); }
    unit.active = verb !== 'stop'; if (verb === 'reload') unit.reloads++; save(); process.exit(0);
  default: console.error('unknown operation ' + verb); process.exit(1);
}
`;

interface Harness {
  driver: ServiceDriver;
  /** How many reloads the service has seen. */
  reloads(): Promise<number>;
}

function contract(name: string, make: (dir: string) => Promise<Harness>) {
  describe(`${name} service driver`, () => {
    let dir: string;
    let h: Harness;
    beforeAll(async () => {
      dir = await mkdtemp(path.join(os.tmpdir(), 'scoped-services-'));
      h = await make(dir);
    });
    afterAll(async () => {
      if (await h.driver.running('filterd')) await h.driver.control('filterd', 'stop');
      await rm(dir, { recursive: true, force: true });
    });

    it('knows what is installed', async () => {
      expect(await h.driver.installed('filterd')).toBe(true);
      expect(await h.driver.installed('no-such-service')).toBe(false);
    });

    it('starts a stopped service, and start is idempotent', async () => {
      expect(await h.driver.running('filterd')).toBe(false);
      await h.driver.control('filterd', 'start');
      expect(await h.driver.running('filterd')).toBe(true);
      await h.driver.control('filterd', 'start');
      expect(await h.driver.running('filterd')).toBe(true);
    });

    it('reloads a running service without stopping it', async () => {
      const before = await h.reloads();
      await h.driver.control('filterd', 'reload');
      await expect.poll(() => h.reloads()).toBe(before + 1);
      expect(await h.driver.running('filterd')).toBe(true);
    });

    it('stops it, and restarts it from stopped', async () => {
      await h.driver.control('filterd', 'stop');
      expect(await h.driver.running('filterd')).toBe(false);
      await h.driver.control('filterd', 'restart');
      expect(await h.driver.running('filterd')).toBe(true);
      await h.driver.control('filterd', 'stop');
      expect(await h.driver.running('filterd')).toBe(false);
    });

    it('refuses to control a service it does not know, with a message', async () => {
      await expect(h.driver.control('no-such-service', 'start')).rejects.toThrow(/no-such-service/);
    });
  });
}

const nowhere = { hostConfigDir: '/nonexistent', masterPidFile: async () => null, masterProgram: async () => '/nonexistent/master' };

contract('direct', async (dir) => {
  const script = path.join(dir, 'filterd.cjs');
  await writeFile(script, DAEMON);
  const pidFile = path.join(dir, 'filterd.pid');
  const log = path.join(dir, 'filterd.log');
  const driver = new DirectServiceDriver(nowhere, { filterd: { program: process.execPath, start: [script, 'start', pidFile, log], pidFile } });
  return { driver, reloads: async () => (await readFile(log, 'utf8').catch(() => '')).split('\n').filter(Boolean).length };
});

contract('systemd', async (dir) => {
  const state = path.join(dir, 'units.json');
  await writeFile(state, JSON.stringify({ filterd: { active: false, reloads: 0 } }));
  const systemctl = path.join(dir, 'systemctl');
  await writeFile(systemctl, SYSTEMCTL(state));
  await chmod(systemctl, 0o755);
  return {
    driver: new SystemdServiceDriver(systemctl),
    reloads: async () => (JSON.parse(await readFile(state, 'utf8')) as Record<string, { reloads: number }>).filterd!.reloads,
  };
});

describe('direct driver with a stale pid file', () => {
  it('never signals a process that is not the daemon, even when the pid file names it', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'scoped-services-'));
    const other = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      const pidFile = path.join(dir, 'filterd.pid');
      await writeFile(pidFile, `${other.pid}\n`);
      const driver = new DirectServiceDriver(nowhere, { filterd: { program: process.execPath, start: ['-e', '0'], pidFile } });
      expect(await driver.running('filterd')).toBe(false);
      await driver.control('filterd', 'stop');
      await new Promise((r) => setTimeout(r, 200));
      expect(other.exitCode).toBeNull();
      expect(other.signalCode).toBeNull();
    } finally {
      other.kill();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('direct driver, a daemon that runs but never becomes ready', () => {
  it('fails the start, names what it waited for, and stops the process it started', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'scoped-services-'));
    try {
      const script = path.join(dir, 'filterd.cjs');
      await writeFile(script, DAEMON);
      const pidFile = path.join(dir, 'filterd.pid');
      // The port it is waited on: free, and the stand-in never listens there.
      const probe = net.createServer();
      await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
      const port = (probe.address() as net.AddressInfo).port;
      await new Promise((r) => probe.close(r));
      const driver = new DirectServiceDriver(nowhere, {
        filterd: {
          program: process.execPath,
          start: [script, 'start', pidFile, path.join(dir, 'log')],
          pidFile,
          ready: { host: '127.0.0.1', port },
          readyTimeoutMs: 1_000,
        },
      });
      await expect(driver.control('filterd', 'start')).rejects.toThrow(
        new RegExp(`filterd did not come up: nothing accepts connections on 127\\.0\\.0\\.1:${port}`),
      );
      expect(await driver.running('filterd')).toBe(false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('direct driver, configuration checks', () => {
  it('runs a check again only when what it reads changed, and never remembers a failure', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'scoped-services-'));
    try {
      const conf = path.join(dir, 'conf');
      await mkdir(conf);
      await writeFile(path.join(conf, 'filterd.conf'), 'good\n');
      const runs = path.join(dir, 'runs');
      // The check counts its runs and fails while the config says "bad".
      const check = path.join(dir, 'check.sh');
      await writeFile(check, `#!/bin/sh\necho run >> '${runs}'\nif grep -q bad '${conf}/filterd.conf'; then echo "filterd.conf: bad value" >&2; exit 1; fi\n`, {
        mode: 0o755,
      });
      const driver = new DirectServiceDriver(nowhere, {
        filterd: { program: '/nonexistent/filterd', start: [], pidFile: path.join(dir, 'pid'), check: { program: check, args: [], inputs: [conf] } },
      });
      const count = async () => (await readFile(runs, 'utf8').catch(() => '')).split('\n').filter(Boolean).length;
      expect(await driver.checkConfig('filterd')).toBeNull();
      expect(await driver.checkConfig('filterd')).toBeNull();
      expect(await count()).toBe(1);
      await writeFile(path.join(conf, 'filterd.conf'), 'bad\n');
      expect(await driver.checkConfig('filterd')).toMatch(/check\.sh +failed: filterd\.conf: bad value/);
      expect(await driver.checkConfig('filterd')).toMatch(/bad value/);
      expect(await count()).toBe(3);
      await writeFile(path.join(conf, 'extra.conf'), 'x\n');
      await writeFile(path.join(conf, 'filterd.conf'), 'good\n');
      expect(await driver.checkConfig('filterd')).toBeNull();
      expect(await count()).toBe(4);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('direct driver on a sandbox root', () => {
  it('finds a spam filter installed only inside the root, whatever the host has', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'scoped-services-root-'));
    try {
      const driver = chooseServiceDriver(root, nowhere);
      expect(await driver.installed('rspamd')).toBe(false);
      expect(await driver.installed('spamd')).toBe(false);
      await mkdir(path.join(root, 'usr/bin'), { recursive: true });
      await writeFile(path.join(root, 'usr/bin/rspamd'), '#!/bin/sh\n', { mode: 0o755 });
      expect(await driver.installed('rspamd')).toBe(true);
      expect(await driver.installed('spamd')).toBe(false);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it("does not touch the host's spam daemons", async () => {
    const driver = new DirectServiceDriver(nowhere);
    expect(await driver.running('rspamd')).toBe(false);
    await expect(driver.control('rspamd', 'start')).rejects.toThrow(/sandbox root|by hand/);
  });
});

describe('the spam daemons of a sandbox root', () => {
  it("are the root's own, whatever the host has installed: absent until a program is put at ROOT/usr/bin/rspamd, then started from there", async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'scoped-root-'));
    await chmod(root, 0o755); // the daemons' users must reach their files under it
    const driver = chooseServiceDriver(root, nowhere);
    try {
      expect(await driver.installed('rspamd')).toBe(false);
      expect(await driver.installed('spamd')).toBe(false);
      expect(await driver.checkConfig('rspamd')).toBeNull();
      const program = path.join(root, 'usr/bin/rspamd');
      await mkdir(path.dirname(program), { recursive: true });
      await writeFile(program, '#!/bin/sh\necho "rspamd: no such config" >&2\nexit 1\n');
      await chmod(program, 0o755);
      expect(await driver.installed('rspamd')).toBe(true);
      await expect(driver.control('rspamd', 'start')).rejects.toThrow(`${program} exited with 1: rspamd: no such config`);
      expect(await driver.running('rspamd')).toBe(false);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe('isPostfixMaster', () => {
  it('knows a master still running from before a package upgrade, whose program shows as "PATH (deleted)"', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'scoped-master-'));
    const program = path.join(dir, 'master');
    const child = spawn('/bin/sh', ['-c', `cp /bin/sleep ${program} && exec ${program} 60`], { stdio: 'ignore' });
    try {
      // Wait until the child runs the copy, then replace the file, as a package upgrade does.
      for (let i = 0; i < 100 && !(await readFile(`/proc/${child.pid}/cmdline`, 'utf8').catch(() => '')).startsWith(program); i++)
        await new Promise((r) => setTimeout(r, 20));
      expect(await isPostfixMaster(child.pid!, program)).toBe(true);
      await writeFile(`${program}.new`, await readFile('/bin/sleep'));
      await rename(`${program}.new`, program);
      expect(await isPostfixMaster(child.pid!, program)).toBe(true);
      // Another program is not the master.
      expect(await isPostfixMaster(child.pid!, '/bin/true')).toBe(false);
    } finally {
      child.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  });
});
