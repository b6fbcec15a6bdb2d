// Budget of issue 3: `scope.set mail.smart-host` with credentials, Postfix running, measured
// from request to answer over the unix socket, against the bare tools it must run (one
// `postconf -e`, one `postmap`, one `postfix reload`), each timed on a main.cf last changed
// more than 2 s earlier, in the same run. Ratio budget: at most 1.5.
import { execFileSync, spawn } from 'node:child_process';
import { chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const backdate = (file) => {
  const past = new Date(Date.now() - 5_000);
  utimesSync(file, past, past);
};
const timed = (cmd, args) => {
  const t = process.hrtime.bigint();
  execFileSync(cmd, args, { stdio: 'ignore' });
  return Number(process.hrtime.bigint() - t) / 1e6;
};

/** A private Postfix on loopback under a fresh root; returns its config dir and a stop function. */
function startPostfix() {
  const root = mkdtempSync(path.join(tmpdir(), 'bench-postfix-'));
  execFileSync('chmod', ['0755', root]);
  const dir = path.join(root, 'etc/postfix');
  for (const d of [dir, 'var/spool/postfix', 'var/lib/postfix', 'var/log']) mkdirSync(path.resolve(root, d), { recursive: true });
  chownSync(path.join(root, 'var/lib/postfix'), Number(execFileSync('id', ['-u', 'postfix']).toString()), 0);
  copyFileSync('/usr/share/postfix/main.cf.debian', path.join(dir, 'main.cf'));
  copyFileSync('/etc/postfix/master.cf', path.join(dir, 'master.cf'));
  execFileSync('postconf', ['-c', dir, '-e', `queue_directory=${root}/var/spool/postfix`, `data_directory=${root}/var/lib/postfix`,
    'inet_interfaces=loopback-only', `maillog_file=${root}/var/log/maillog`, `maillog_file_prefixes=${root}/var/log`,
    'myhostname=bench.test', 'mydestination=', 'compatibility_level=3.6']);
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

export async function benchSmartHost({ rounds = 5, sets = 10 } = {}) {
  const pf = startPostfix();
  let daemon;
  try {
    // Baseline: each bare tool on a main.cf last changed more than 2 s earlier.
    const map = path.join(pf.dir, 'bench-map');
    writeFileSync(map, '[relay.test]:587 alice:s3cret\n', { mode: 0o600 });
    const bare = { postconf: [], postmap: [], reload: [] };
    for (let i = 0; i < rounds; i++) {
      await sleep(2_100);
      bare.postconf.push(timed('postconf', ['-c', pf.dir, '-e', `relayhost=[relay${i % 2}.test]:587`]));
      await sleep(2_100);
      bare.postmap.push(timed('postmap', ['-c', pf.dir, `hash:${map}`]));
      bare.reload.push(timed('postfix', ['-c', pf.dir, 'reload']));
    }
    const baseline = median(bare.postconf) + median(bare.postmap) + median(bare.reload);

    daemon = spawn(process.execPath, [path.join(repo, 'packages/daemon/bin/scoped.js'), '--root', pf.root, '--listen', 'none', '--log-level', 'error'], { stdio: 'ignore' });
    const socket = path.join(pf.root, 'run/scoped/scoped.sock');
    for (let i = 0; i < 100 && !existsSync(socket); i++) await sleep(50);
    // Each set changes relayhost and the credentials: one main.cf write, one postmap, one reload.
    const set = (i) => rpc(socket, 'scope.set', { name: 'mail.smart-host', value: { host: `[127.0.0.1]:${2525 + (i % 2)}`, username: 'alice', password: `s3cret${i % 2}` } });
    await set(1);
    const times = [];
    for (let i = 0; i < sets; i++) {
      const t = process.hrtime.bigint();
      const r = await set(i);
      times.push(Number(process.hrtime.bigint() - t) / 1e6);
      if (r.status !== 'applied' || !r.plan.some((c) => c.kind === 'postmap') || !r.plan.some((c) => c.kind === 'service')) throw new Error(`set ${i} did not do the full work: ${JSON.stringify(r.plan)}`);
    }
    const scoped = median(times);
    return { baseline, bare: { postconf: median(bare.postconf), postmap: median(bare.postmap), reload: median(bare.reload) }, scoped, ratio: scoped / baseline };
  } finally {
    if (daemon && daemon.exitCode === null) {
      daemon.kill('SIGTERM');
      await new Promise((r) => daemon.once('exit', r));
    }
    pf.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await benchSmartHost();
  const f = (n) => `${n.toFixed(1)} ms`;
  console.log(`scope.set mail.smart-host: ${f(r.scoped)} (median of 10) vs bare tools ${f(r.baseline)} = postconf -e ${f(r.bare.postconf)} + postmap ${f(r.bare.postmap)} + postfix reload ${f(r.bare.reload)}`);
  console.log(`ratio ${r.ratio.toFixed(2)}x (budget <= 1.5x) ${r.ratio <= 1.5 ? 'PASS' : 'FAIL'}`);
}
