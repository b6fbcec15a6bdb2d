#!/usr/bin/env node
// The Scope GUI's first load in a real headless Chromium (Debian's, through playwright-core):
//
//   - bytes transferred (compressed, headers included) from the login address to a usable page:
//     the document, its script and stylesheet, the login and session calls. Budget <= 150 KB.
//   - time to interactive: from navigating to `cpcmd gui`'s address to the scope list in the page
//     (logged in: the login's answer carries the scopes the session may see), by the page's own clock, against the same headless
//     Chromium loading a static page of the same compressed size (a document, a stylesheet and an
//     inert script, each as large gzipped as the GUI's own) from a bare node:http server on the same
//     loopback, to its load event. Each run a fresh browser context (cold cache); the two
//     alternate, BENCH_GUI_RUNS times (5), after one warm-up each, and the medians are compared.
//     Budget <= 2x.
//
// `node bench/gui.mjs` runs it alone against a scoped of its own; bench/run.mjs runs it as its
// part 5 against the scoped it started. `node bench/gui.mjs --static-server DIR` is the baseline
// server (started by the bench itself). Every child and the browser are stopped at the end.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..');
const env = (name) => process.env[name];
const CHROMIUM = '/usr/bin/chromium';
export const BYTES_BUDGET = 150 * 1024;
export const TIME_BUDGET = 2;

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const runsWanted = () => {
  const v = env('BENCH_GUI_RUNS');
  if (v === undefined || v === '') return 5;
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new Error(`BENCH_GUI_RUNS takes a positive whole number, not ${v}`);
  return Number(v);
};

/** One JSON-RPC call over HTTP on scoped's unix socket. */
function unixCall(socketPath, method, params) {
  const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method, params });
  return new Promise((resolve, reject) => {
    const req = request(
      { socketPath, path: '/rpc', method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (text += c));
        res.on('end', () => {
          const msg = JSON.parse(text);
          if (msg.error) reject(new Error(`${method}: ${msg.error.message}`));
          else resolve(msg.result);
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Text whose gzip is about `target` bytes: random base64 (which gzip shrinks by a quarter) in a comment. */
function paddedTo(target, wrap) {
  let lo = 0;
  let hi = target * 2 + 64;
  const make = (n) =>
    wrap(
      randomBytes(Math.ceil((n * 3) / 4))
        .toString('base64')
        .slice(0, n),
    );
  while (hi - lo > 16) {
    const mid = (lo + hi) >> 1;
    if (gzipSync(make(mid)).length < target) lo = mid;
    else hi = mid;
  }
  return make(lo);
}

/** The baseline server: DIR's files, precompressed with gzip, with the headers a static site sends. */
function staticServer(dir) {
  const types = { '.html': 'text/html; charset=utf-8', '.css': 'text/css; charset=utf-8', '.js': 'text/javascript; charset=utf-8' };
  const files = new Map();
  for (const f of ['index.html', 'style.css', 'script.js'])
    files.set(`/${f === 'index.html' ? '' : f}`, { type: types[path.extname(f)], body: gzipSync(readFileSync(path.join(dir, f))) });
  const srv = createServer((req, res) => {
    const f = files.get(req.url);
    if (f === undefined) {
      res.writeHead(404);
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': f.type, 'content-encoding': 'gzip', 'content-length': f.body.length, 'cache-control': 'no-store' });
    res.end(f.body);
  });
  srv.listen(0, '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ port: srv.address().port })}\n`));
}

/** Spawn a node child and wait for the first line of its output that `test` accepts. */
function startChild(args, test, what) {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => (child.kill('SIGKILL'), reject(new Error(`timed out waiting for ${what}; stderr: ${err.slice(0, 2000)}`))), 15_000);
    const check = () => {
      for (const line of `${out}\n${err}`.split('\n')) {
        let found;
        try {
          found = line.startsWith('{') ? test(JSON.parse(line)) : undefined;
        } catch {
          found = undefined;
        }
        if (found !== undefined) {
          clearTimeout(timer);
          resolve({ child, found });
          return;
        }
      }
    };
    child.stdout.on('data', (c) => ((out += c), check()));
    child.stderr.on('data', (c) => ((err += c), check()));
    child.once('exit', (code, signal) => (clearTimeout(timer), reject(new Error(`${what}: exited (${signal ?? code}) first; stderr: ${err.slice(0, 2000)}`))));
  });
}

async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(t);
}

/**
 * Load `url` in a fresh context; the bytes every response took on the wire, and the ms from the
 * navigation's start until `ready` is in the document and the load event has passed, as the page's
 * own clock (performance.now) tells it: a script the bench adds before the page's own watches for it.
 */
async function load(browser, url, ready) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await context.addInitScript((selector) => {
    let loaded = false;
    const check = () => {
      if (globalThis.__readyAt === undefined && loaded && document.querySelector(selector) !== null) globalThis.__readyAt = performance.now();
    };
    addEventListener('load', () => ((loaded = true), check()));
    new MutationObserver(check).observe(document, { childList: true, subtree: true });
  }, ready);
  const page = await context.newPage();
  const sizes = [];
  page.on('requestfinished', (req) => sizes.push(req.sizes().then((s) => ({ url: req.url(), bytes: s.responseBodySize + s.responseHeadersSize }))));
  await page.goto(url);
  await page.waitForFunction(() => globalThis.__readyAt !== undefined);
  const ms = await page.evaluate(() => globalThis.__readyAt);
  const got = await Promise.all(sizes);
  await context.close();
  return { ms, bytes: got.reduce((n, s) => n + s.bytes, 0), responses: got };
}

/**
 * The bench against a running scoped with a TCP listener, reached through its unix socket (gui.login
 * answers the page's address).
 * Returns the figures and the verdicts.
 */
export async function benchGui({ socket, runs = runsWanted() }) {
  if (!existsSync(CHROMIUM)) return { skipped: `no Chromium at ${CHROMIUM}: npm run bench installs Debian's chromium (scripts/prepare.mjs --bench)` };
  const { chromium } = await import('playwright-core');
  const tmp = mkdtempSync(path.join(tmpdir(), 'scoped-bench-gui-'));
  let server;
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  try {
    const gui = async () => load(browser, (await unixCall(socket, 'gui.login', {})).url, 'a[href="#/scope/net.hostname"]');
    // One load to learn the sizes the static page copies, by kind.
    const first = await gui();
    const byKind = { html: 0, css: 0, js: 0 };
    for (const r of first.responses) {
      const kind = r.url.endsWith('.css') ? 'css' : r.url.endsWith('.js') ? 'js' : new URL(r.url).pathname === '/' ? 'html' : undefined;
      if (kind) byKind[kind] += r.bytes;
    }
    const shell =
      '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>static</title><link rel="stylesheet" href="/style.css"><script defer src="/script.js"></script></head><body><main><h1 id="ready">A static page</h1></main><!--PAD--></body></html>';
    writeFileSync(
      path.join(tmp, 'index.html'),
      shell.replace(
        '<!--PAD-->',
        paddedTo(Math.max(byKind.html - 200, 0), (s) => `<!--${s}-->`),
      ),
    );
    writeFileSync(
      path.join(tmp, 'style.css'),
      paddedTo(Math.max(byKind.css - 200, 0), (s) => `h1{color:#123}/*${s}*/`),
    );
    writeFileSync(
      path.join(tmp, 'script.js'),
      paddedTo(Math.max(byKind.js - 200, 0), (s) => `/*${s}*/`),
    );
    const started = await startChild([fileURLToPath(import.meta.url), '--static-server', tmp], (m) => m.port, 'the static server');
    server = started.child;
    const still = () => load(browser, `http://127.0.0.1:${started.found}/`, '#ready');

    await still(); // warm-up (the GUI's was `first`)
    const guiRuns = [];
    const staticRuns = [];
    for (let i = 0; i < runs; i++) {
      guiRuns.push(await gui());
      staticRuns.push(await still());
    }
    const guiMs = median(guiRuns.map((r) => r.ms));
    const staticMs = median(staticRuns.map((r) => r.ms));
    const bytes = median(guiRuns.map((r) => r.bytes));
    return {
      runs,
      bytes,
      staticBytes: median(staticRuns.map((r) => r.bytes)),
      byKind,
      guiMs,
      staticMs,
      ratio: guiMs / staticMs,
      bytesOk: bytes <= BYTES_BUDGET,
      timeOk: guiMs / staticMs <= TIME_BUDGET,
    };
  } finally {
    await browser.close();
    if (server) await stop(server);
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** The figures as bench/run.mjs prints them. */
export function describeGui(r) {
  if (r.skipped) return [`   skipped: ${r.skipped}`];
  const kb = (n) => `${(n / 1024).toFixed(1)} KB`;
  return [
    `   first load, ${r.runs} runs: ${kb(r.bytes)} transferred (document ${kb(r.byKind.html)}, script ${kb(r.byKind.js)}, stylesheet ${kb(r.byKind.css)}, the rest login and session calls)`,
    `   interactive (the scope list on screen) median ${r.guiMs.toFixed(1)} ms, against a static page of ${kb(r.staticBytes)} loaded in ${r.staticMs.toFixed(1)} ms`,
  ];
}

/** The two verdict lines. */
export function verdictsGui(r) {
  if (r.skipped) return [`   skip  GUI first load      (${r.skipped})`];
  const v = (ok) => (ok ? 'PASS' : 'FAIL');
  return [
    `   ${v(r.bytesOk)}  GUI first load bytes  ${(r.bytes / 1024).toFixed(1)} KB  (budget <= ${BYTES_BUDGET / 1024} KB, compressed, as transferred)`,
    `   ${v(r.timeOk)}  GUI interactive       gui/static = ${r.ratio.toFixed(2)}x  (budget <= ${TIME_BUDGET.toFixed(2)}x; medians ${r.guiMs.toFixed(1)} / ${r.staticMs.toFixed(1)} ms)`,
  ];
}

/** Alone: a scoped of its own on a temporary root, stopped and removed at the end. */
async function standalone() {
  const tmp = mkdtempSync(path.join(tmpdir(), 'scoped-bench-'));
  const root = path.join(tmp, 'root');
  mkdirSync(root, { mode: 0o755 });
  const socket = path.join(root, 'run/scoped/scoped.sock');
  let daemon;
  const cleanup = async () => {
    if (daemon) await stop(daemon);
    rmSync(tmp, { recursive: true, force: true });
  };
  for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => cleanup().finally(() => process.exit(130)));
  try {
    const started = await startChild(
      [path.join(repo, 'packages/daemon/bin/scoped.js'), '--root', root, '--socket', socket, '--listen', '127.0.0.1:0', '--log-level', 'info'],
      (m) => (m.msg === 'listening' ? m : undefined),
      'scoped to listen',
    );
    daemon = started.child;
    const r = await benchGui({ socket });
    for (const line of [...describeGui(r), ...verdictsGui(r)]) console.log(line);
  } finally {
    await cleanup();
  }
}

if (process.argv[2] === '--static-server') staticServer(process.argv[3]);
else if (import.meta.url === `file://${process.argv[1]}`) await standalone();
