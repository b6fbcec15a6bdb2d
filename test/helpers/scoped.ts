/**
 * The one fixture of the end-to-end tests: a real scoped process on a fresh temp root, with a
 * private Postfix under the same root when asked, and every way a test talks to it (the real
 * cpcmd, JSON-RPC over the unix socket, HTTP and WebSocket with the admin token).
 *
 *     await using d = await scoped({ postfix: true });
 *     expectExit(await d.cpcmd(['scope:set', 'net.hostname', 'mail.example.test']), 'ok');
 *
 * Disposing it (`await using`, or `await d.close()` from an afterAll) stops every scoped
 * process started on the root, stops Postfix, and removes the root. A daemon can be restarted
 * on the same root (`d.restart(opts)`), stopped and started again, or joined by a second
 * process on the same root (`d.spawn(opts)`); all go with the fixture. Should a worker exit
 * with a fixture still open (a crash, a timeout), its processes are killed and its root removed.
 */
import { createHash } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Postfix, type PostfixOptions } from './postfix.js';
import {
  type CpcmdOptions,
  type ExitStatus,
  type LogLine,
  type RpcAnswer,
  type RunResult,
  type ScopedSpawnOptions,
  ScopedProcess,
  WsClient,
  type WsOpenOptions,
  cpcmd,
  httpPost,
  listenersOf,
  makeTempDir,
  readOrNull,
  walkTree,
} from './proc.js';

export {
  CPCMD_BIN,
  type HttpAnswer,
  REPO,
  type RpcAnswer,
  type RunResult,
  SCOPED_BIN,
  WsClient,
  cleanEnv,
  cpcmd,
  httpPost,
  mustRun,
  pidsMentioning,
  readOrNull,
  heapAfterGc,
  rssBytes,
  run,
  sleep,
  waitFor,
} from './proc.js';
export { Postfix } from './postfix.js';

/** Every root this fixture makes starts with this, so a leak is easy to find. */
const TMP_PREFIX = 'scoped-e2e-';

interface StartOptions extends Pick<ScopedSpawnOptions, 'listen' | 'args' | 'config' | 'wrapper' | 'env' | 'nodeArgs'> {
  /** Resolve once the process exists, without waiting for "listening" (for runs that may exit first). */
  wait?: boolean;
}

interface ScopedOptions extends StartOptions {
  /** A private Postfix laid out under the root (`{ smtpd: true }`: with a smtpd so mail flows; `running`: started before scoped). */
  postfix?: boolean | (PostfixOptions & { running?: boolean });
  /** Files to write under the root before scoped starts (relative path to content). */
  files?: Record<string, string>;
  /** More preparation of the root before scoped starts. */
  setup?: (root: string) => Promise<void>;
  /** false: lay out the root (and Postfix) only; start scoped later with `d.start()`. */
  start?: boolean;
}

/** Everything started on one root: the processes, Postfix, and the root itself. */
class Box {
  readonly runs = new Set<Scoped>();
  postfix: Postfix | undefined;
  private disposed: Promise<void> | undefined;

  constructor(readonly root: string) {
    live.add(this);
  }

  dispose(): Promise<void> {
    this.disposed ??= (async () => {
      const errors: unknown[] = [];
      for (const r of this.runs) await r.stop().catch((e: unknown) => errors.push(e));
      await this.postfix?.stop().catch((e: unknown) => errors.push(e));
      await rm(this.root, { recursive: true, force: true, maxRetries: 3 }).catch((e: unknown) => errors.push(e));
      live.delete(this);
      if (errors.length) throw errors[0];
    })();
    return this.disposed;
  }
}

/** Last line of defence: kill what is left and remove its root when the worker exits. */
const live = new Set<Box>();
process.once('exit', () => {
  for (const box of live) {
    for (const r of box.runs) r.kill();
    rmSync(box.root, { recursive: true, force: true });
  }
});

/** A scoped process on a fixture's root; the fixture itself is the first one. */
export class Scoped implements AsyncDisposable {
  private proc: ScopedProcess | undefined;
  listeners: string[] = [];
  /** The unix socket, from the "listening" line. */
  socket = '';
  /** The TCP port, from the "listening" line; null with `listen: 'none'`. */
  port: number | null = null;

  constructor(
    private readonly box: Box,
    private readonly defaults: StartOptions,
  ) {
    box.runs.add(this);
  }

  get root(): string {
    return this.box.root;
  }

  /** The private Postfix (with `postfix`); throws when the fixture has none. */
  get postfix(): Postfix {
    if (!this.box.postfix) throw new Error('this fixture has no Postfix: scoped({ postfix: true })');
    return this.box.postfix;
  }

  private get p(): ScopedProcess {
    if (!this.proc) throw new Error('scoped was not started on this fixture: call d.start()');
    return this.proc;
  }

  /**
   * Start scoped on the root with the fixture's options, each overridden by `opts` for this
   * start only. Rejects when it exits before listening (the error's `exit`), unless `wait: false`.
   */
  async start(opts: StartOptions = {}): Promise<this> {
    if (this.proc?.running) throw new Error('scoped is already running on this fixture: stop() or restart() it');
    const o = { ...this.defaults, ...opts };
    this.proc = await ScopedProcess.spawn(this.root, o);
    this.listeners = [];
    this.socket = '';
    this.port = null;
    if (o.wait !== false) await this.ready();
    return this;
  }

  /** Wait for the "listening" line; rejects when the process exits first (killing nothing else). */
  async ready(timeoutMs = 20_000): Promise<void> {
    try {
      ({ listeners: this.listeners, socket: this.socket, port: this.port } = listenersOf(await this.p.ready(timeoutMs)));
    } catch (err) {
      await this.p.signal('SIGKILL');
      throw err;
    }
  }

  /** Stop (SIGTERM) and start again on the same root; `opts` as for start(). */
  async restart(opts: StartOptions = {}): Promise<this> {
    await this.stop();
    return this.start(opts);
  }

  /** Another scoped process on the same root (stopped with the fixture); `opts` as for start(). */
  async spawn(opts: StartOptions = {}): Promise<Scoped> {
    const other = new Scoped(this.box, this.defaults);
    await other.start(opts);
    return other;
  }

  /** SIGTERM, then SIGKILL after timeoutMs; the root stays. Safe to call twice. */
  async stop(timeoutMs = 15_000): Promise<void> {
    await this.proc?.stop(timeoutMs);
  }

  /** SIGKILL at once, without waiting (the exit handler's way). */
  kill(): void {
    if (this.proc?.running) this.proc.child.kill('SIGKILL');
  }

  /** Stop everything on the root (every process, Postfix) and remove it. */
  close(): Promise<void> {
    return this.box.dispose();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.box.dispose();
  }

  // -------------------------------------------------------------------------------------------
  // the process

  get child() {
    return this.p.child;
  }
  get pid(): number {
    return this.p.child.pid!;
  }
  get running(): boolean {
    return this.proc?.running ?? false;
  }
  get exited(): Promise<ExitStatus> {
    return this.p.exited;
  }
  get exitStatus(): ExitStatus | undefined {
    return this.p.exitStatus;
  }
  /** Wait for the exit; SIGKILL after timeoutMs. */
  waitExit(timeoutMs = 15_000): Promise<ExitStatus & { timedOut: boolean }> {
    return this.p.waitExit(timeoutMs);
  }
  /** Send a signal (when still running) and wait for the exit. */
  signal(sig: NodeJS.Signals, timeoutMs = 15_000): Promise<ExitStatus & { timedOut: boolean }> {
    return this.p.signal(sig, timeoutMs);
  }
  /** Everything this process wrote on stderr (its JSON log) so far. */
  stderr(): string {
    return this.p.stderr();
  }
  stdout(): string {
    return this.p.stdout();
  }
  /** The stderr log as parsed JSON lines (a line that is not JSON fails the parse loudly). */
  logLines(): LogLine[] {
    return this.stderr()
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as LogLine);
  }

  // -------------------------------------------------------------------------------------------
  // files

  /** The store's SQLite file (the default store under the root). */
  get storeFile(): string {
    return path.join(this.root, 'var/lib/scoped/scoped.sqlite');
  }
  get tokenFile(): string {
    return path.join(this.root, 'etc/scoped/admin.token');
  }
  /** The admin token scoped created for TCP. */
  token(): string {
    return readFileSync(this.tokenFile, 'utf8').trim();
  }
  /** A file under the root (text), or null when missing. */
  file(rel: string): Promise<string | null> {
    return readOrNull(path.join(this.root, rel), 'utf8');
  }
  /** Write a file under the root, making its directories. */
  write(rel: string, content: string): Promise<void> {
    return writeUnder(this.root, rel, content);
  }

  // -------------------------------------------------------------------------------------------
  // clients

  get url(): string {
    return `http://127.0.0.1:${this.port}/rpc`;
  }
  get wsUrl(): string {
    return `ws://127.0.0.1:${this.port}/rpc`;
  }

  /** The real cpcmd against this process's unix socket (or over `url` when given). */
  cpcmd(args: readonly string[], opts: CpcmdOptions = {}): Promise<RunResult> {
    return cpcmd(args, opts.url !== undefined ? opts : { socket: this.socket, ...opts });
  }

  /** A JSON-RPC call over the unix socket (admin); the parsed answer. */
  async call(method: string, params: Record<string, unknown> = {}, id: number | string = 1): Promise<RpcAnswer> {
    const r = await httpPost({ socket: this.socket }, JSON.stringify({ jsonrpc: '2.0', id, method, params }));
    return JSON.parse(r.text) as RpcAnswer;
  }

  /** A call over the unix socket that must succeed; its result. */
  async ok<T = any>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    const a = await this.call(method, params);
    if ('error' in a) throw new Error(`${method} failed: ${JSON.stringify(a.error)}`);
    return a.result as T;
  }

  /** A JSON-RPC call over TCP HTTP with a bearer token (default the admin's); the parsed answer and the HTTP status. */
  tcpCall(method: string, params: Record<string, unknown> = {}, token: string = this.token()): Promise<RpcAnswer & { status: number }> {
    return tcpCall(this.port!, token, method, params);
  }

  /** A WebSocket to /rpc with a bearer token (default the admin's; `null`: none). */
  ws(token: string | null = this.token(), opts: WsOpenOptions = {}): Promise<WsClient> {
    return WsClient.open(this.port!, token ?? undefined, opts);
  }
}

/** The fixture: a fresh root, Postfix on it when asked, and scoped started on it (unless `start: false`). */
export async function scoped(opts: ScopedOptions = {}): Promise<Scoped> {
  const { postfix, files, setup, start, ...defaults } = opts;
  const box = new Box(await makeTempDir(TMP_PREFIX, 0o755)); // the postfix user must traverse it
  const d = new Scoped(box, defaults);
  try {
    if (postfix) {
      box.postfix = await Postfix.create(box.root, postfix === true ? {} : postfix);
      if (postfix !== true && postfix.running) await box.postfix.start();
    }
    for (const [rel, content] of Object.entries(files ?? {})) await writeUnder(box.root, rel, content);
    if (setup) await setup(box.root);
    // A main.cf the preparation edited is dated back past Postfix's cool-down, as the layout's is.
    box.postfix?.backdateMainCf();
    if (start !== false) await d.start();
    return d;
  } catch (err) {
    await box.dispose().catch(() => undefined);
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// files

/** Write a file under a root, making its directories. */
export async function writeUnder(root: string, rel: string, content: string | Buffer): Promise<void> {
  const file = path.join(root, rel);
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, content);
}

interface DigestOptions {
  /** Each entry's mtime and inode too: proves a file was not rewritten, not only that its bytes are the same. */
  times?: boolean;
  /** Leave out entries whose relative path starts with one of these. */
  skip?: readonly string[];
}

/**
 * Every entry under dir (recursively; a missing dir is empty) as one readable line: its kind
 * and mode, and for a file its text when short and printable, else the sha256 of its bytes.
 * Compare two with toEqual: vitest prints which entries differ and how.
 */
export async function treeDigest(dir: string, opts: DigestOptions = {}): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for await (const { rel, full, st } of walkTree(dir)) {
    if (opts.skip?.some((s) => rel === s || rel.startsWith(s.endsWith('/') ? s : `${s}/`))) continue;
    const kind = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
    let line = `${kind} ${(st.mode & 0o7777).toString(8)}`;
    if (opts.times) line += ` mtime=${st.mtimeMs} ino=${st.ino}`;
    if (kind === 'file') {
      const bytes = await readFile(full);
      const text = bytes.toString('utf8');
      line +=
        bytes.length <= 4096 && !text.includes('\uFFFD') && !/[\u0000-\u0008\u000e-\u001f]/.test(text)
          ? ` ${JSON.stringify(text)}`
          : ` sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    }
    out[rel] = line;
  }
  return out;
}

/** A store's bytes on disk: the SQLite database and its write-ahead log. */
export async function storeBytes(file: string): Promise<number> {
  let total = 0;
  for (const f of [file, `${file}-wal`])
    total += await stat(f).then(
      (s) => s.size,
      () => 0,
    );
  return total;
}

// ---------------------------------------------------------------------------------------------
// raw transports

/** A JSON-RPC call over TCP HTTP with a bearer token; the parsed answer and the HTTP status. */
export async function tcpCall(port: number, token: string, method: string, params: Record<string, unknown> = {}): Promise<RpcAnswer & { status: number }> {
  const r = await httpPost({ port }, JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }), { token });
  return { ...(JSON.parse(r.text) as RpcAnswer), status: r.status };
}

let nextPeer = 10;

/**
 * A loopback address of its own (127.0.N.M) to connect from. The daemon limits failed logins
 * per peer address, so a test that fails on purpose uses its own address and cannot make
 * another test's requests wait.
 */
export function freshPeer(): string {
  nextPeer = nextPeer >= 250 ? 10 : nextPeer + 1;
  return `127.0.${process.pid % 250}.${nextPeer}`;
}

/** A temp directory of its own (0755, so the postfix user may traverse it), removed on dispose. */
export async function tempDir(prefix = `${TMP_PREFIX}dir-`): Promise<{ path: string } & AsyncDisposable> {
  const box = new Box(await makeTempDir(prefix, 0o755)); // removed with the worker should the test not get to it
  return { path: box.root, [Symbol.asyncDispose]: () => box.dispose() };
}
