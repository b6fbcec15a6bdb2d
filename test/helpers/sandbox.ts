/**
 * Helpers for the crash, fuzz, secrets and security end-to-end tests: a private Postfix under
 * a temp root, a scoped daemon started as the real binary on that root, raw JSON-RPC over the
 * unix socket, HTTP and WebSocket, and the real cpcmd. Everything started here is tracked, so
 * `cleanupAll()` in an afterAll stops every daemon and Postfix and removes every temp dir even
 * when a test failed halfway.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, readlinkSync, utimesSync } from 'node:fs';
import { chmod, chown, copyFile, lstat, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { type IncomingHttpHeaders, request as httpRequest } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

export const REPO = path.resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const SCOPED_BIN = path.join(REPO, 'packages/daemon/bin/scoped.js');
export const CPCMD_BIN = path.join(REPO, 'packages/cli/bin/cpcmd.js');
export const TMP_PREFIX = 'scoped-sbx-';

// ---------------------------------------------------------------------------------------------
// processes

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** The environment for a child, without anything that would point cpcmd or scoped elsewhere. */
export function cleanEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
  for (const k of ['SCOPED_SOCKET', 'SCOPED_URL', 'SCOPED_TOKEN', 'SCOPED_CRASH_AT', 'CPCMD_OCLIF', 'DEBUG', 'NODE_OPTIONS']) delete env[k];
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

/** Run a program to its end (SIGKILLed after timeoutMs), never through a shell. */
export function run(cmd: string, args: readonly string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; input?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: REPO, env: opts.env ?? cleanEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

export async function mustRun(cmd: string, args: readonly string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code ?? r.signal}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

/** The real cpcmd: over a socket, or over --url with SCOPED_TOKEN. */
export function cpcmd(args: readonly string[], conn: { socket: string } | { url: string; token?: string }): Promise<RunResult> {
  const env = 'socket' in conn ? cleanEnv({ SCOPED_SOCKET: conn.socket }) : cleanEnv({ SCOPED_URL: conn.url, SCOPED_TOKEN: conn.token });
  return run(process.execPath, [CPCMD_BIN, ...args], { env });
}

export async function waitFor<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 20_000, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(intervalMs);
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Pids whose cwd or root lies inside dir (Postfix's daemons chdir into the queue). */
export function pidsUnder(dir: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    for (const link of ['cwd', 'root']) {
      try {
        const t = readlinkSync(`/proc/${entry}/${link}`);
        if (t === dir || t.startsWith(`${dir}/`)) {
          out.push(Number(entry));
          break;
        }
      } catch {
        // gone or not readable
      }
    }
  }
  return out;
}

/** Pids whose command line mentions `needle` (to prove nothing of ours is left). */
export function pidsMentioning(needle: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(needle)) out.push(Number(entry));
    } catch {
      // gone
    }
  }
  return out;
}

/** VmRSS of a process in bytes. */
export function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) * 1024;
}

// ---------------------------------------------------------------------------------------------
// temp roots and Postfix

const tracked = {
  roots: new Set<string>(),
  postfixes: new Set<PostfixRoot>(),
  daemons: new Set<Daemon>(),
};

export async function makeRoot(): Promise<string> {
  const root = await mkdtemp(path.join(os.tmpdir(), TMP_PREFIX));
  await chmod(root, 0o755); // the postfix user must traverse it
  tracked.roots.add(root);
  return root;
}

/** Stop every daemon and Postfix started through these helpers and remove every temp root. */
export async function cleanupAll(): Promise<void> {
  for (const d of [...tracked.daemons]) await d.stop().catch(() => undefined);
  for (const p of [...tracked.postfixes]) await p.stop().catch(() => undefined);
  for (const r of [...tracked.roots]) {
    await rm(r, { recursive: true, force: true, maxRetries: 3 }).catch(() => undefined);
    tracked.roots.delete(r);
  }
}

async function postfixIds(): Promise<{ uid: number; gid: number }> {
  const line = (await readFile('/etc/passwd', 'utf8')).split('\n').find((l) => l.startsWith('postfix:'));
  if (!line) throw new Error('no postfix user: install Debian\'s postfix package');
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

export function postfixAvailable(): boolean {
  return process.getuid?.() === 0 && existsSync('/usr/sbin/postfix') && existsSync('/usr/share/postfix/main.cf.debian');
}

/** A private Postfix whose config, queue, data and log all live under one temp root. */
export class PostfixRoot {
  private started = false;
  private constructor(readonly root: string) {}

  get dir(): string {
    return path.join(this.root, 'etc/postfix');
  }
  get mainCf(): string {
    return path.join(this.dir, 'main.cf');
  }
  get queueDir(): string {
    return path.join(this.root, 'var/spool/postfix');
  }
  get authMap(): string {
    return path.join(this.dir, 'smarthost-auth');
  }
  get authDb(): string {
    return path.join(this.dir, 'smarthost-auth.db');
  }
  get storeFile(): string {
    return path.join(this.root, 'var/lib/scoped/scoped.sqlite');
  }

  /** Lay out the root and Postfix's config; Postfix is not started. */
  static async create(root?: string): Promise<PostfixRoot> {
    const box = new PostfixRoot(root ?? (await makeRoot()));
    tracked.postfixes.add(box);
    const r = box.root;
    const dataDir = path.join(r, 'var/lib/postfix');
    const logDir = path.join(r, 'var/log');
    for (const d of [box.dir, box.queueDir, dataDir, logDir]) await mkdir(d, { recursive: true, mode: 0o755 });
    for (const d of ['etc', 'var', 'var/spool', 'var/lib', 'var/log']) await chmod(path.join(r, d), 0o755);
    const { uid, gid } = await postfixIds();
    await chown(dataDir, uid, gid);
    await copyFile('/usr/share/postfix/main.cf.debian', box.mainCf);
    await copyFile('/etc/postfix/master.cf', path.join(box.dir, 'master.cf'));
    await box.postconf([
      '-e',
      `queue_directory=${box.queueDir}`,
      `data_directory=${dataDir}`,
      'inet_interfaces=loopback-only',
      'inet_protocols=ipv4',
      `maillog_file=${path.join(logDir, 'maillog')}`,
      `maillog_file_prefixes=${logDir}`,
      'myhostname=sandbox.test',
      'mydestination=',
      'compatibility_level=3.6',
      'alias_maps=',
      'alias_database=',
    ]);
    await box.postconf(['-M#', 'smtp/inet']);
    box.backdateMainCf();
    return box;
  }

  postconf(args: readonly string[]): Promise<string> {
    return mustRun('postconf', ['-c', this.dir, ...args]);
  }

  /** Postfix pauses ~2 s reading a main.cf changed within ~2 s: date it 3 s back. */
  backdateMainCf(): void {
    const t = new Date(Date.now() - 3_000);
    utimesSync(this.mainCf, t, t);
  }

  masterPid(): number | undefined {
    try {
      const pid = Number(readFileSync(path.join(this.queueDir, 'pid/master.pid'), 'utf8').trim());
      return Number.isInteger(pid) && pid > 0 && alive(pid) ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  async start(): Promise<void> {
    this.started = true;
    const r = await run('postfix', ['-c', this.dir, 'start'], { timeoutMs: 60_000 });
    const log = await readFile(path.join(this.root, 'var/log/maillog'), 'utf8').catch(() => '');
    if (r.code !== 0) throw new Error(`postfix start failed (${r.code}): ${r.stdout}${r.stderr}\n${log}`);
    await waitFor('the Postfix master', () => this.masterPid());
  }

  /** Stop Postfix and wait until none of its processes is left under the root. */
  async stop(): Promise<void> {
    if (!this.started) return;
    const pid = this.masterPid();
    await run('postfix', ['-c', this.dir, 'stop'], { timeoutMs: 30_000 }).catch(() => undefined);
    if (pid !== undefined) {
      await waitFor('the Postfix master to exit', () => (alive(pid) ? undefined : true), 15_000).catch(() => {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      });
    }
    await waitFor('every Postfix process under the root to exit', () => (pidsUnder(this.root).length ? undefined : true), 15_000).catch(() => {
      for (const p of pidsUnder(this.root)) {
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          // gone
        }
      }
    });
    this.started = false;
  }

  async close(): Promise<void> {
    await this.stop();
    tracked.postfixes.delete(this);
    await rm(this.root, { recursive: true, force: true, maxRetries: 3 });
    tracked.roots.delete(this.root);
  }
}

// ---------------------------------------------------------------------------------------------
// files

/** Every file under dir with the sha256 of its bytes and its mode (directories too, as entries). */
export async function hashTree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
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
      const rel = path.relative(dir, full);
      if (st.isDirectory()) {
        out[rel] = `dir ${(st.mode & 0o7777).toString(8)}`;
        await walk(full);
      } else if (st.isFile()) {
        out[rel] = `file ${(st.mode & 0o7777).toString(8)} ${createHash('sha256').update(await readFile(full)).digest('hex')}`;
      } else out[rel] = `other ${(st.mode & 0o7777).toString(8)}`;
    }
  };
  await walk(dir);
  return out;
}

export async function readOrNull(file: string): Promise<Buffer | null> {
  try {
    return await readFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** Every regular file under dir (recursive), relative paths. */
export async function listFiles(dir: string): Promise<string[]> {
  return Object.entries(await hashTree(dir))
    .filter(([, v]) => v.startsWith('file '))
    .map(([k]) => k);
}

// ---------------------------------------------------------------------------------------------
// the daemon

export interface DaemonStart {
  /** Extra environment (SCOPED_CRASH_AT=N). */
  env?: Record<string, string>;
  /** --listen (default 127.0.0.1:0). */
  listen?: string;
  /** Written as YAML to ROOT/scoped-test.yaml and passed with --config. */
  config?: Record<string, unknown>;
  args?: string[];
  /** Resolve once the process exists, without waiting for "listening" (for crash runs that may die first). */
  noWait?: boolean;
}

/** A scoped process on a root. stop() sends SIGTERM and waits; the root stays (it belongs to the caller). */
export class Daemon {
  private chunks: Buffer[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exitStatus: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  listeners: string[] = [];
  socket = '';
  port: number | null = null;

  private constructor(
    readonly root: string,
    readonly child: ChildProcess,
  ) {
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        this.exitStatus = { code, signal };
        tracked.daemons.delete(this);
        resolve({ code, signal });
      }),
    );
    child.stderr!.on('data', (c: Buffer) => this.chunks.push(c));
    child.stdout!.resume();
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.exitStatus === undefined;
  }

  get tokenFile(): string {
    return path.join(this.root, 'etc/scoped/admin.token');
  }

  token(): string {
    return readFileSync(this.tokenFile, 'utf8').trim();
  }

  stderr(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/rpc`;
  }

  get wsUrl(): string {
    return `ws://127.0.0.1:${this.port}/rpc`;
  }

  static async start(root: string, opts: DaemonStart = {}): Promise<Daemon> {
    const args = [SCOPED_BIN, '--root', root, '--listen', opts.listen ?? '127.0.0.1:0', '--log-level', 'info', ...(opts.args ?? [])];
    if (opts.config) {
      const file = path.join(root, 'scoped-test.yaml');
      await writeFile(file, Object.entries(opts.config).map(([k, v]) => `${k}: ${JSON.stringify(v)}\n`).join(''));
      args.push('--config', file);
    }
    const child = spawn(process.execPath, args, { cwd: REPO, env: cleanEnv(opts.env), stdio: ['ignore', 'pipe', 'pipe'] });
    const d = new Daemon(root, child);
    tracked.daemons.add(d);
    if (opts.noWait) return d;
    await d.ready();
    return d;
  }

  /** Wait for the "listening" line; rejects when the process exits first. */
  ready(timeoutMs = 20_000): Promise<void> {
    return new Promise((resolve, reject) => {
      let done = false;
      const finish = (err?: Error) => {
        if (done) return;
        done = true;
        clearInterval(poll);
        clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      };
      const check = () => {
        for (const line of this.stderr().split('\n')) {
          if (!line.startsWith('{')) continue;
          let j: { msg?: string; listeners?: string[] };
          try {
            j = JSON.parse(line);
          } catch {
            continue;
          }
          if (j.msg === 'listening') {
            this.listeners = j.listeners ?? [];
            this.socket = (this.listeners.find((l) => l.startsWith('unix:')) ?? '').slice(5);
            const http = this.listeners.find((l) => l.startsWith('http://'));
            this.port = http ? Number(new URL(http).port) : null;
            return finish();
          }
        }
        if (!this.running) finish(Object.assign(new Error(`scoped exited (${this.exitStatus!.code ?? this.exitStatus!.signal}) before listening:\n${this.stderr()}`), { exit: this.exitStatus }));
      };
      const poll = setInterval(check, 10);
      const timer = setTimeout(() => finish(new Error(`scoped did not listen in ${timeoutMs} ms:\n${this.stderr()}`)), timeoutMs);
      check();
    });
  }

  /** Wait for exit; SIGKILL after timeoutMs. */
  async waitExit(timeoutMs = 15_000): Promise<{ code: number | null; signal: NodeJS.Signals | null; timedOut: boolean }> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([this.exited.then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), timeoutMs)))]);
    clearTimeout(timer);
    if (timedOut) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
    return { ...this.exitStatus!, timedOut };
  }

  async stop(): Promise<void> {
    if (this.running) {
      this.child.kill('SIGTERM');
      await this.waitExit(15_000);
    }
  }

  /** A JSON-RPC call over the unix socket; the parsed answer. */
  async call(method: string, params: Record<string, unknown> = {}, id: number | string = 1): Promise<RpcAnswer> {
    const r = await httpPost({ socket: this.socket }, JSON.stringify({ jsonrpc: '2.0', id, method, params }));
    return JSON.parse(r.text) as RpcAnswer;
  }

  /** A call that must succeed; its result. */
  async ok<T = any>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    const a = await this.call(method, params);
    if ('error' in a) throw new Error(`${method} failed: ${JSON.stringify(a.error)}`);
    return a.result as T;
  }

  cpcmd(args: readonly string[]): Promise<RunResult> {
    return cpcmd(args, { socket: this.socket });
  }
}

export type RpcAnswer = { jsonrpc: '2.0'; id: unknown; result: any } | { jsonrpc: '2.0'; id: unknown; error: { code: number; message: string; data?: any } };

// ---------------------------------------------------------------------------------------------
// raw transports

export interface HttpAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}

/** One HTTP request on a fresh connection (TCP port or unix socket). */
export function httpPost(
  target: { port: number } | { socket: string },
  body: string | Buffer,
  opts: { token?: string; authorization?: string; path?: string; method?: string; timeoutMs?: number } = {},
): Promise<HttpAnswer> {
  const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
  if (opts.authorization !== undefined) headers.authorization = opts.authorization;
  else if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
  const where = 'port' in target ? { host: '127.0.0.1', port: target.port } : { socketPath: target.socket };
  return new Promise((resolve, reject) => {
    const req = httpRequest({ ...where, path: opts.path ?? '/rpc', method: opts.method ?? 'POST', headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.setTimeout(opts.timeoutMs ?? 60_000, () => req.destroy(new Error('HTTP request timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

/** A JSON-RPC call over TCP HTTP with a bearer token; the parsed answer. */
export async function tcpCall(port: number, token: string, method: string, params: Record<string, unknown> = {}): Promise<RpcAnswer & { status: number }> {
  const r = await httpPost({ port }, JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }), { token });
  return { ...(JSON.parse(r.text) as RpcAnswer), status: r.status };
}

/** A WebSocket to /rpc that records every message. */
export class WsClient {
  readonly messages: string[] = [];
  private waiters: (() => void)[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  isClosed = false;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      this.messages.push(data.toString());
      for (const w of this.waiters.splice(0)) w();
    });
    ws.on('error', () => undefined);
    this.closed = new Promise((resolve) =>
      ws.once('close', (code, reason) => {
        this.isClosed = true;
        for (const w of this.waiters.splice(0)) w();
        resolve({ code, reason: reason.toString() });
      }),
    );
  }

  static open(port: number, token: string | undefined, opts: WebSocket.ClientOptions = {}): Promise<WsClient> {
    const headers: Record<string, string> = {};
    if (token !== undefined) headers.authorization = `Bearer ${token}`;
    const ws = new WebSocket(`ws://127.0.0.1:${port}/rpc`, { headers, ...opts });
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new WsClient(ws)));
      ws.once('unexpected-response', (_req, res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          reject(Object.assign(new Error(`upgrade refused with HTTP ${res.statusCode}`), { status: res.statusCode, body: Buffer.concat(chunks).toString() }));
          ws.terminate();
        });
      });
      ws.once('error', (err) => reject(err));
    });
  }

  send(text: string | Buffer): void {
    this.ws.send(text);
  }

  /** Wait until a message satisfies pred (returns it), or reject after timeoutMs / on close. */
  async waitFor(pred: (m: string) => boolean, timeoutMs = 10_000, from = 0): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.messages.slice(from).find(pred);
      if (hit !== undefined) return hit;
      if (this.isClosed) throw new Error('the WebSocket closed');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no matching WebSocket message in ${timeoutMs} ms`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => (clearTimeout(t), r()));
      });
    }
  }

  /** One call; waits for the answer with its id. */
  async call(method: string, params: Record<string, unknown> = {}, id: string | number = `c${Math.random().toString(36).slice(2)}`): Promise<RpcAnswer> {
    const from = this.messages.length;
    this.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
    const text = await this.waitFor((m) => {
      try {
        return (JSON.parse(m) as { id?: unknown }).id === id;
      } catch {
        return false;
      }
    }, 15_000, from);
    return JSON.parse(text) as RpcAnswer;
  }

  close(): void {
    this.ws.terminate();
  }
}
