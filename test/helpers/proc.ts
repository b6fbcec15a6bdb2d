/**
 * The primitives every end-to-end helper shares: where the binaries are, temp dirs, running a
 * program, polling, pids, raw HTTP and WebSocket to the daemon, and the scoped process itself.
 * The fixture (scoped.ts) and the other helpers (postfix.ts, relay.ts, plugin-dir.ts) build on
 * these. Nothing here runs a shell: every program gets
 * an argument array.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { type Stats, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { chmod, lstat, mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import { type IncomingHttpHeaders, createServer, request as httpRequest } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

export const REPO = path.resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const SCOPED_BIN = path.join(REPO, 'packages/daemon/bin/scoped.js');
export const CPCMD_BIN = path.join(REPO, 'packages/cli/bin/cpcmd.js');

// ---------------------------------------------------------------------------------------------
// temp dirs and files

/** A fresh directory under os.tmpdir() named `${prefix}XXXXXX`; `mode` is applied (mkdtemp makes 0700). */
export async function makeTempDir(prefix = 'scoped-e2e-', mode?: number): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  if (mode !== undefined) await chmod(dir, mode);
  return dir;
}

/** A file's bytes (or text, given an encoding), or null when it does not exist. */
export async function readOrNull(file: string): Promise<Buffer | null>;
export async function readOrNull(file: string, encoding: BufferEncoding): Promise<string | null>;
export async function readOrNull(file: string, encoding?: BufferEncoding): Promise<Buffer | string | null> {
  try {
    return encoding ? await readFile(file, encoding) : await readFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/**
 * Every entry under dir, depth first in name order, with its lstat; a missing dir (or one that
 * vanishes meanwhile) yields nothing.
 */
export async function* walkTree(dir: string): AsyncGenerator<{ rel: string; full: string; st: Stats }> {
  let names: string[];
  try {
    names = (await readdir(dir)).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  for (const name of names) {
    const full = path.join(dir, name);
    const st = await lstat(full);
    yield { rel: name, full, st };
    if (st.isDirectory()) for await (const e of walkTree(full)) yield { ...e, rel: path.join(name, e.rel) };
  }
}

// ---------------------------------------------------------------------------------------------
// running programs

/** The environment for a child: ours without anything that would point cpcmd or scoped elsewhere. */
export function cleanEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
  for (const k of ['SCOPED_SOCKET', 'SCOPED_URL', 'SCOPED_TOKEN', 'SCOPED_CRASH_AT', 'CPCMD_OCLIF', 'DEBUG', 'NODE_OPTIONS']) delete env[k];
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

/** What a finished program left behind. */
export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Default cleanEnv(). */
  env?: NodeJS.ProcessEnv;
  /** SIGKILLed after this (default 60 s); the result then carries signal SIGKILL. */
  timeoutMs?: number;
  /** Default the repository. */
  cwd?: string;
  /** Written to stdin (which is closed either way). */
  input?: string;
}

/** Run a program to its end, never through a shell, collecting its output; rejects only when it cannot start. */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd ?? REPO, env: opts.env ?? cleanEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
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

/** Run a program that must succeed; its stdout, or its whole output in the error. */
export async function mustRun(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code ?? r.signal}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

export interface CpcmdOptions {
  /** SCOPED_SOCKET. */
  socket?: string;
  /** SCOPED_URL (with SCOPED_TOKEN from `token`). */
  url?: string;
  token?: string;
  /** Through oclif (CPCMD_OCLIF=1) instead of the fast path. */
  oclif?: boolean;
  env?: Record<string, string | undefined>;
}

/** Run the real cpcmd binary: over a socket, or over --url with SCOPED_TOKEN; oclif with `oclif: true`. */
export function cpcmd(args: readonly string[], opts: CpcmdOptions = {}): Promise<RunResult> {
  const env = cleanEnv({
    ...(opts.socket !== undefined ? { SCOPED_SOCKET: opts.socket } : {}),
    ...(opts.url !== undefined ? { SCOPED_URL: opts.url, SCOPED_TOKEN: opts.token } : {}),
    ...(opts.oclif ? { CPCMD_OCLIF: '1' } : {}),
    ...opts.env,
  });
  return run(process.execPath, [CPCMD_BIN, ...args], { env });
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Poll `probe` until it returns a value other than undefined, or fail with `what` after `timeoutMs`. */
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

/** A loopback TCP port that was free a moment ago (bind port 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// pids

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** SIGKILL each pid, ignoring the ones already gone. */
export function killPids(pids: Iterable<number>): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

/** Every pid in /proc but ours. */
function otherPids(): number[] {
  return readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e) && Number(e) !== process.pid)
    .map(Number);
}

/** Pids whose cwd or root lies inside dir (Postfix's daemons run chrooted or chdir'ed into the queue). */
export function pidsUnder(dir: string): number[] {
  return otherPids().filter((pid) =>
    ['cwd', 'root'].some((link) => {
      try {
        const t = readlinkSync(`/proc/${pid}/${link}`);
        return t === dir || t.startsWith(`${dir}/`);
      } catch {
        return false; // gone, or not ours to read
      }
    }),
  );
}

/** Pids whose command line mentions `needle` (to prove nothing of ours is left). */
export function pidsMentioning(needle: string): number[] {
  return otherPids().filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(needle);
    } catch {
      return false; // gone
    }
  });
}

/** VmRSS of a process in bytes. */
/**
 * The live JavaScript heap of a node process started with `--inspect=127.0.0.1:0`, in bytes, right
 * after a full garbage collection: what the process still holds, unlike RSS, which also counts
 * garbage not yet collected and memory the allocator keeps for reuse.
 */
export async function heapAfterGc(inspectorUrl: string): Promise<number> {
  const ws = new WebSocket(inspectorUrl);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  try {
    let id = 0;
    const send = (method: string, params: Record<string, unknown> = {}) =>
      new Promise<{ result?: { result?: { value?: unknown } }; error?: unknown }>((resolve, reject) => {
        const mine = ++id;
        const onMessage = (data: Buffer) => {
          const msg = JSON.parse(data.toString('utf8')) as { id?: number; result?: { result?: { value?: unknown } }; error?: unknown };
          if (msg.id !== mine) return;
          ws.off('message', onMessage);
          if (msg.error) reject(new Error(`inspector ${method}: ${JSON.stringify(msg.error)}`));
          else resolve(msg);
        };
        ws.on('message', onMessage);
        ws.send(JSON.stringify({ id: mine, method, params }));
      });
    // Two collections: the first may only queue finalizers whose objects the second frees.
    await send('HeapProfiler.collectGarbage');
    await send('HeapProfiler.collectGarbage');
    const r = await send('Runtime.evaluate', { expression: 'process.memoryUsage().heapUsed', returnByValue: true });
    const value = r.result?.result?.value;
    if (typeof value !== 'number') throw new Error(`inspector gave no heap size: ${JSON.stringify(r)}`);
    return value;
  } finally {
    ws.close();
  }
}

export function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) * 1024;
}

// ---------------------------------------------------------------------------------------------
// raw transports

export interface HttpAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}

export interface HttpPostOptions {
  token?: string;
  /** The whole Authorization header (wins over token). */
  authorization?: string;
  path?: string;
  method?: string;
  /** Connect from this local address (TCP only). */
  localAddress?: string;
  /** Destroy the request after this long idle (default 60 s). */
  timeoutMs?: number;
}

/** One raw HTTP request to the daemon's TCP port (or unix socket), on a fresh connection. */
export function httpPost(target: { port: number } | { socket: string }, body: string | Buffer, opts: HttpPostOptions = {}): Promise<HttpAnswer> {
  const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
  if (opts.authorization !== undefined) headers.authorization = opts.authorization;
  else if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
  const where =
    'port' in target
      ? { host: '127.0.0.1', port: target.port, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) }
      : { socketPath: target.socket };
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

/** ws client options, plus the path (default /rpc) and a whole Authorization header (wins over the token). */
export type WsOpenOptions = WebSocket.ClientOptions & {
  path?: string;
  authorization?: string /** Subprotocols offered (the Scope GUI's session key). */;
  protocols?: string[];
};

/** A JSON-RPC answer as it comes off the wire. */
export type RpcAnswer = { jsonrpc: '2.0'; id: unknown; result: any } | { jsonrpc: '2.0'; id: unknown; error: { code: number; message: string; data?: any } };

/** An open WebSocket to /rpc that records every message it receives. */
export class WsClient {
  readonly messages: string[] = [];
  private waiters: (() => void)[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  isClosed = false;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      this.messages.push(data.toString());
      this.wake();
    });
    ws.on('error', () => undefined);
    this.closed = new Promise((resolve) =>
      ws.once('close', (code, reason) => {
        this.isClosed = true;
        this.wake();
        resolve({ code, reason: reason.toString() });
      }),
    );
  }

  /**
   * Open ws://127.0.0.1:port/rpc (with `Bearer token`), or reject with the HTTP status and body
   * of a refused upgrade (`{ status, body, opened: false }`).
   */
  static open(port: number, token: string | undefined, opts: WsOpenOptions = {}): Promise<WsClient> {
    const { path: at = '/rpc', authorization, protocols = [], ...options } = opts;
    const headers: Record<string, string> = {};
    if (authorization !== undefined) headers.authorization = authorization;
    else if (token !== undefined) headers.authorization = `Bearer ${token}`;
    const ws = new WebSocket(`ws://127.0.0.1:${port}${at}`, protocols, { headers, ...options });
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new WsClient(ws)));
      ws.once('unexpected-response', (_req, res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          reject(
            Object.assign(new Error(`upgrade refused with HTTP ${res.statusCode}`), {
              status: res.statusCode,
              body: Buffer.concat(chunks).toString(),
              opened: false,
            }),
          );
          ws.terminate();
        });
      });
      ws.once('error', (err) => reject(err));
    });
  }

  send(text: string | Buffer): void {
    this.ws.send(text);
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Until the next message or the close, at most `ms`. */
  private nextEvent(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      this.waiters.push(() => (clearTimeout(t), resolve()));
    });
  }

  /** Wait until `count` messages have arrived in all (rejects after timeoutMs). */
  async waitForCount(count: number, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.messages.length < count) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`waited ${timeoutMs} ms for ${count} WebSocket messages; have ${this.messages.length}: ${JSON.stringify(this.messages)}`);
      await this.nextEvent(left);
    }
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
      await this.nextEvent(left);
    }
  }

  /** Send a text and wait for the next message, parsed. */
  async request(text: string): Promise<unknown> {
    const n = this.messages.length;
    this.ws.send(text);
    await this.waitForCount(n + 1);
    return JSON.parse(this.messages[n]!);
  }

  /** One call; waits for the answer with its id. */
  async call(method: string, params: Record<string, unknown> = {}, id: string | number = `c${Math.random().toString(36).slice(2)}`): Promise<RpcAnswer> {
    const from = this.messages.length;
    this.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
    const text = await this.waitFor(
      (m) => {
        try {
          return (JSON.parse(m) as { id?: unknown }).id === id;
        } catch {
          return false;
        }
      },
      15_000,
      from,
    );
    return JSON.parse(text) as RpcAnswer;
  }

  /** The closing handshake (1000), cut after 3 s; resolves once closed. */
  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    this.ws.close(1000);
    const timer = setTimeout(() => this.ws.terminate(), 3_000);
    await this.closed;
    clearTimeout(timer);
  }

  /** Cut the connection at once, without a closing handshake. */
  terminate(): void {
    this.ws.terminate();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

// ---------------------------------------------------------------------------------------------
// the scoped daemon

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A line of scoped's JSON log. */
export interface LogLine {
  msg?: string;
  level?: string;
  listeners?: string[];
  pid?: number;
  error?: string;
  [k: string]: unknown;
}

export interface ScopedSpawnOptions {
  /** `--listen` (default 127.0.0.1:0: a free port); 'none' turns TCP off. */
  listen?: string;
  /** More scoped flags. */
  args?: readonly string[];
  /** Written as YAML into ROOT/`configName` and passed with --config. */
  config?: Record<string, unknown>;
  /** Default scoped.yaml. */
  configName?: string;
  /** A command to run scoped under, such as ['unshare', '--uts'] (it must exec, not fork). */
  wrapper?: readonly string[];
  /** More environment (on top of cleanEnv()). */
  env?: Record<string, string | undefined>;
  /** Flags for node itself, before scoped's script (such as `--inspect=127.0.0.1:0`). */
  nodeArgs?: readonly string[];
}

/**
 * The real scoped binary on a root: its output collected, its exit tracked. The fixture
 * (scoped.ts) wraps one of these.
 */
export class ScopedProcess {
  private stderrChunks: Buffer[] = [];
  private stdoutChunks: Buffer[] = [];
  private pending = '';
  private listening: LogLine | undefined;
  private onListening: (() => void)[] = [];
  readonly exited: Promise<ExitStatus>;
  exitStatus: ExitStatus | undefined;

  private constructor(
    readonly root: string,
    readonly child: ChildProcess,
  ) {
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        this.exitStatus = { code, signal };
        resolve(this.exitStatus);
      }),
    );
    child.stdout!.on('data', (c: Buffer) => this.stdoutChunks.push(c));
    child.stderr!.on('data', (c: Buffer) => {
      this.stderrChunks.push(c);
      this.scan(c);
    });
  }

  /** Spawn scoped on root; it is not yet listening. */
  static async spawn(root: string, opts: ScopedSpawnOptions = {}): Promise<ScopedProcess> {
    const args = [...(opts.nodeArgs ?? []), SCOPED_BIN, '--root', root, '--listen', opts.listen ?? '127.0.0.1:0', '--log-level', 'info', ...(opts.args ?? [])];
    // The supervisor (which starts again a filter daemon found dead) is off unless a test asks for it:
    // a test that stops a daemon by hand to see the drift must not race it.
    if (opts.config?.superviseIntervalMs === undefined && !args.includes('--supervise-interval-ms')) args.push('--supervise-interval-ms', '0');
    if (opts.config) {
      const file = path.join(root, opts.configName ?? 'scoped.yaml');
      await writeFile(
        file,
        Object.entries(opts.config)
          .map(([k, v]) => `${k}: ${JSON.stringify(v)}\n`)
          .join(''),
      );
      args.push('--config', file);
    }
    const [cmd, ...pre] = opts.wrapper?.length ? [...opts.wrapper, process.execPath] : [process.execPath];
    const child = spawn(cmd!, [...pre, ...args], { cwd: REPO, env: cleanEnv(opts.env), stdio: ['ignore', 'pipe', 'pipe'] });
    return new ScopedProcess(root, child);
  }

  private scan(c: Buffer): void {
    if (this.listening) return;
    this.pending += c.toString('utf8');
    let nl;
    while ((nl = this.pending.indexOf('\n')) >= 0) {
      const line = this.pending.slice(0, nl);
      this.pending = this.pending.slice(nl + 1);
      let parsed: LogLine;
      try {
        parsed = JSON.parse(line) as LogLine;
      } catch {
        continue;
      }
      if (parsed.msg === 'listening') {
        this.listening = parsed;
        this.pending = '';
        for (const f of this.onListening.splice(0)) f();
        return;
      }
    }
  }

  get running(): boolean {
    return this.exitStatus === undefined;
  }

  /** Everything scoped wrote on stderr so far. */
  stderr(): string {
    return Buffer.concat(this.stderrChunks).toString('utf8');
  }

  stdout(): string {
    return Buffer.concat(this.stdoutChunks).toString('utf8');
  }

  /** The "listening" log line, once it comes; rejects when scoped exits first (the error's `exit`) or after timeoutMs. */
  ready(timeoutMs = 20_000): Promise<LogLine> {
    return new Promise((resolve, reject) => {
      if (this.listening) return resolve(this.listening);
      const timer = setTimeout(() => reject(new Error(`scoped did not listen in ${timeoutMs} ms; stderr:\n${this.stderr()}`)), timeoutMs);
      this.onListening.push(() => {
        clearTimeout(timer);
        resolve(this.listening!);
      });
      void this.exited.then((s) => {
        clearTimeout(timer);
        if (!this.listening) reject(Object.assign(new Error(`scoped exited (${s.code ?? s.signal}) before listening; stderr:\n${this.stderr()}`), { exit: s }));
      });
    });
  }

  /** Wait for the exit; SIGKILL after timeoutMs. */
  async waitExit(timeoutMs = 15_000): Promise<ExitStatus & { timedOut: boolean }> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([this.exited.then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), timeoutMs)))]);
    clearTimeout(timer);
    if (timedOut) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
    return { ...this.exitStatus!, timedOut };
  }

  /** Send a signal (when still running) and wait for the exit. */
  async signal(sig: NodeJS.Signals, timeoutMs = 15_000): Promise<ExitStatus & { timedOut: boolean }> {
    if (this.running) this.child.kill(sig);
    return this.waitExit(timeoutMs);
  }

  /** SIGTERM, then SIGKILL after timeoutMs; safe to call twice. */
  async stop(timeoutMs = 15_000): Promise<void> {
    if (this.running) await this.signal('SIGTERM', timeoutMs);
  }
}

/** Where a listening scoped can be reached, from its "listening" line. */
export function listenersOf(line: LogLine): { listeners: string[]; socket: string; port: number | null } {
  const listeners = line.listeners ?? [];
  const unix = listeners.find((l) => l.startsWith('unix:'));
  const http = listeners.find((l) => l.startsWith('http://'));
  return { listeners, socket: unix ? unix.slice('unix:'.length) : '', port: http ? Number(new URL(http).port) : null };
}
