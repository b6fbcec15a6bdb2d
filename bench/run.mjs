#!/usr/bin/env node
// Performance budgets for scoped and cpcmd, each a ratio against a baseline measured in
// this same run (never a fixed number). Prints PASS/FAIL next to each ratio and exits 0
// whatever the verdicts; a non-zero exit means the bench itself could not run.
//
//   1. WebSocket throughput: scope.get {name:"net.hostname"} over ONE WebSocket with a
//      pipelined window of WINDOW requests always in flight, against a bare `ws` +
//      json-rpc-2.0 server answering a constant. Each server runs in its own child
//      process; this process is the load generator; they are measured one after the
//      other, alternating, ROUNDS times, and the medians are compared. Budget >= 0.7x.
//   2. cpcmd cold start: `cpcmd scope:get net.hostname` against `node -e 0`, each a fresh
//      process, interleaved, medians compared. Budget <= 1.5x. The oclif path
//      (CPCMD_OCLIF=1) is printed for information.
//   3. A smart-host set with credentials on a private running Postfix (bench/smart-host.mjs):
//      end to end, `cpcmd scope:set mail.smart-host HOST USER PASS` against `node -e 0` plus
//      the bare tools it stands for (postconf -e, postmap, postfix reload), budget <= 1.3x; and
//      the daemon alone, scope.set request to answer against the bare tools, budget <= 1.5x.
//   4. Switching a spam filter on (bench/spam-filter.mjs): `cpcmd scope:set mail.spam-filter rspamd`
//      on a private running Postfix against starting rspamd by hand with the same configuration
//      and waiting for its milter port, budget <= 1.5x.
//   5. The Scope GUI's first load in headless Chromium (bench/gui.mjs): bytes transferred,
//      compressed, budget <= 150 KB; time to interactive against a static page of the same size
//      from the same loopback, budget <= 2x.
//
// Everything runs on 127.0.0.1 and a temporary root; every child is stopped and the
// temporary directory removed at the end, on error and on SIGINT/SIGTERM too.
// `node bench/run.mjs --bare-server` is the baseline server (started by the bench itself).
//
// Knobs (environment): BENCH_WS_WARMUP (2000), BENCH_WS_COUNT (20000), BENCH_WS_WINDOW (100),
// BENCH_WS_ROUNDS (3), BENCH_COLD_WARMUP (5), BENCH_COLD_RUNS (30), BENCH_SET_WARMUP (2),
// BENCH_SET_RUNS (15), BENCH_GUI_RUNS (5).

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..');
const int = (name, dflt) => {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new Error(`${name} takes a positive whole number, not ${v}`);
  return Number(v);
};

const HOSTNAME = 'bench.example.com';

/* ------------------------------------------------------------------ baseline server */

/** The baseline: `ws` + json-rpc-2.0 with one method answering a constant shaped like scoped's answer. */
async function bareServer() {
  const { WebSocketServer } = await import('ws');
  const { JSONRPCServer } = await import('json-rpc-2.0');
  const rpc = new JSONRPCServer();
  const answer = { name: 'net.hostname', value: HOSTNAME, revision: 1, drift: [] };
  rpc.addMethod('scope.get', () => answer);
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  wss.on('connection', (ws) => {
    ws.on('message', (data) => {
      let req;
      try {
        req = JSON.parse(data.toString());
      } catch {
        return void ws.send(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32700, message: 'Parse error' } }));
      }
      rpc.receive(req).then((res) => {
        if (res) ws.send(JSON.stringify(res));
      });
    });
  });
  wss.on('listening', () => process.stdout.write(`${JSON.stringify({ port: wss.address().port })}\n`));
  // Stop with the parent: on a signal, or when its end of stdin closes.
  const stop = () => wss.close(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  process.stdin.on('end', stop).on('error', stop).resume();
}

/* ------------------------------------------------------------------ children */

const children = new Set();

/** Spawn a child that is tracked for cleanup; output is kept (bounded) for error messages. */
function startChild(cmd, args, opts = {}) {
  const child = spawn(cmd, args, { cwd: repo, stdio: ['pipe', 'pipe', 'pipe'], ...opts });
  child.out = '';
  child.err = '';
  const keep = (k) => (chunk) => {
    if (child[k].length < 64 * 1024) child[k] += chunk.toString();
  };
  child.stdout.on('data', keep('out'));
  child.stderr.on('data', keep('err'));
  child.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  children.add(child);
  child.exited.then(() => children.delete(child));
  return child;
}

/** Wait until `test` finds what it needs in the child's output (or the child dies, or time runs out). */
function waitFor(child, what, test, ms = 15_000) {
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (fn, v) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      child.stdout.off('data', check);
      child.stderr.off('data', check);
      fn(v);
    };
    const check = () => {
      let found;
      try {
        found = test(child);
      } catch {
        found = undefined;
      }
      if (found !== undefined) finish(resolve, found);
    };
    const timer = setTimeout(() => finish(reject, new Error(`timed out after ${ms} ms waiting for ${what}; stderr: ${child.err.slice(0, 2000)}`)), ms);
    child.stdout.on('data', check);
    child.stderr.on('data', check);
    child.exited.then(({ code, signal }) =>
      finish(reject, new Error(`${what}: the process exited (${signal ?? code}) first; stderr: ${child.err.slice(0, 2000)}`)),
    );
    setImmediate(check);
  });
}

async function stopChild(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await child.exited;
  clearTimeout(t);
}

let tmp;
async function cleanup() {
  await Promise.all([...children].map(stopChild));
  await import('./smart-host.mjs').then((m) => m.stopSmartHost()).catch(() => undefined);
  await import('./spam-filter.mjs').then((m) => m.stopSpamFilter()).catch(() => undefined);
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  tmp = undefined;
}

/* ------------------------------------------------------------------ helpers */

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const fmt = (n, d = 0) => n.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
const verdict = (ok) => (ok ? 'PASS' : 'FAIL');

/** One JSON-RPC call over HTTP on the unix socket. */
function unixCall(socketPath, method, params) {
  const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method, params });
  return new Promise((resolve, reject) => {
    const req = request(
      { socketPath, path: '/rpc', method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }, timeout: 30_000 },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (text += c));
        res.on('end', () => {
          try {
            const msg = JSON.parse(text);
            if (msg.error) reject(new Error(`${method}: ${msg.error.message} (${msg.error.code})`));
            else resolve(msg.result);
          } catch {
            reject(new Error(`${method}: HTTP ${res.statusCode}, not JSON: ${text.slice(0, 200)}`));
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method}: timed out`)));
    req.on('error', reject);
    req.end(body);
  });
}

/* ------------------------------------------------------------------ WebSocket load */

/**
 * Keep `window` scope.get requests in flight on one WebSocket, a new one sent per answer;
 * the clock runs from the `warmup`-th answer to the (`warmup + count`)-th, so the window is
 * full the whole time measured. Every answer is checked (its id, a result, the hostname).
 */
async function wsLoad(url, token, { warmup, count, window, timeoutMs }) {
  const { WebSocket } = await import('ws');
  const ws = new WebSocket(url, { headers: token ? { authorization: `Bearer ${token}` } : {}, perMessageDeflate: false });
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`cannot open ${url} in 10 s`)), 10_000);
    ws.once('open', () => (clearTimeout(t), resolve()));
    ws.once('error', (e) => (clearTimeout(t), reject(e)));
    ws.once('unexpected-response', (_req, res) => (clearTimeout(t), reject(new Error(`${url}: HTTP ${res.statusCode}`))));
  });
  const total = warmup + count;
  const payload = (id) => `{"jsonrpc":"2.0","id":${id},"method":"scope.get","params":{"name":"net.hostname"}}`;
  try {
    return await new Promise((resolve, reject) => {
      let sent = 0;
      let received = 0;
      let t0 = 0n;
      const outstanding = new Set();
      const timer = setTimeout(() => reject(new Error(`${url}: ${received} of ${total} answers after ${timeoutMs} ms`)), timeoutMs);
      const fail = (err) => (clearTimeout(timer), reject(err));
      const sendOne = () => {
        const id = ++sent;
        outstanding.add(id);
        ws.send(payload(id));
      };
      ws.on('message', (data) => {
        let msg;
        try {
          msg = JSON.parse(data.toString());
        } catch {
          return fail(new Error(`${url}: an answer is not JSON`));
        }
        if (!outstanding.delete(msg.id)) return fail(new Error(`${url}: an answer with an unknown id ${JSON.stringify(msg.id)}`));
        if (msg.error || msg.result?.value !== HOSTNAME) return fail(new Error(`${url}: unexpected answer ${JSON.stringify(msg).slice(0, 300)}`));
        received++;
        if (received === warmup) t0 = process.hrtime.bigint();
        if (received === total) {
          const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
          clearTimeout(timer);
          return resolve({ reqPerSec: count / seconds, seconds });
        }
        if (sent < total) sendOne();
      });
      ws.on('close', (code) => fail(new Error(`${url}: closed (${code}) after ${received} answers`)));
      ws.on('error', fail);
      for (let i = 0; i < Math.min(window, total); i++) sendOne();
    });
  } finally {
    ws.removeAllListeners('close');
    ws.on('error', () => {});
    ws.terminate();
  }
}

/* ------------------------------------------------------------------ cold start */

/** Wall time of one fresh process, from spawn to exit; it must exit 0 (and print `expect`). */
function timeProcess(args, env, expect) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(process.execPath, args, { cwd: repo, env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (err += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.once('error', (e) => (clearTimeout(timer), children.delete(child), reject(e)));
    child.once('close', (code, signal) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      clearTimeout(timer);
      children.delete(child);
      if (code !== 0) return reject(new Error(`node ${args.join(' ')} exited ${signal ?? code}: ${(err || out).slice(0, 500)}`));
      if (expect && !out.includes(expect)) return reject(new Error(`node ${args.join(' ')} printed ${JSON.stringify(out.slice(0, 200))}, not ${expect}`));
      resolve(ms);
    });
  });
}

/* ------------------------------------------------------------------ main */

async function main() {
  const cfg = {
    warmup: int('BENCH_WS_WARMUP', 2_000),
    count: int('BENCH_WS_COUNT', 20_000),
    window: int('BENCH_WS_WINDOW', 100),
    rounds: int('BENCH_WS_ROUNDS', 3),
    coldWarmup: int('BENCH_COLD_WARMUP', 5),
    coldRuns: int('BENCH_COLD_RUNS', 30),
  };
  const wsTimeoutMs = 120_000;
  const scopedBin = path.join(repo, 'packages/daemon/bin/scoped.js');
  const cpcmdBin = path.join(repo, 'packages/cli/bin/cpcmd.js');
  for (const f of [path.join(repo, 'packages/daemon/dist/main.js'), path.join(repo, 'packages/cli/dist/fast.js')]) {
    if (!existsSync(f)) throw new Error(`${path.relative(repo, f)} is missing: build first (npx tsc -b, or npm run bench)`);
  }

  const log = (s = '') => process.stdout.write(`${s}\n`);
  log(`bench: node ${process.versions.node}, ${process.platform}/${process.arch}, pid ${process.pid}`);

  tmp = mkdtempSync(path.join(tmpdir(), 'scoped-bench-'));
  const root = path.join(tmp, 'root');
  const socket = path.join(root, 'run/scoped/scoped.sock');

  // scoped, in its own process.
  const daemon = startChild(process.execPath, [scopedBin, '--root', root, '--socket', socket, '--listen', '127.0.0.1:0', '--log-level', 'info']);
  daemon.stdin.end();
  const listening = await waitFor(daemon, 'scoped to listen', (c) => {
    for (const line of c.err.split('\n')) {
      if (!line.startsWith('{')) continue;
      const msg = JSON.parse(line);
      if (msg.msg === 'listening') return msg;
      if (msg.level === 'error') throw new Error(line);
    }
    return undefined;
  });
  const wsUrl = listening.listeners.find((l) => l.startsWith('ws://'));
  if (!wsUrl) throw new Error(`scoped lists no ws:// listener: ${JSON.stringify(listening.listeners)}`);
  const token = readFileSync(path.join(root, 'etc/scoped/admin.token'), 'utf8').trim();
  await unixCall(socket, 'scope.set', { name: 'net.hostname', value: HOSTNAME });
  const check = await unixCall(socket, 'scope.get', { name: 'net.hostname' });
  if (check.value !== HOSTNAME) throw new Error(`scope.get net.hostname read ${JSON.stringify(check.value)} after setting ${HOSTNAME}`);
  log(`scoped pid ${daemon.pid} at ${wsUrl}; net.hostname = ${check.value}`);

  // The baseline, in its own process.
  const bare = startChild(process.execPath, [fileURLToPath(import.meta.url), '--bare-server']);
  const { port } = await waitFor(bare, 'the bare server to listen', (c) => {
    const line = c.out.split('\n').find((l) => l.startsWith('{'));
    return line ? JSON.parse(line) : undefined;
  });
  const bareUrl = `ws://127.0.0.1:${port}/`;
  log(`bare ws + json-rpc-2.0 pid ${bare.pid} at ${bareUrl}`);

  /* 1. WebSocket throughput */
  log('');
  log(
    `1. WebSocket throughput: scope.get net.hostname, one connection, ${cfg.window} in flight, ${fmt(cfg.warmup)} warm-up + ${fmt(cfg.count)} measured, ${cfg.rounds} rounds alternating`,
  );
  const opts = { warmup: cfg.warmup, count: cfg.count, window: cfg.window, timeoutMs: wsTimeoutMs };
  const bareRates = [];
  const scopedRates = [];
  for (let r = 1; r <= cfg.rounds; r++) {
    const b = await wsLoad(bareUrl, null, opts);
    bareRates.push(b.reqPerSec);
    const s = await wsLoad(wsUrl, token, opts);
    scopedRates.push(s.reqPerSec);
    log(
      `   round ${r}: bare ${fmt(b.reqPerSec)} req/s (${b.seconds.toFixed(2)} s)   scoped ${fmt(s.reqPerSec)} req/s (${s.seconds.toFixed(2)} s)   ratio ${(s.reqPerSec / b.reqPerSec).toFixed(3)}`,
    );
  }
  const bareMed = median(bareRates);
  const scopedMed = median(scopedRates);
  const wsRatio = scopedMed / bareMed;
  await stopChild(bare);

  /* 2. cpcmd cold start */
  log('');
  log(`2. cpcmd cold start: fresh processes, ${cfg.coldWarmup} warm-ups then ${cfg.coldRuns} runs each, interleaved, medians`);
  const env = { ...process.env, SCOPED_SOCKET: socket };
  delete env.CPCMD_OCLIF;
  delete env.SCOPED_URL;
  delete env.SCOPED_TOKEN;
  delete env.NODE_OPTIONS;
  const kinds = [
    { name: 'node -e 0', args: ['-e', '0'], env },
    { name: 'cpcmd scope:get (fast path)', args: [cpcmdBin, 'scope:get', 'net.hostname'], env, expect: HOSTNAME },
    { name: 'cpcmd scope:get (CPCMD_OCLIF=1)', args: [cpcmdBin, 'scope:get', 'net.hostname'], env: { ...env, CPCMD_OCLIF: '1' }, expect: HOSTNAME },
  ];
  const times = kinds.map(() => []);
  for (let i = 0; i < cfg.coldWarmup + cfg.coldRuns; i++) {
    for (const [k, kind] of kinds.entries()) {
      const ms = await timeProcess(kind.args, kind.env, kind.expect);
      if (i >= cfg.coldWarmup) times[k].push(ms);
    }
  }
  const meds = times.map(median);
  for (const [k, kind] of kinds.entries()) {
    const s = [...times[k]].sort((a, b) => a - b);
    log(`   ${kind.name.padEnd(32)} median ${meds[k].toFixed(1)} ms   (min ${s[0].toFixed(1)}, max ${s.at(-1).toFixed(1)})`);
  }
  const fastRatio = meds[1] / meds[0];
  const oclifRatio = meds[2] / meds[0];

  /* 3. a smart-host set, end to end and in the daemon alone, against the bare Postfix tools */
  log('');
  log('3. scope:set mail.smart-host HOST USER PASS, Postfix running, against postconf -e + postmap + postfix reload');
  const { benchSmartHost, describeSmartHost } = await import('./smart-host.mjs');
  const mail = await benchSmartHost();
  for (const line of describeSmartHost(mail)) log(line);

  /* 4. switching a spam filter on, against starting the daemon by hand */
  log('');
  log('4. scope:set mail.spam-filter rspamd, everything installed, against starting rspamd by hand and waiting for its milter port');
  const { benchSpamFilter, describeSpamFilter } = await import('./spam-filter.mjs');
  const filter = await benchSpamFilter();
  for (const line of describeSpamFilter(filter)) log(line);

  /* 5. the Scope GUI's first load, against a static page of the same size */
  log('');
  log("5. The Scope GUI's first load in headless Chromium, against a static page of the same compressed size");
  const { benchGui, describeGui, verdictsGui } = await import('./gui.mjs');
  const gui = await benchGui({ socket });
  for (const line of describeGui(gui)) log(line);

  /* verdicts */
  log('');
  log('Budgets (ratios against baselines measured in this run):');
  log(
    `   ${verdict(wsRatio >= 0.7)}  WebSocket throughput  scoped/bare = ${wsRatio.toFixed(3)}  (budget >= 0.70; medians ${fmt(scopedMed)} / ${fmt(bareMed)} req/s)`,
  );
  log(
    `   ${verdict(fastRatio <= 1.5)}  cpcmd cold start      cpcmd/node = ${fastRatio.toFixed(2)}x  (budget <= 1.50x; medians ${meds[1].toFixed(1)} / ${meds[0].toFixed(1)} ms)`,
  );
  const e2e = mail.endToEnd;
  log(
    `   ${verdict(e2e.ratio <= 1.3)}  smart-host set, e2e   cpcmd/bare  = ${e2e.ratio.toFixed(2)}x  (budget <= 1.30x; medians ${e2e.cpcmd.median.toFixed(1)} / ${e2e.bare.median.toFixed(1)} ms)`,
  );
  log(
    `   ${verdict(mail.daemon.ratio <= 1.5)}  smart-host set, daemon scoped/bare = ${mail.daemon.ratio.toFixed(2)}x  (budget <= 1.50x; medians ${mail.daemon.scoped.toFixed(1)} / ${mail.daemon.baseline.toFixed(1)} ms)`,
  );
  if (filter.skipped) log(`   skip  spam filter on      (${filter.skipped})`);
  else
    log(
      `   ${verdict(filter.ratio <= 1.5)}  spam filter on        cpcmd/by hand = ${filter.ratio.toFixed(2)}x  (budget <= 1.50x; medians ${filter.set.toFixed(1)} / ${filter.bare.toFixed(1)} ms)`,
    );
  for (const line of verdictsGui(gui)) log(line);
  log(`   info  cpcmd via oclif       cpcmd/node = ${oclifRatio.toFixed(2)}x  (no budget; medians ${meds[2].toFixed(1)} / ${meds[0].toFixed(1)} ms)`);

  const errs = daemon.err.split('\n').filter((l) => l.includes('"level":"error"'));
  if (errs.length) log(`\nnote: scoped logged ${errs.length} error line(s), first: ${errs[0].slice(0, 300)}`);
}

if (process.argv[2] === '--bare-server') {
  await bareServer();
} else {
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.once(sig, () => {
      process.stderr.write(`bench: ${sig}, stopping\n`);
      cleanup().finally(() => process.exit(130));
    });
  }
  try {
    await main();
  } catch (err) {
    process.exitCode = 1;
    process.stderr.write(`bench: ${err?.stack ?? err}\n`);
  } finally {
    await cleanup();
  }
}
