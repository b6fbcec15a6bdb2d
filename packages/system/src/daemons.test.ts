/**
 * The real daemons (Debian's rspamd, spamd, redis-server and postsrsd, linked into a temp root with
 * linkFilterPrograms) run by the direct driver on a sandbox root: each starts, answers on its
 * endpoint, reloads and stops; two roots at once get different ports and both run; a daemon
 * killed by hand shows as not running and starts again; a failed start or check says why; and
 * nothing is written outside the root.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, connect } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Endpoint, EndpointName } from '@scoped/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { linkFilterPrograms } from '../../../test/helpers/filters.js';
import { PORTS_FILE } from './daemons.js';
import { type ServiceDriver, chooseServiceDriver } from './services.js';

const nowhere = { hostConfigDir: '/nonexistent', masterPidFile: async () => null, masterProgram: async () => '/nonexistent/master' };

/**
 * Host paths a sandbox must never write: every name, mode and content under them. Content, not
 * mtimes: other rspamd processes on the machine (a host check, another sandbox's) rewrite
 * Debian's hyperscan cache in /var/lib/rspamd with the same bytes.
 */
const HOST_PATHS = [
  '/etc/rspamd',
  '/etc/spamassassin',
  '/etc/redis',
  '/run',
  '/var/lib/rspamd',
  '/var/lib/spamassassin',
  '/var/lib/redis',
  '/var/log/rspamd',
  '/var/log/redis',
  '/etc/default/postsrsd',
  '/var/lib/postsrsd',
];
function hostDigest(): string[] {
  const h: string[] = [];
  const walk = (p: string, depth: number) => {
    let st: ReturnType<typeof lstatSync>;
    try {
      st = lstatSync(p);
    } catch {
      h.push(`${p} absent`);
      return;
    }
    h.push(`${p} ${st.mode} ${st.isFile() ? createHash('sha256').update(readFileSync(p)).digest('hex') : ''}`);
    // /run's own entries (other processes come and go there) are not ours to judge beyond what a filter would write.
    if (st.isDirectory() && depth < 3)
      for (const n of readdirSync(p).sort()) if (p !== '/run' || /rspamd|spamd|redis|postsrsd/.test(n)) walk(path.join(p, n), depth + 1);
  };
  for (const p of HOST_PATHS) walk(p, 0);
  return h;
}

/** Processes whose command line or executable names the root. */
function pidsIn(root: string): number[] {
  return readdirSync('/proc')
    .filter((n) => /^\d+$/.test(n) && Number(n) !== process.pid)
    .map(Number)
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(root);
      } catch {
        return false;
      }
    });
}

function accepting(e: Endpoint): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(e.port, e.host);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Send a request to a TCP endpoint and read until the server closes, or `until` matches. */
function talk(e: Endpoint, send: string, until?: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(e.port, e.host);
    let got = '';
    s.setTimeout(30_000, () => s.destroy(new Error(`no answer from ${e.host}:${e.port}`)));
    s.on('data', (d) => {
      got += d.toString();
      if (until?.test(got)) s.end();
    });
    s.once('close', () => resolve(got));
    s.once('error', reject);
    s.write(send);
  });
}

const GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X';
const message = (body: string) => `From: someone@example.test\r\nTo: you@example.test\r\nSubject: test\r\nMessage-ID: <t@example.test>\r\n\r\n${body}\r\n`;

/** A sandbox root with the host's filter programs linked in, and its driver. */
async function sandbox(): Promise<{ root: string; driver: ServiceDriver; ep: (n: EndpointName) => Promise<Endpoint> }> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'scoped-daemons-'));
  await chmod(root, 0o755); // the daemons' users (redis, debian-spamd) must reach their files
  await linkFilterPrograms(root);
  const driver = chooseServiceDriver(root, nowhere);
  return { root, driver, ep: (n) => driver.endpoint(n) };
}

/** rspamd's workers bound to the root's endpoints (what the spam-filter unit writes in production). */
async function bindRspamd(root: string, driver: ServiceDriver): Promise<void> {
  const dir = path.join(root, 'etc/rspamd/local.d');
  await mkdir(dir, { recursive: true });
  const bind = async (file: string, name: EndpointName, extra = '') => {
    const e = await driver.endpoint(name);
    await writeFile(path.join(dir, file), `bind_socket = "${e.host}:${e.port}";\n${extra}`);
  };
  await bind('worker-proxy.inc', 'rspamd.milter', 'milter = yes;\nupstream "local" { default = yes; self_scan = yes; }\n');
  await bind('worker-normal.inc', 'rspamd.normal');
  await bind('worker-controller.inc', 'rspamd.controller');
}

describe('the filter daemons on a sandbox root', { timeout: 180_000 }, () => {
  let hostBefore: string[];
  const roots: string[] = [];
  const drivers: ServiceDriver[] = [];
  async function fresh() {
    const s = await sandbox();
    roots.push(s.root);
    drivers.push(s.driver);
    return s;
  }

  beforeAll(() => {
    hostBefore = hostDigest();
  });

  afterAll(async () => {
    for (const driver of drivers)
      for (const service of ['rspamd', 'spamd', 'redis-server', 'postsrsd'])
        if (await driver.running(service).catch(() => false)) await driver.control(service, 'stop').catch(() => undefined);
    for (const root of roots) {
      for (const pid of pidsIn(root)) process.kill(pid, 'SIGKILL');
      await rm(root, { recursive: true, force: true });
    }
  });

  it('ports: chosen once per root, kept in var/lib/scoped/ports.json (0644), different for two roots', async () => {
    const a = await fresh();
    const b = await fresh();
    const names: EndpointName[] = [
      'rspamd.milter',
      'rspamd.normal',
      'rspamd.controller',
      'redis',
      'spamd',
      'postfix.filter-return',
      'postsrsd.forward',
      'postsrsd.reverse',
    ];
    const pa = await Promise.all(names.map((n) => a.ep(n)));
    const pb = await Promise.all(names.map((n) => b.ep(n)));
    const all = [...pa, ...pb].map((e) => e.port);
    expect(new Set(all).size).toBe(all.length);
    for (const e of pa) expect(e.host).toBe('127.0.0.1');
    const file = path.join(a.root, PORTS_FILE);
    expect(statSync(file).mode & 0o777).toBe(0o644);
    const kept = JSON.parse(readFileSync(file, 'utf8')) as Record<string, Endpoint>;
    expect(names.map((n) => kept[n])).toEqual(pa);
    // Another scoped on the same root (a new driver) sees the same ports.
    const again = chooseServiceDriver(a.root, nowhere);
    expect(await Promise.all(names.map((n) => again.endpoint(n)))).toEqual(pa);
  });

  it('redis-server: two roots at once both run on their own ports, answer PING, and stop', async () => {
    const a = await fresh();
    const b = await fresh();
    await Promise.all([a.driver.control('redis-server', 'start'), b.driver.control('redis-server', 'start')]);
    for (const s of [a, b]) {
      expect(await s.driver.running('redis-server')).toBe(true);
      expect(await talk(await s.ep('redis'), 'PING\r\n', /\r\n/)).toBe('+PONG\r\n');
      // Its files are the root's: data dir, pid file and log.
      expect(existsSync(path.join(s.root, 'run/redis/redis-server.pid'))).toBe(true);
      expect(readFileSync(path.join(s.root, 'var/log/redis/redis-server.log'), 'utf8')).toMatch(/Ready to accept connections/);
    }
    expect((await a.ep('redis')).port).not.toBe((await b.ep('redis')).port);
    await a.driver.control('redis-server', 'reload');
    expect(await a.driver.running('redis-server')).toBe(true);
    await a.driver.control('redis-server', 'stop');
    expect(await a.driver.running('redis-server')).toBe(false);
    expect(await accepting(await a.ep('redis'))).toBe(false);
    // The other root's redis is untouched.
    expect(await talk(await b.ep('redis'), 'PING\r\n', /\r\n/)).toBe('+PONG\r\n');
    await b.driver.control('redis-server', 'stop');
    expect(pidsIn(a.root)).toEqual([]);
    expect(pidsIn(b.root)).toEqual([]);
  });

  it('a daemon killed by hand shows as not running (its pid file stale) and starts again', async () => {
    const s = await fresh();
    await s.driver.control('redis-server', 'start');
    const pid = Number(readFileSync(path.join(s.root, 'run/redis/redis-server.pid'), 'utf8'));
    process.kill(pid, 'SIGKILL');
    await expect.poll(() => s.driver.running('redis-server')).toBe(false);
    expect(existsSync(path.join(s.root, 'run/redis/redis-server.pid'))).toBe(true);
    await s.driver.control('redis-server', 'start');
    expect(await s.driver.running('redis-server')).toBe(true);
    expect(await talk(await s.ep('redis'), 'PING\r\n', /\r\n/)).toBe('+PONG\r\n');
    await s.driver.control('redis-server', 'stop');
    expect(await s.driver.running('redis-server')).toBe(false);
    expect(pidsIn(s.root)).toEqual([]);
  });

  it('a start whose port another process holds is refused, saying so', async () => {
    const s = await fresh();
    const e = await s.ep('redis');
    const squatter = createServer().listen(e.port, e.host);
    await new Promise((r) => squatter.once('listening', r));
    try {
      await expect(s.driver.control('redis-server', 'start')).rejects.toThrow(
        `redis-server cannot start: something else already listens on 127.0.0.1:${e.port}`,
      );
      expect(await s.driver.running('redis-server')).toBe(false);
    } finally {
      squatter.close();
    }
  });

  it("postsrsd: starts from the root's settings file, answers forward and reverse lookups on its endpoints, restarts with a new domain, stops", async () => {
    const s = await fresh();
    // No domain yet: refused before anything runs, saying what writes it.
    await expect(s.driver.control('postsrsd', 'start')).rejects.toThrow(/names no SRS_DOMAIN \(cpcmd scope:set mail\.srs true writes it\)/);
    await mkdir(path.join(s.root, 'etc/default'), { recursive: true });
    await writeFile(path.join(s.root, 'etc/default/postsrsd'), 'SRS_DOMAIN=forwarder.test\n');
    await writeFile(path.join(s.root, 'etc/postsrsd.secret'), 'a-test-secret\n', { mode: 0o600 });
    await s.driver.control('postsrsd', 'start');
    expect(await s.driver.running('postsrsd')).toBe(true);
    const lookup = async (name: EndpointName, key: string) => (await talk(await s.ep(name), `get ${key}\n`, /\n/)).trim();
    const srs = await lookup('postsrsd.forward', 'quu@qux.test');
    expect(srs).toMatch(/^200 SRS0=[^=]+=[^=]+=qux\.test=quu@forwarder\.test$/);
    expect(await lookup('postsrsd.reverse', srs.slice(4))).toBe('200 quu@qux.test');
    await writeFile(path.join(s.root, 'etc/default/postsrsd'), 'SRS_DOMAIN=other.test\n');
    await s.driver.control('postsrsd', 'restart');
    expect(await lookup('postsrsd.forward', 'quu@qux.test')).toMatch(/@other\.test$/);
    await s.driver.control('postsrsd', 'stop');
    expect(await s.driver.running('postsrsd')).toBe(false);
    expect(await accepting(await s.ep('postsrsd.forward'))).toBe(false);
    expect(pidsIn(s.root)).toEqual([]);
  });

  it('spamd: checks its config, starts, marks GTUBE as spam over its endpoint, reloads, stops', async () => {
    const s = await fresh();
    expect(await s.driver.checkConfig('spamd')).toBeNull();
    // Seeded from the package defaults, inside the root.
    expect(existsSync(path.join(s.root, 'etc/spamassassin/local.cf'))).toBe(true);
    await s.driver.control('spamd', 'start');
    expect(await s.driver.running('spamd')).toBe(true);
    const e = await s.ep('spamd');
    const spamc = (body: string) =>
      spawnSync(path.join(s.root, 'usr/bin/spamc'), ['-d', e.host, '-p', String(e.port)], { input: message(body), encoding: 'utf8' }).stdout;
    expect(spamc(GTUBE)).toMatch(/^X-Spam-Flag: YES/m);
    expect(spamc('Hello, this is an ordinary note about lunch tomorrow at noon.')).not.toMatch(/^X-Spam-Flag: YES/m);
    await s.driver.control('spamd', 'reload');
    await expect.poll(() => readFile(path.join(s.root, 'var/log/spamd/spamd.log'), 'utf8'), { timeout: 10_000 }).toMatch(/SIGHUP/);
    await expect.poll(() => s.driver.running('spamd'), { timeout: 20_000 }).toBe(true);
    await expect.poll(() => accepting(e), { timeout: 20_000 }).toBe(true);
    await s.driver.control('spamd', 'stop');
    expect(await s.driver.running('spamd')).toBe(false);
    await expect.poll(() => pidsIn(s.root)).toEqual([]);
  });

  it('spamd: a config that fails spamassassin --lint is reported with its complaint', async () => {
    const s = await fresh();
    await mkdir(path.join(s.root, 'etc/spamassassin'), { recursive: true });
    await writeFile(path.join(s.root, 'etc/spamassassin/zz-broken.cf'), 'this_is_not_a_setting 1\n');
    expect(await s.driver.checkConfig('spamd')).toMatch(/spamassassin --siteconfigpath .* --lint failed: .*this_is_not_a_setting/);
  });

  it('rspamd: checks its config, starts, answers on its endpoints (GTUBE rejected), reloads, stops', async () => {
    const s = await fresh();
    await bindRspamd(s.root, s.driver);
    expect(await s.driver.checkConfig('rspamd')).toBeNull();
    expect(existsSync(path.join(s.root, 'etc/rspamd/rspamd.conf'))).toBe(true);
    const rundir = statSync(path.join(s.root, 'run/rspamd'));
    expect(rundir.uid).toBe(Number(spawnSync('id', ['-u', '_rspamd'], { encoding: 'utf8' }).stdout.trim()));
    await s.driver.control('rspamd', 'start');
    expect(await s.driver.running('rspamd')).toBe(true);
    for (const n of ['rspamd.milter', 'rspamd.normal', 'rspamd.controller'] as const) expect(await accepting(await s.ep(n)), n).toBe(true);
    const normal = await s.ep('rspamd.normal');
    const msgFile = path.join(s.root, 'gtube.eml');
    await writeFile(msgFile, message(GTUBE));
    const scan = spawnSync(path.join(s.root, 'usr/bin/rspamc'), ['-h', `${normal.host}:${normal.port}`, msgFile], { encoding: 'utf8' });
    expect(scan.stdout).toMatch(/Action: reject/);
    const log = path.join(s.root, 'var/log/rspamd/rspamd.log');
    const before = (await readFile(log, 'utf8')).length;
    await s.driver.control('rspamd', 'reload');
    await expect.poll(async () => (await readFile(log, 'utf8')).slice(before), { timeout: 20_000 }).toMatch(/reload|HUP/i);
    expect(await s.driver.running('rspamd')).toBe(true);
    await s.driver.control('rspamd', 'stop');
    expect(await s.driver.running('rspamd')).toBe(false);
    await expect.poll(() => pidsIn(s.root), { timeout: 15_000 }).toEqual([]);
  });

  it('rspamd: a config that fails rspamadm configtest is reported with its complaint; a start that cannot come up names the log', async () => {
    const s = await fresh();
    await bindRspamd(s.root, s.driver);
    await writeFile(path.join(s.root, 'etc/rspamd/local.d/options.inc'), 'this is { not valid ucl\n');
    const problem = await s.driver.checkConfig('rspamd');
    expect(problem).toMatch(/^rspamadm .*configtest .* failed: /);
    await expect(s.driver.control('rspamd', 'start')).rejects.toThrow(/rspamd exited with 1: .*failed to load config/);
    expect(await s.driver.running('rspamd')).toBe(false);
    await expect.poll(() => pidsIn(s.root), { timeout: 15_000 }).toEqual([]);
  });

  it('nothing outside the roots was written', () => {
    expect(hostDigest()).toEqual(hostBefore);
  });
});
