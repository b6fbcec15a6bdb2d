/**
 * Helpers for the crash, fuzz, secrets and security end-to-end tests: a private Postfix under
 * a temp root, a scoped daemon started as the real binary on that root, raw JSON-RPC over the
 * unix socket, HTTP and WebSocket, and the real cpcmd. Everything started here is tracked, so
 * `cleanupAll()` in an afterAll stops every daemon and Postfix and removes every temp dir even
 * when a test failed halfway.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { PostfixBase } from './postfix-base.js';
import { type ExitStatus, type RunResult, type ScopedSpawnOptions, ScopedProcess, WsBase, type WsOpenOptions, cpcmd, httpPost, listenersOf, makeTempDir, walkTree } from './proc.js';

export { CPCMD_BIN, type HttpAnswer, type RunResult, cleanEnv, cpcmd, httpPost, mustRun, pidsMentioning, readOrNull, rssBytes, run, sleep, waitFor } from './proc.js';

export const TMP_PREFIX = 'scoped-sbx-';

// ---------------------------------------------------------------------------------------------
// temp roots and Postfix

const tracked = {
  roots: new Set<string>(),
  postfixes: new Set<PostfixRoot>(),
  daemons: new Set<Daemon>(),
};

export async function makeRoot(): Promise<string> {
  const root = await makeTempDir(TMP_PREFIX, 0o755); // the postfix user must traverse it
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

/** A private Postfix whose config, queue, data and log all live under one temp root (tracked for cleanupAll). */
export class PostfixRoot extends PostfixBase {
  readonly authMap = path.join(this.dir, 'smarthost-auth');
  readonly authDb = path.join(this.dir, 'smarthost-auth.db');
  readonly storeFile = path.join(this.root, 'var/lib/scoped/scoped.sqlite');

  /** Lay out the root and Postfix's config; Postfix is not started. */
  static async create(root?: string): Promise<PostfixRoot> {
    const box = new PostfixRoot(root ?? (await makeRoot()));
    tracked.postfixes.add(box);
    await box.layout();
    return box;
  }

  override async close(): Promise<void> {
    try {
      await super.close();
    } finally {
      tracked.postfixes.delete(this);
      tracked.roots.delete(this.root);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// files

/** Every file under dir with the sha256 of its bytes and its mode (directories too, as entries). */
export async function hashTree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for await (const { rel, full, st } of walkTree(dir)) {
    const mode = (st.mode & 0o7777).toString(8);
    if (st.isDirectory()) out[rel] = `dir ${mode}`;
    else if (st.isFile()) out[rel] = `file ${mode} ${createHash('sha256').update(await readFile(full)).digest('hex')}`;
    else out[rel] = `other ${mode}`;
  }
  return out;
}

/** A store's bytes on disk: the SQLite database and its write-ahead log. */
export async function storeBytes(file: string): Promise<number> {
  let total = 0;
  for (const f of [file, `${file}-wal`]) total += await stat(f).then((s) => s.size, () => 0);
  return total;
}

// ---------------------------------------------------------------------------------------------
// the daemon

export interface DaemonStart extends Pick<ScopedSpawnOptions, 'listen' | 'config' | 'args'> {
  /** Extra environment (SCOPED_CRASH_AT=N). */
  env?: Record<string, string>;
  /** Resolve once the process exists, without waiting for "listening" (for crash runs that may die first). */
  noWait?: boolean;
}

/** A scoped process on a root. stop() sends SIGTERM and waits; the root stays (it belongs to the caller). */
export class Daemon {
  listeners: string[] = [];
  socket = '';
  port: number | null = null;

  private constructor(private readonly proc: ScopedProcess) {
    tracked.daemons.add(this);
    void proc.exited.then(() => tracked.daemons.delete(this));
  }

  get root(): string {
    return this.proc.root;
  }

  get child() {
    return this.proc.child;
  }

  get exited(): Promise<ExitStatus> {
    return this.proc.exited;
  }

  get exitStatus(): ExitStatus | undefined {
    return this.proc.exitStatus;
  }

  get pid(): number {
    return this.proc.child.pid!;
  }

  get running(): boolean {
    return this.proc.running;
  }

  get tokenFile(): string {
    return path.join(this.root, 'etc/scoped/admin.token');
  }

  token(): string {
    return readFileSync(this.tokenFile, 'utf8').trim();
  }

  stderr(): string {
    return this.proc.stderr();
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/rpc`;
  }

  get wsUrl(): string {
    return `ws://127.0.0.1:${this.port}/rpc`;
  }

  /** Its config (opts.config) goes to ROOT/scoped-test.yaml. */
  static async start(root: string, opts: DaemonStart = {}): Promise<Daemon> {
    const d = new Daemon(await ScopedProcess.spawn(root, { ...opts, configName: 'scoped-test.yaml' }));
    if (opts.noWait) return d;
    try {
      await d.ready();
    } catch (err) {
      await d.proc.signal('SIGKILL');
      throw err;
    }
    return d;
  }

  /** Wait for the "listening" line; rejects when the process exits first. */
  async ready(timeoutMs = 20_000): Promise<void> {
    ({ listeners: this.listeners, socket: this.socket, port: this.port } = listenersOf(await this.proc.ready(timeoutMs)));
  }

  /** Wait for exit; SIGKILL after timeoutMs. */
  waitExit(timeoutMs = 15_000): Promise<ExitStatus & { timedOut: boolean }> {
    return this.proc.waitExit(timeoutMs);
  }

  stop(): Promise<void> {
    return this.proc.stop(15_000);
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

/** A JSON-RPC call over TCP HTTP with a bearer token; the parsed answer. */
export async function tcpCall(port: number, token: string, method: string, params: Record<string, unknown> = {}): Promise<RpcAnswer & { status: number }> {
  const r = await httpPost({ port }, JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }), { token });
  return { ...(JSON.parse(r.text) as RpcAnswer), status: r.status };
}

/** A WebSocket to /rpc that records every message. */
export class WsClient extends WsBase {
  /** Open, or reject with the HTTP status and body of a refused upgrade (`{ status, body }`). */
  static async open(port: number, token: string | undefined, opts: WsOpenOptions = {}): Promise<WsClient> {
    return new WsClient(await WsBase.connect(port, token, opts));
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
