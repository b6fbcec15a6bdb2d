// Budget of switching a spam filter on, everything installed: `cpcmd scope:set mail.spam-filter
// rspamd` on a private running Postfix, a fresh cpcmd from start to exit (scoped writes rspamd's
// settings and main.cf, starts Redis and rspamd, waits until rspamd's milter port accepts
// connections and reloads Postfix), against the floor: starting rspamd by hand with the same
// command line and configuration and waiting for the same port. The two alternate in each round
// (`false` stops scoped's rspamd between rounds; the hand-started one is stopped after its
// timing), and the medians are compared. Budget: at most 1.5x.
//
// Knobs (environment): BENCH_FILTER_WARMUP (1), BENCH_FILTER_RUNS (7).
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, existsSync, lstatSync, mkdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { connect } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { int, median, sleep, startPostfix } from './smart-host.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const PROGRAMS = ['/usr/bin/rspamd', '/usr/bin/rspamadm', '/usr/bin/rspamc', '/usr/bin/redis-server'];

/** Whether something accepts connections on the port now. */
const accepting = (port) =>
  new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });

async function waitPort(port, up, ms = 120_000) {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(5)) if ((await accepting(port)) === up) return;
  throw new Error(`port ${port} did not ${up ? 'open' : 'close'} within ${ms} ms`);
}

/** A fresh process to its exit, timed; it must exit 0. */
function run(cmd, args, env = process.env) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (out += c));
    child.once('exit', (code, signal) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (code !== 0) reject(new Error(`${path.basename(cmd)} ${args.join(' ')} exited ${signal ?? code}: ${out.slice(0, 800)}`));
      else resolve([ms, out]);
    });
  });
}

const live = new Set();
export async function stopSpamFilter() {
  for (const stop of [...live]) await stop();
}

export async function benchSpamFilter({ warmup = int('BENCH_FILTER_WARMUP', 1), runs = int('BENCH_FILTER_RUNS', 7) } = {}) {
  for (const p of PROGRAMS) if (!existsSync(p)) return { skipped: `${p} is not installed (apt-get install rspamd redis-server)` };
  const pf = startPostfix();
  const base = `${pf.root}-by-hand`;
  let daemon;
  const pidOf = (file) => {
    try {
      return Number(readFileSync(file, 'utf8').trim());
    } catch {
      return 0;
    }
  };
  const stopByHand = async () => {
    const pid = pidOf(path.join(base, 'run/rspamd/rspamd.pid'));
    if (!pid) return;
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      return;
    }
    for (let i = 0; i < 1_200; i++) {
      try {
        process.kill(pid, 0);
      } catch {
        return;
      }
      await sleep(50);
    }
  };
  const stop = async () => {
    live.delete(stop);
    await stopByHand();
    if (daemon && daemon.exitCode === null && daemon.signalCode === null) {
      // Off first, so scoped stops the filter daemons it started.
      await run(process.execPath, [path.join(repo, 'packages/cli/bin/cpcmd.js'), 'scope:set', 'mail.spam-filter', 'false'], env).catch(() => undefined);
      daemon.kill('SIGTERM');
      await new Promise((r) => daemon.once('exit', r));
    }
    pf.stop();
    rmSync(base, { recursive: true, force: true });
  };
  live.add(stop);
  const socket = path.join(pf.root, 'run/scoped/scoped.sock');
  const env = { ...process.env, SCOPED_SOCKET: socket };
  for (const k of ['SCOPED_URL', 'SCOPED_TOKEN', 'CPCMD_OCLIF', 'NODE_OPTIONS']) delete env[k];
  try {
    for (const p of PROGRAMS) {
      mkdirSync(path.dirname(path.join(pf.root, p)), { recursive: true });
      symlinkSync(p, path.join(pf.root, p));
    }
    daemon = spawn(process.execPath, [path.join(repo, 'packages/daemon/bin/scoped.js'), '--root', pf.root, '--listen', 'none', '--log-level', 'error'], {
      stdio: 'ignore',
    });
    for (let i = 0; i < 100 && !existsSync(socket); i++) await sleep(50);
    const cpcmd = (value) => run(process.execPath, [path.join(repo, 'packages/cli/bin/cpcmd.js'), 'scope:set', 'mail.spam-filter', value], env);
    const milter = () => JSON.parse(readFileSync(path.join(pf.root, 'var/lib/scoped/ports.json'), 'utf8'))['rspamd.milter'].port;

    // The first start compiles rspamd's regular expressions into its cache; both sides then start warm.
    const [firstMs] = await cpcmd('rspamd');
    const port = milter();
    // The hand-started copy: the configuration scoped wrote and the cache, taken while it runs, in a directory of its own.
    for (const d of ['etc/rspamd', 'var/lib/rspamd'])
      cpSync(path.join(pf.root, d), path.join(base, d), { recursive: true, filter: (src) => !lstatSync(src).isSocket() });
    await cpcmd('false');
    await waitPort(port, false);
    for (const d of ['run/rspamd', 'var/lib/rspamd', 'var/log/rspamd']) {
      mkdirSync(path.join(base, d), { recursive: true });
      execFileSync('chown', ['-R', '_rspamd:_rspamd', path.join(base, d)]);
    }
    execFileSync('chmod', ['0755', base]);
    const r = (p) => path.join(base, p);
    const byHand = [
      '/usr/bin/rspamd',
      '-c',
      r('etc/rspamd/rspamd.conf'),
      `--var=CONFDIR=${r('etc/rspamd')}`,
      `--var=LOCAL_CONFDIR=${r('etc/rspamd')}`,
      `--var=RUNDIR=${r('run/rspamd')}`,
      `--var=DBDIR=${r('var/lib/rspamd')}`,
      `--var=LOGDIR=${r('var/log/rspamd')}`,
      '-u',
      '_rspamd',
      '-g',
      '_rspamd',
    ];
    const hand = async () => {
      const t0 = process.hrtime.bigint();
      await run(byHand[0], byHand.slice(1)).catch((err) => {
        // rspamd's daemonized children keep its output: the exit is what counts.
        if (!/exited/.test(String(err))) throw err;
      });
      await waitPort(port, true);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      await stopByHand();
      await waitPort(port, false);
      return ms;
    };
    const set = [];
    const bare = [];
    for (let i = 0; i < warmup + runs; i++) {
      const [ms, out] = await cpcmd('rspamd');
      if (!/applied/.test(out) || !(await accepting(port))) throw new Error(`scope:set mail.spam-filter rspamd did not switch rspamd on: ${out.slice(0, 800)}`);
      await cpcmd('false');
      await waitPort(port, false);
      const b = await hand();
      if (i < warmup) continue;
      set.push(ms);
      bare.push(b);
    }
    return { runs, firstMs, set: median(set), bare: median(bare), ratio: median(set) / median(bare), min: Math.min(...set), max: Math.max(...set) };
  } finally {
    await stop();
  }
}

export function describeSpamFilter(r) {
  if (r.skipped) return [`   skipped: ${r.skipped}`];
  const f = (n) => n.toFixed(1);
  return [
    `   ${r.runs} rounds: cpcmd scope:set mail.spam-filter rspamd median ${f(r.set)} ms (min ${f(r.min)}, max ${f(r.max)}; the very first, compiling rspamd's cache, ${f(r.firstMs)} ms)`,
    `      against rspamd started by hand, same configuration, until its milter port accepts: median ${f(r.bare)} ms`,
  ];
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await benchSpamFilter();
  for (const line of describeSpamFilter(r)) console.log(line);
  if (!r.skipped) console.log(`filter on: cpcmd/by hand = ${r.ratio.toFixed(2)}x (budget <= 1.50x) ${r.ratio <= 1.5 ? 'PASS' : 'FAIL'}`);
}
