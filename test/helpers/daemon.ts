/**
 * A managed scoped daemon for end-to-end tests, and the clients the tests talk to it with:
 * the real cpcmd binary, raw HTTP and raw WebSocket. Real processes over real sockets, no
 * mocks. Every daemon runs on its own fresh temp root (mkdtemp under os.tmpdir()), on a free
 * TCP port (`--listen 127.0.0.1:0`, the real port read from its first "listening" log line),
 * and `stop()` both stops the process and removes the root, so tests can run in parallel.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

export const REPO = path.resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const SCOPED_BIN = path.join(REPO, 'packages/daemon/bin/scoped.js');
export const CPCMD_BIN = path.join(REPO, 'packages/cli/bin/cpcmd.js');

/** Every temp dir these tests make starts with this, so a leak is easy to find. */
export const TMP_PREFIX = 'scoped-e2e-';

export function makeTempDir(): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), TMP_PREFIX));
}

/** The environment for a child: ours without anything that would point cpcmd or scoped elsewhere. */
export function cleanEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of ['SCOPED_SOCKET', 'SCOPED_URL', 'SCOPED_TOKEN', 'CPCMD_OCLIF', 'DEBUG', 'NODE_OPTIONS']) delete env[k];
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Run a command to its end (killed after timeoutMs), collecting its output. */
export function run(cmd: string, args: readonly string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; cwd?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd ?? REPO, env: opts.env ?? cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
  });
}

/** Run the real cpcmd binary: the fast path, or oclif with `oclif: true` (CPCMD_OCLIF=1). */
export function cpcmd(args: readonly string[], opts: { socket?: string; oclif?: boolean; env?: Record<string, string | undefined> } = {}): Promise<RunResult> {
  const env = cleanEnv({ ...(opts.socket ? { SCOPED_SOCKET: opts.socket } : {}), ...(opts.oclif ? { CPCMD_OCLIF: '1' } : {}), ...opts.env });
  return run(process.execPath, [CPCMD_BIN, ...args], { env });
}

/**
 * Last line of defence: should a test worker exit while a daemon still runs (a crash, a
 * timeout), kill it and remove its root, so nothing outlives the test run.
 */
const live = new Set<TestDaemon>();
process.once('exit', () => {
  for (const d of live) {
    try {
      d.child.kill('SIGKILL');
    } catch {}
    if (d.ownsRoot) rmSync(d.root, { recursive: true, force: true });
  }
});

export interface DaemonOptions {
  /** `--listen` (default 127.0.0.1:0: a free port); 'none' turns TCP off. */
  listen?: string;
  /** More scoped flags. */
  args?: string[];
  /** Written as YAML into ROOT/scoped.yaml and passed with --config. */
  config?: Record<string, unknown>;
  /** A command to run scoped under, such as ['unshare', '--uts'] (it must exec, not fork). */
  wrapper?: string[];
  /** Prepare files under the root before the daemon starts. */
  setup?: (root: string) => Promise<void>;
  /** Use this root instead of a fresh one; the daemon then does not remove it. */
  root?: string;
}

interface LogLine {
  msg?: string;
  level?: string;
  listeners?: string[];
  pid?: number;
  error?: string;
  [k: string]: unknown;
}

/** A scoped process under test. */
export class TestDaemon {
  private exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private exitStatus: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private stderrChunks: Buffer[] = [];

  readonly socket: string;
  readonly port: number | null;
  readonly pid: number;
  readonly listeners: string[];

  private constructor(
    readonly root: string,
    readonly ownsRoot: boolean,
    readonly child: ChildProcess,
    first: LogLine,
    stderrChunks: Buffer[],
    exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>,
  ) {
    this.stderrChunks = stderrChunks;
    this.exited = exited.then((s) => {
      live.delete(this);
      return (this.exitStatus = s);
    });
    live.add(this);
    this.listeners = first.listeners ?? [];
    const unix = this.listeners.find((l) => l.startsWith('unix:'));
    if (!unix) throw new Error(`scoped named no unix listener: ${JSON.stringify(first)}`);
    this.socket = unix.slice('unix:'.length);
    const http = this.listeners.find((l) => l.startsWith('http://'));
    this.port = http ? Number(new URL(http).port) : null;
    this.pid = first.pid ?? child.pid!;
  }

  /** Start scoped on a fresh temp root and wait for its "listening" line. */
  static async start(opts: DaemonOptions = {}): Promise<TestDaemon> {
    const ownsRoot = opts.root === undefined;
    const root = opts.root ?? (await makeTempDir());
    let child: ChildProcess | undefined;
    try {
      if (opts.setup) await opts.setup(root);
      const args = [SCOPED_BIN, '--root', root, '--listen', opts.listen ?? '127.0.0.1:0', '--log-level', 'info', ...(opts.args ?? [])];
      if (opts.config) {
        const file = path.join(root, 'scoped.yaml');
        await writeFile(file, Object.entries(opts.config).map(([k, v]) => `${k}: ${JSON.stringify(v)}\n`).join(''));
        args.push('--config', file);
      }
      const [cmd, ...pre] = opts.wrapper?.length ? [...opts.wrapper, process.execPath] : [process.execPath];
      child = spawn(cmd!, [...pre, ...args], { cwd: REPO, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
      const chunks: Buffer[] = [];
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child!.once('exit', (code, signal) => resolve({ code, signal })));
      child.stdout!.resume();
      const first = await new Promise<LogLine>((resolve, reject) => {
        let buffered = '';
        const timer = setTimeout(() => reject(new Error(`scoped did not start in 20 s; stderr:\n${Buffer.concat(chunks).toString()}`)), 20_000);
        child!.stderr!.on('data', (c: Buffer) => {
          chunks.push(c);
          buffered += c.toString('utf8');
          let nl;
          while ((nl = buffered.indexOf('\n')) >= 0) {
            const line = buffered.slice(0, nl);
            buffered = buffered.slice(nl + 1);
            let parsed: LogLine;
            try {
              parsed = JSON.parse(line) as LogLine;
            } catch {
              continue;
            }
            if (parsed.msg === 'listening') {
              clearTimeout(timer);
              resolve(parsed);
            }
          }
        });
        void exited.then(({ code, signal }) => {
          clearTimeout(timer);
          reject(new Error(`scoped exited (${code ?? signal}) before listening; stderr:\n${Buffer.concat(chunks).toString()}`));
        });
      });
      return new TestDaemon(root, ownsRoot, child, first, chunks, exited);
    } catch (err) {
      if (child && child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await new Promise((r) => child!.once('exit', r));
      }
      if (ownsRoot) await rm(root, { recursive: true, force: true });
      throw err;
    }
  }

  /** Everything scoped wrote on stderr so far. */
  stderr(): string {
    return Buffer.concat(this.stderrChunks).toString('utf8');
  }

  /** The admin token scoped created for TCP. */
  async token(): Promise<string> {
    return (await readFile(path.join(this.root, 'etc/scoped/admin.token'), 'utf8')).trim();
  }

  get running(): boolean {
    return this.exitStatus === undefined;
  }

  /** Wait for the process to exit; SIGKILL it after timeoutMs. */
  async waitExit(timeoutMs = 10_000): Promise<{ code: number | null; signal: NodeJS.Signals | null; timedOut: boolean }> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      this.exited.then(() => false),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(true), timeoutMs))),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
    return { ...this.exitStatus!, timedOut };
  }

  /** Send a signal and wait for the exit. */
  async signal(sig: NodeJS.Signals, timeoutMs = 10_000) {
    if (this.running) this.child.kill(sig);
    return this.waitExit(timeoutMs);
  }

  /** Stop the daemon (SIGTERM, then SIGKILL) and remove its root when it made it. Safe to call twice. */
  async stop(): Promise<void> {
    if (this.running) await this.signal('SIGTERM');
    if (this.ownsRoot) await rm(this.root, { recursive: true, force: true });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  /** cpcmd against this daemon's socket. */
  cpcmd(args: readonly string[], opts: { oclif?: boolean; env?: Record<string, string | undefined> } = {}): Promise<RunResult> {
    return cpcmd(args, { ...opts, socket: this.socket });
  }

  /** A file under the root, or null when missing. */
  async file(p: string): Promise<string | null> {
    try {
      return await readFile(path.join(this.root, p), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }
}

/** Write a file under a root, making its directories. */
export async function writeUnder(root: string, p: string, content: string): Promise<void> {
  const file = path.join(root, p);
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, content);
}

export interface FileState {
  bytes: Buffer | null;
  mode: number;
  mtimeMs: number;
  ino: number;
  kind: 'file' | 'dir' | 'symlink' | 'other';
}

/** Every entry under dir (recursively) with its bytes, mode, mtime and inode. */
export async function snapshotTree(dir: string): Promise<Map<string, FileState>> {
  const out = new Map<string, FileState>();
  const walk = async (d: string) => {
    let names: string[];
    try {
      names = (await readdir(d)).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const name of names) {
      const full = path.join(d, name);
      const st = await lstat(full);
      const kind = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
      out.set(path.relative(dir, full), {
        bytes: kind === 'file' ? await readFile(full) : null,
        mode: st.mode & 0o7777,
        mtimeMs: st.mtimeMs,
        ino: st.ino,
        kind,
      });
      if (kind === 'dir') await walk(full);
    }
  };
  await walk(dir);
  return out;
}

/** A snapshot in a form whose difference vitest prints readably. */
export function describeTree(snap: Map<string, FileState>): Record<string, string> {
  return Object.fromEntries(
    [...snap].map(([p, s]) => [p, `${s.kind} mode=${s.mode.toString(8)} ino=${s.ino} mtime=${s.mtimeMs} ${s.bytes ? JSON.stringify(s.bytes.toString('utf8')) : ''}`]),
  );
}

export interface HttpAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}

/** One raw HTTP request to the daemon's TCP port (or unix socket), on a fresh connection. */
export function httpPost(
  target: { port: number } | { socket: string },
  body: string | Buffer,
  opts: { token?: string; authorization?: string; path?: string; method?: string; localAddress?: string } = {},
): Promise<HttpAnswer> {
  const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
  if (opts.authorization !== undefined) headers.authorization = opts.authorization;
  else if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
  const where = 'port' in target ? { host: '127.0.0.1', port: target.port, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) } : { socketPath: target.socket };
  return new Promise((resolve, reject) => {
    const req = httpRequest({ ...where, path: opts.path ?? '/rpc', method: opts.method ?? 'POST', headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** An open WebSocket to /rpc that records every message it receives. */
export class WsConn {
  readonly messages: string[] = [];
  private waiters: (() => void)[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      this.messages.push(data.toString());
      for (const w of this.waiters.splice(0)) w();
    });
    this.closed = new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  }

  /** Open, or reject with the HTTP status of a refused upgrade (`{ status }`). */
  static open(port: number, token?: string, opts: { path?: string; authorization?: string; localAddress?: string } = {}): Promise<WsConn> {
    const headers: Record<string, string> = {};
    if (opts.authorization !== undefined) headers.authorization = opts.authorization;
    else if (token !== undefined) headers.authorization = `Bearer ${token}`;
    const ws = new WebSocket(`ws://127.0.0.1:${port}${opts.path ?? '/rpc'}`, { headers, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new WsConn(ws)));
      ws.once('unexpected-response', (_req, res) => {
        reject(Object.assign(new Error(`upgrade refused with HTTP ${res.statusCode}`), { status: res.statusCode, opened: false }));
        res.resume();
        ws.terminate();
      });
      ws.once('error', (err) => reject(err));
    });
  }

  /** Wait until `count` messages have arrived in all (rejects after timeoutMs). */
  async waitForCount(count: number, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.messages.length < count) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`waited ${timeoutMs} ms for ${count} WebSocket messages; have ${this.messages.length}: ${JSON.stringify(this.messages)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => (clearTimeout(t), resolve()));
      });
    }
  }

  /** Send a text and wait for the next message. */
  async request(text: string): Promise<unknown> {
    const n = this.messages.length;
    this.ws.send(text);
    await this.waitForCount(n + 1);
    return JSON.parse(this.messages[n]!);
  }

  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    this.ws.close(1000);
    const timer = setTimeout(() => this.ws.terminate(), 3_000);
    await this.closed;
    clearTimeout(timer);
  }
}

let nextPeer = 10;

/**
 * A loopback address of its own (127.0.0.N) to connect from. The daemon limits failed logins
 * per peer address, so a test that fails on purpose uses its own address and cannot make
 * another test's requests wait.
 */
export function freshPeer(): string {
  nextPeer = nextPeer >= 250 ? 10 : nextPeer + 1;
  return `127.0.${process.pid % 250}.${nextPeer}`;
}

/** The JSON-RPC 2.0 codes and the domain range the spec reserves for implementations. */
export function isAllowedErrorCode(code: unknown): boolean {
  return typeof code === 'number' && Number.isInteger(code) && ([-32700, -32600, -32601, -32602, -32603].includes(code) || (code >= -32099 && code <= -32000));
}

interface RpcResponse {
  jsonrpc?: unknown;
  id?: unknown;
  result?: unknown;
  error?: { code?: unknown; message?: unknown; data?: unknown };
}

/**
 * Problems with a response object by the spec: jsonrpc "2.0", an id, exactly one of result
 * and error, an error with an allowed integer code (never 0) and a message. Empty when fine.
 */
export function responseProblems(value: unknown): string[] {
  const list = Array.isArray(value) ? value : [value];
  const problems: string[] = [];
  for (const r of list as RpcResponse[]) {
    const show = JSON.stringify(r);
    if (r === null || typeof r !== 'object' || Array.isArray(r)) {
      problems.push(`not a response object: ${show}`);
      continue;
    }
    if (r.jsonrpc !== '2.0') problems.push(`jsonrpc is not "2.0": ${show}`);
    if (!('id' in r)) problems.push(`no id: ${show}`);
    if (('result' in r) === ('error' in r)) problems.push(`needs exactly one of result and error: ${show}`);
    if ('error' in r) {
      if (!isAllowedErrorCode(r.error?.code)) problems.push(`error code ${String(r.error?.code)} is neither a JSON-RPC code nor in -32000..-32099: ${show}`);
      if (typeof r.error?.message !== 'string' || r.error.message === '') problems.push(`error without a message: ${show}`);
    }
  }
  return problems;
}
