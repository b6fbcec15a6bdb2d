/**
 * A managed scoped daemon for end-to-end tests, and the clients the tests talk to it with:
 * the real cpcmd binary, raw HTTP and raw WebSocket. Real processes over real sockets, no
 * mocks. Every daemon runs on its own fresh temp root (mkdtemp under os.tmpdir()), on a free
 * TCP port (`--listen 127.0.0.1:0`, the real port read from its first "listening" log line),
 * and `stop()` both stops the process and removes the root, so tests can run in parallel.
 */
import { rmSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import WebSocket from 'ws';
import { type ExitStatus, type LogLine, type RunResult, type ScopedSpawnOptions, ScopedProcess, WsBase, type WsOpenOptions, cpcmd, listenersOf, makeTempDir as makeTempDirWith, readOrNull, walkTree } from './proc.js';

export { SCOPED_BIN, type RunResult, cpcmd, httpPost, run } from './proc.js';

/** Every temp dir these tests make starts with this, so a leak is easy to find. */
export const TMP_PREFIX = 'scoped-e2e-';

export function makeTempDir(): Promise<string> {
  return makeTempDirWith(TMP_PREFIX);
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

export interface DaemonOptions extends Pick<ScopedSpawnOptions, 'listen' | 'args' | 'config' | 'wrapper'> {
  /** Prepare files under the root before the daemon starts. */
  setup?: (root: string) => Promise<void>;
  /** Use this root instead of a fresh one; the daemon then does not remove it. */
  root?: string;
}

/** A scoped process under test. */
export class TestDaemon {
  readonly socket: string;
  readonly port: number | null;
  readonly pid: number;
  readonly listeners: string[];

  private constructor(
    readonly root: string,
    readonly ownsRoot: boolean,
    private readonly proc: ScopedProcess,
    first: LogLine,
  ) {
    live.add(this);
    void proc.exited.then(() => live.delete(this));
    ({ listeners: this.listeners, socket: this.socket, port: this.port } = listenersOf(first));
    if (!this.socket) throw new Error(`scoped named no unix listener: ${JSON.stringify(first)}`);
    this.pid = first.pid ?? proc.child.pid!;
  }

  get child() {
    return this.proc.child;
  }

  /** Start scoped on a fresh temp root and wait for its "listening" line. */
  static async start(opts: DaemonOptions = {}): Promise<TestDaemon> {
    const ownsRoot = opts.root === undefined;
    const root = opts.root ?? (await makeTempDir());
    let proc: ScopedProcess | undefined;
    try {
      if (opts.setup) await opts.setup(root);
      proc = await ScopedProcess.spawn(root, opts);
      return new TestDaemon(root, ownsRoot, proc, await proc.ready(20_000));
    } catch (err) {
      await proc?.signal('SIGKILL');
      if (ownsRoot) await rm(root, { recursive: true, force: true });
      throw err;
    }
  }

  /** Everything scoped wrote on stderr so far. */
  stderr(): string {
    return this.proc.stderr();
  }

  /** The admin token scoped created for TCP. */
  async token(): Promise<string> {
    return (await readFile(path.join(this.root, 'etc/scoped/admin.token'), 'utf8')).trim();
  }

  get running(): boolean {
    return this.proc.running;
  }

  /** Wait for the process to exit; SIGKILL it after timeoutMs. */
  waitExit(timeoutMs = 10_000): Promise<ExitStatus & { timedOut: boolean }> {
    return this.proc.waitExit(timeoutMs);
  }

  /** Send a signal and wait for the exit. */
  signal(sig: NodeJS.Signals, timeoutMs = 10_000): Promise<ExitStatus & { timedOut: boolean }> {
    return this.proc.signal(sig, timeoutMs);
  }

  /** Stop the daemon (SIGTERM, then SIGKILL) and remove its root when it made it. Safe to call twice. */
  async stop(): Promise<void> {
    await this.proc.stop(10_000);
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
  file(p: string): Promise<string | null> {
    return readOrNull(path.join(this.root, p), 'utf8');
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
  for await (const { rel, full, st } of walkTree(dir)) {
    const kind = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
    out.set(rel, { bytes: kind === 'file' ? await readFile(full) : null, mode: st.mode & 0o7777, mtimeMs: st.mtimeMs, ino: st.ino, kind });
  }
  return out;
}

/** A snapshot in a form whose difference vitest prints readably. */
export function describeTree(snap: Map<string, FileState>): Record<string, string> {
  return Object.fromEntries(
    [...snap].map(([p, s]) => [p, `${s.kind} mode=${s.mode.toString(8)} ino=${s.ino} mtime=${s.mtimeMs} ${s.bytes ? JSON.stringify(s.bytes.toString('utf8')) : ''}`]),
  );
}

/** An open WebSocket to /rpc that records every message it receives. */
export class WsConn extends WsBase {
  /** Open, or reject with the HTTP status of a refused upgrade (`{ status }`). */
  static async open(port: number, token?: string, opts: WsOpenOptions = {}): Promise<WsConn> {
    return new WsConn(await WsBase.connect(port, token, opts));
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
