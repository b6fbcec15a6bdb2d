// Budgets of a smart-host set on a private running Postfix (each set changes relayhost and the
// credentials, alternating between two values, so every one writes main.cf and the credentials
// file, runs postmap and reloads Postfix):
//
//   end to end, as a user feels it: `cpcmd scope:set mail.smart-host HOST USER PASS`, a fresh
//   process from start to exit, against the bare work it stands for, in the same rounds:
//   `node -e 0` (a fresh node), `postconf -e`, main.cf's mtime set back past Postfix's cool-down
//   (as scoped does), `postmap` and `postfix reload`, each a fresh process timed to its exit, summed. The two are
//   timed one after the other in each round, and the medians compared. Budget: at most 1.3x.
//
//   the daemon alone: `scope.set` from request to answer over the unix socket, against the same
//   tools without node. Budget: at most 1.5x.
//
// Knobs (environment): BENCH_SET_WARMUP (2), BENCH_SET_RUNS (15).
import { execFileSync, spawn } from 'node:child_process';
import { chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const spread = (xs) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs) });
export const int = (name, dflt) => {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new Error(`${name} takes a positive whole number, not ${v}`);
  return Number(v);
};
/** Postfix pauses before reading a main.cf changed in the last ~2 s; scoped dates its writes 3 s back, and so does the baseline. */
const backdate = (file) => {
  const past = new Date(Date.now() - 3_000);
  utimesSync(file, past, past);
};

/**
 * Wall time of one fresh process, from spawn to its exit (as a shell or hyperfine sees it, not
 * waiting for what it leaves in the background: `postfix reload` leaves postsuper); it must
 * exit 0. Resolves with [ms, stdout] once its output has closed.
 */
function run(cmd, args, env = process.env) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let ms;
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (err += c));
    child.once('exit', () => (ms = Number(process.hrtime.bigint() - t0) / 1e6));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('error', (e) => (clearTimeout(timer), reject(e)));
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`${path.basename(cmd)} ${args.join(' ')} exited ${signal ?? code}: ${(err || out).slice(0, 500)}`));
      resolve([ms, out]);
    });
  });
}

/** A private Postfix on loopback under a fresh root (0755: the filter daemons run as their own users); returns its config dir and a stop function. */
export function startPostfix() {
  const root = mkdtempSync(path.join(tmpdir(), 'bench-postfix-'));
  execFileSync('chmod', ['0755', root]);
  const dir = path.join(root, 'etc/postfix');
  for (const d of [dir, 'var/spool/postfix', 'var/lib/postfix', 'var/log']) mkdirSync(path.resolve(root, d), { recursive: true });
  chownSync(path.join(root, 'var/lib/postfix'), Number(execFileSync('id', ['-u', 'postfix']).toString()), 0);
  copyFileSync('/usr/share/postfix/main.cf.debian', path.join(dir, 'main.cf'));
  copyFileSync('/etc/postfix/master.cf', path.join(dir, 'master.cf'));
  execFileSync('postconf', [
    '-c',
    dir,
    '-e',
    `queue_directory=${root}/var/spool/postfix`,
    `data_directory=${root}/var/lib/postfix`,
    'inet_interfaces=loopback-only',
    `maillog_file=${root}/var/log/maillog`,
    `maillog_file_prefixes=${root}/var/log`,
    'myhostname=bench.test',
    'mydestination=',
    'compatibility_level=3.6',
  ]);
  execFileSync('postconf', ['-c', dir, '-M#', 'smtp/inet']);
  backdate(path.join(dir, 'main.cf'));
  execFileSync('postfix', ['-c', dir, 'start'], { stdio: 'ignore' });
  return {
    root,
    dir,
    stop() {
      try {
        execFileSync('postfix', ['-c', dir, 'stop'], { stdio: 'ignore' });
      } catch {}
      rmSync(root, { recursive: true, force: true });
    },
  };
}

function rpc(socket, method, params) {
  const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method, params });
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, path: '/rpc', method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => {
        const r = JSON.parse(text);
        r.error ? reject(new Error(r.error.message)) : resolve(r.result);
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** The set did the full work: the relay, the credentials file, postmap and a reload. */
function fullWork(plan, what) {
  const kinds = new Set(plan.map((c) => c.kind));
  for (const k of ['postconf', 'file', 'postmap', 'service'])
    if (!kinds.has(k)) throw new Error(`${what} did not do the full work (no ${k}): ${JSON.stringify(plan)}`);
}

/** The bare tools for one set, each a fresh process; `node` adds a fresh `node -e 0`. Resolves with each one's ms. */
async function bareSet(dir, map, i, node) {
  const t = {};
  if (node) t.node = (await run(process.execPath, ['-e', '0']))[0];
  t.postconf = (await run('postconf', ['-c', dir, '-e', `relayhost=[relay${i % 2}.test]:587`]))[0];
  backdate(path.join(dir, 'main.cf'));
  writeFileSync(map, `[relay${i % 2}.test]:587 alice:s3cret${i % 2}\n`, { mode: 0o600 });
  t.postmap = (await run('postmap', ['-c', dir, `hash:${map}`]))[0];
  t.reload = (await run('postfix', ['-c', dir, 'reload']))[0];
  return t;
}

/** Stops for what a running bench started (the daemon, Postfix): run by the bench's cleanup on a signal too. */
const live = new Set();
export async function stopSmartHost() {
  for (const stop of [...live]) await stop();
}

export async function benchSmartHost({ warmup = int('BENCH_SET_WARMUP', 2), runs = int('BENCH_SET_RUNS', 15), rpcSets = 10 } = {}) {
  const pf = startPostfix();
  let daemon;
  const stop = async () => {
    live.delete(stop);
    if (daemon && daemon.exitCode === null && daemon.signalCode === null) {
      daemon.kill('SIGTERM');
      await new Promise((r) => daemon.once('exit', r));
    }
    pf.stop();
  };
  live.add(stop);
  try {
    const map = path.join(pf.dir, 'bench-map');
    daemon = spawn(process.execPath, [path.join(repo, 'packages/daemon/bin/scoped.js'), '--root', pf.root, '--listen', 'none', '--log-level', 'error'], {
      stdio: 'ignore',
    });
    const socket = path.join(pf.root, 'run/scoped/scoped.sock');
    for (let i = 0; i < 100 && !existsSync(socket); i++) await sleep(50);
    const relay = (i) => `[127.0.0.1]:${2525 + (i % 2)}`;

    // End to end: cpcmd against node + the bare tools, in the same rounds.
    const env = { ...process.env, SCOPED_SOCKET: socket };
    for (const k of ['SCOPED_URL', 'SCOPED_TOKEN', 'CPCMD_OCLIF', 'NODE_OPTIONS']) delete env[k];
    const cpcmd = (i, ...more) =>
      run(
        process.execPath,
        [path.join(repo, 'packages/cli/bin/cpcmd.js'), 'scope:set', 'mail.smart-host', `'${relay(i)}'`, 'alice', `s3cret${i % 2}`, ...more],
        env,
      );
    const [, first] = await cpcmd(1, '-o', 'json');
    fullWork(JSON.parse(first).plan, 'cpcmd scope:set');
    const e2e = { cpcmd: [], bare: [], ratio: [], parts: { node: [], postconf: [], postmap: [], reload: [] } };
    for (let i = 0; i < warmup + runs; i++) {
      const [ms, out] = await cpcmd(i);
      if (!/: applied \(revision \d+\)/.test(out) || !/postmap /.test(out) || !/reload postfix/.test(out))
        throw new Error(`cpcmd scope:set did not do the full work: ${out.slice(0, 800)}`);
      const t = await bareSet(pf.dir, map, i, true);
      if (i < warmup) continue;
      const bare = t.node + t.postconf + t.postmap + t.reload;
      e2e.cpcmd.push(ms);
      e2e.bare.push(bare);
      e2e.ratio.push(ms / bare);
      for (const k of Object.keys(e2e.parts)) e2e.parts[k].push(t[k]);
    }

    // The daemon alone: scope.set over the socket against the bare tools without node.
    const tools = { postconf: [], postmap: [], reload: [] };
    const times = [];
    const set = (i) => rpc(socket, 'scope.set', { name: 'mail.smart-host', value: { host: relay(i), username: 'alice', password: `s3cret${i % 2}` } });
    await set(1);
    for (let i = 0; i < rpcSets; i++) {
      const t = process.hrtime.bigint();
      const r = await set(i);
      times.push(Number(process.hrtime.bigint() - t) / 1e6);
      if (r.status !== 'applied') throw new Error(`scope.set ${i} answered ${r.status}`);
      fullWork(r.plan, `scope.set ${i}`);
      const b = await bareSet(pf.dir, map, i, false);
      for (const k of Object.keys(tools)) tools[k].push(b[k]);
    }
    const toolsMed = { postconf: median(tools.postconf), postmap: median(tools.postmap), reload: median(tools.reload) };
    const toolsBaseline = toolsMed.postconf + toolsMed.postmap + toolsMed.reload;

    return {
      endToEnd: {
        runs,
        cpcmd: spread(e2e.cpcmd),
        bare: spread(e2e.bare),
        parts: Object.fromEntries(Object.entries(e2e.parts).map(([k, v]) => [k, median(v)])),
        pairRatio: spread(e2e.ratio),
        ratio: median(e2e.cpcmd) / median(e2e.bare),
      },
      daemon: { scoped: median(times), bare: toolsMed, baseline: toolsBaseline, ratio: median(times) / toolsBaseline },
    };
  } finally {
    await stop();
  }
}

/** The lines `npm run bench` prints for these figures. */
export function describeSmartHost(r) {
  const f = (n) => n.toFixed(1);
  const s = (x) => `median ${f(x.median)} ms (min ${f(x.min)}, max ${f(x.max)})`;
  const e = r.endToEnd;
  return [
    `   end to end, ${e.runs} rounds: cpcmd scope:set ${s(e.cpcmd)}`,
    `      against node -e 0 + postconf -e + postmap + postfix reload ${s(e.bare)}`,
    `      (medians: node ${f(e.parts.node)} + postconf ${f(e.parts.postconf)} + postmap ${f(e.parts.postmap)} + reload ${f(e.parts.reload)} ms; ratio per round min ${e.pairRatio.min.toFixed(2)}, median ${e.pairRatio.median.toFixed(2)}, max ${e.pairRatio.max.toFixed(2)})`,
    `   the daemon alone: scope.set ${f(r.daemon.scoped)} ms per set (median, request to answer) against postconf -e ${f(r.daemon.bare.postconf)} + postmap ${f(r.daemon.bare.postmap)} + reload ${f(r.daemon.bare.reload)} = ${f(r.daemon.baseline)} ms`,
  ];
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await benchSmartHost();
  for (const line of describeSmartHost(r)) console.log(line);
  console.log(`end to end: cpcmd/bare = ${r.endToEnd.ratio.toFixed(2)}x (budget <= 1.30x) ${r.endToEnd.ratio <= 1.3 ? 'PASS' : 'FAIL'}`);
  console.log(`daemon alone: scoped/bare = ${r.daemon.ratio.toFixed(2)}x (budget <= 1.50x) ${r.daemon.ratio <= 1.5 ? 'PASS' : 'FAIL'}`);
}
