import { existsSync } from 'node:fs';
import { lstat, rmdir } from 'node:fs/promises';
import path from 'node:path';

import { stat as fsStat } from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import type { Change, ServiceChange, System } from '@scoped/sdk';
import { crashpoint } from './crash.js';
import { exec } from './exec.js';
import { userIds } from './daemons.js';
import { hostPath, modeIfExists, ownerIfExists, readIfExists, removeFile, strayTempFiles, writeFileAtomic } from './files.js';
import { PostfixAdapter } from './postfix.js';
import { WatchCache } from './watch-cache.js';
import { type ServiceState, restoreServices, serviceStates } from './rollback.js';
import { type ServiceDriver, chooseServiceDriver } from './services.js';

export interface HostSystemOptions {
  root: string;
  /** Also set the kernel's hostname (only sensible when root is `/` or inside a UTS namespace). */
  kernelHostname: boolean;
  services?: ServiceDriver;
}

/** A snapshot as JSON, for the converge journal. */
export interface SerializedSnapshot {
  /** The owner (uid, gid) is absent in journals written before owners were recorded: left as it is then. */
  files: [path: string, base64: string | null, mode: number | null, owner?: [uid: number, gid: number]][];
  dirs?: string[];
  kernelHostname: string | null;
  /** Absent in journals written before service states were recorded. */
  services?: ServiceState[];
}

export function serializeSnapshot(s: Snapshot): SerializedSnapshot {
  return {
    files: [...s.files].map(([p, f]) => {
      const entry: SerializedSnapshot['files'][number] = [p, f.content?.toString('base64') ?? null, f.mode];
      if (f.owner) entry.push([f.owner.uid, f.owner.gid]);
      return entry;
    }),
    dirs: s.dirs,
    kernelHostname: s.kernelHostname,
    services: s.services,
  };
}

/** `services` stands in for the service states of a journal that has none: the converge's service changes, their prior state unknown. */
export function parseSnapshot(s: SerializedSnapshot, services: readonly Change[] = []): Snapshot {
  return {
    files: new Map(
      s.files.map(([p, b64, mode, owner]) => [
        p,
        { content: b64 === null ? null : Buffer.from(b64, 'base64'), mode, ...(owner ? { owner: { uid: owner[0], gid: owner[1] } } : {}) },
      ]),
    ),
    dirs: s.dirs ?? [],
    kernelHostname: s.kernelHostname,
    services: s.services ?? services.flatMap((c) => (c.kind === 'service' ? [{ service: c.service, running: null, actions: [c.action] }] : [])),
  };
}

/** The bytes and mode of the files a plan touches, taken before applying it. */
export interface Snapshot {
  /** `owner`: the file's uid and gid, when it existed (absent in journals from before owners were recorded). */
  files: Map<string, { content: Buffer | null; mode: number | null; owner?: { uid: number; gid: number } }>;
  /** Directories that did not exist and a write would create, deepest first: removed again on restore when empty. */
  dirs: string[];
  kernelHostname: string | null;
  /** The services the plan acts on and whether each ran, read before the first change. */
  services: ServiceState[];
}

/**
 * The real machine under a root. Units observe through the System part; the engine applies
 * changes, snapshots and restores through the rest.
 */
export class HostSystem implements System {
  readonly root: string;
  readonly postfix: PostfixAdapter;
  readonly services: ServiceDriver;
  private readonly manageKernelHostname: boolean;

  /** Reads are cached until inotify (or our own write) says the file changed: a scope.get costs no I/O. */
  private readonly cache: WatchCache;

  constructor(opts: HostSystemOptions) {
    this.root = opts.root;
    this.cache = new WatchCache(path.resolve(opts.root));
    this.postfix = new PostfixAdapter(opts.root, this.cache);
    // Service state is read live, not cached: every call counts as an uncached read (see readGeneration).
    const driver = opts.services ?? chooseServiceDriver(opts.root, this.postfix);
    this.services = new Proxy(driver, {
      get: (target, prop, receiver) => {
        const v = Reflect.get(target, prop, receiver) as unknown;
        if (typeof v !== 'function') return v;
        return (...args: unknown[]) => {
          this.uncached++;
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    this.manageKernelHostname = opts.kernelHostname;
  }

  /** hostPath, remembered: the same few paths are resolved on every read. */
  private readonly hostPaths = new Map<string, string>();
  private host(p: string): string {
    let h = this.hostPaths.get(p);
    if (h === undefined) {
      if (this.hostPaths.size >= 1_000) this.hostPaths.clear();
      this.hostPaths.set(p, (h = hostPath(this.root, p)));
    }
    return h;
  }

  readFile(path: string): Promise<string | null> {
    const file = this.host(path);
    return this.cache.get(file, 'text', async () => (await readIfExists(file))?.toString('utf8') ?? null);
  }

  stat(path: string): Promise<{ mode: number; mtimeMs: number } | null> {
    const file = this.host(path);
    return this.cache.get(file, 'stat', async () => {
      try {
        const st = await fsStat(file);
        return { mode: st.mode & 0o7777, mtimeMs: st.mtimeMs };
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR') return null;
        throw err;
      }
    });
  }

  /** Stop watching files; reads after this go to the file system every time. */
  close(): void {
    this.cache.close();
  }

  async kernelHostname(): Promise<string | null> {
    if (!this.manageKernelHostname) return null;
    this.uncached++;
    return osHostname();
  }

  /** Reads that bypass the cache (kernel hostname, services). */
  private uncached = 0;

  /**
   * Changes whenever anything a unit may have observed could have changed since: a file
   * dropped from the cache, our own write, or any read the cache cannot vouch for. Two equal
   * generations around an observe mean a second observe would see the same.
   */
  readGeneration(): string {
    return `${this.cache.generation}:${this.uncached}`;
  }

  /** The files (inside the root) a change writes, for the snapshot. */
  async touches(change: Change): Promise<string[]> {
    switch (change.kind) {
      case 'file':
      case 'file.remove':
        return [change.path];
      case 'postconf':
        return [`${this.postfix.configDir}/main.cf`];
      case 'master.block':
        return [`${this.postfix.configDir}/master.cf`];
      case 'postmap':
        return [await this.postfix.mapDatabase(change.path)];
      default:
        return [];
    }
  }

  /**
   * A file is never written or removed through a symlink below the root that root did not make,
   * nor where the file itself is one.
   * Some files lie in directories a daemon's user owns (the DKIM keys in var/lib/rspamd, which is
   * rspamd's), whose user could swap a directory for a symlink and have root write, chown or
   * delete a file of that name anywhere. What does not exist yet is made by the write, as real
   * directories.
   */
  private async refuseForeignSymlink(change: Change): Promise<void> {
    if (change.kind !== 'file' && change.kind !== 'file.remove') return;
    // The file itself too: a unit may have planned from what it read through the link (a key
    // file linked to root's TLS key, "rewritten" 0600 for rspamd's user, would hand that key over).
    const parts = path.posix.normalize(change.path).split('/').filter(Boolean);
    for (let i = 1; i <= parts.length; i++) {
      const dir = `/${parts.slice(0, i).join('/')}`;
      let st: Awaited<ReturnType<typeof lstat>>;
      try {
        st = await lstat(this.host(dir));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR') return;
        throw err;
      }
      if (st.isSymbolicLink() && st.uid !== 0) {
        const verb = change.kind === 'file' ? 'write' : 'remove';
        throw new Error(
          `scoped will not ${verb} ${change.path}: ${dir} under the root is a symlink that root did not make (its owner is uid ${st.uid}); remove it (scoped makes what is missing), then try again`,
        );
      }
    }
  }

  async snapshot(changes: readonly Change[]): Promise<Snapshot> {
    for (const change of changes) await this.refuseForeignSymlink(change);
    const files: Snapshot['files'] = new Map();
    const dirs = new Set<string>();
    for (const change of changes) {
      for (const p of await this.touches(change)) {
        if (files.has(p)) continue;
        const host = this.host(p);
        const content = await readIfExists(host);
        const owner = await ownerIfExists(host);
        files.set(p, { content, mode: await modeIfExists(host), ...(owner ? { owner } : {}) });
        if (content === null) for (let d = path.posix.dirname(p); d !== '/' && !existsSync(this.host(d)); d = path.posix.dirname(d)) dirs.add(d);
      }
    }
    const kernel = changes.some((c) => c.kind === 'kernel-hostname') ? osHostname() : null;
    return { files, dirs: [...dirs].sort((a, b) => b.length - a.length), kernelHostname: kernel, services: await serviceStates(this.services, changes) };
  }

  /**
   * Undo a converge (see rollback.ts): every snapshotted file back as it was, byte for byte and
   * mode for mode, temp files a crash left swept, the kernel's hostname back, then each service
   * back to the state recorded before the first change. Safe to repeat after a crash anywhere in it.
   * Every step is tried even when one fails (a file that cannot be written does not leave a
   * stopped service stopped); then what failed is thrown, each step named.
   */
  async restore(snap: Snapshot): Promise<void> {
    const failed: string[] = [];
    const attempt = async (what: string | undefined, step: () => Promise<void>) => {
      try {
        await step();
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        failed.push(what ? `${what}: ${message}` : message);
      }
    };
    for (const [p, { content, mode, owner }] of snap.files) {
      const host = this.host(p);
      this.cache.invalidate(host);
      await attempt(`restore ${p}`, async () => {
        for (const stray of await strayTempFiles(host)) await removeFile(stray);
        if (content === null) await removeFile(host);
        else await writeFileAtomic(host, content, mode ?? 0o644, p.endsWith('/main.cf') ? new Date(Date.now() - 3_000) : undefined, owner);
      });
    }
    for (const d of snap.dirs) await rmdir(this.host(d)).catch(() => undefined);
    if (snap.kernelHostname !== null) await attempt('restore the kernel hostname', () => this.setKernelHostname(snap.kernelHostname!));
    crashpoint();
    const filesBack = failed.length === 0;
    await attempt(undefined, () => restoreServices(this.services, snap.services));
    if (failed.length) throw new Error(`${filesBack ? 'the files are back, but ' : ''}${failed.join('; ')}`);
  }

  /**
   * Carry out a plan's changes in order: every main.cf edit in one write, and every master.cf
   * block in one write, each at the point the first of them stands; service actions only for
   * services that run.
   */
  /**
   * `afterEach` runs after every change; it may throw to stop the apply there (a cancelled
   * job), leaving the caller to restore the snapshot.
   */
  async apply(changes: readonly Change[], afterEach?: (change: Change) => void | Promise<void>): Promise<void> {
    try {
      await this.applyInOrder(changes, afterEach);
    } finally {
      for (const c of changes) for (const p of await this.touches(c)) this.cache.invalidate(this.host(p));
    }
  }

  private async applyInOrder(changes: readonly Change[], afterEach?: (change: Change) => void | Promise<void>): Promise<void> {
    const edits = new Map<string, string | null>();
    for (const c of changes) if (c.kind === 'postconf') edits.set(c.param, c.value);
    const blocks = changes.flatMap((c) => (c.kind === 'master.block' ? [{ name: c.name, lines: c.lines }] : []));
    let mainCfWritten = false;
    let masterCfWritten = false;
    for (let i = 0; i < changes.length; i++) {
      const c = changes[i]!;
      switch (c.kind) {
        case 'file': {
          await this.refuseForeignSymlink(c);
          let owner: { uid: number; gid: number } | undefined;
          if (c.owner !== undefined) {
            const ids = userIds(c.owner);
            if (!ids) throw new Error(`cannot write ${c.path}: its owner ${c.owner} is not a user on this machine (install the package that brings it)`);
            owner = ids;
          }
          await writeFileAtomic(this.host(c.path), c.content, c.mode, undefined, owner);
          break;
        }
        case 'file.remove':
          await this.refuseForeignSymlink(c);
          await removeFile(this.host(c.path));
          break;
        case 'postconf':
          if (!mainCfWritten) await this.postfix.editMainCf(edits);
          mainCfWritten = true;
          break;
        case 'master.block':
          if (!masterCfWritten) await this.postfix.editMasterCf(blocks);
          masterCfWritten = true;
          break;
        case 'postmap': {
          const mode = (await modeIfExists(this.host(c.path))) ?? 0o600;
          await this.postfix.postmap(c.path, mode);
          break;
        }
        case 'service': {
          // Services started one after another in the plan start side by side: each waits for
          // its own port, and none needs another up to start.
          let j = i + 1;
          while (c.action === 'start' && changes[j]?.kind === 'service' && (changes[j] as ServiceChange).action === 'start') j++;
          const steps = changes.slice(i, j) as ServiceChange[];
          // Every start is over (up or failed) before a failure is thrown: a rollback never runs
          // beside a start still in progress.
          const failed = (await Promise.allSettled(steps.map((s) => this.serviceStep(s)))).find((r) => r.status === 'rejected');
          if (failed) throw failed.reason;
          for (const s of steps) await afterEach?.(s);
          i = j - 1;
          continue;
        }
        case 'kernel-hostname':
          await this.setKernelHostname(c.name);
          break;
      }
      await afterEach?.(c);
    }
  }

  /** Reload and restart only what runs (a stopped service reads its config when it starts); start only what is stopped. */
  private async serviceStep(c: ServiceChange): Promise<void> {
    const running = await this.services.running(c.service);
    if (c.action === 'start' ? !running : running) {
      crashpoint();
      await this.services.control(c.service, c.action);
      crashpoint();
    }
  }

  private async setKernelHostname(name: string): Promise<void> {
    if (!this.manageKernelHostname) return;
    await exec('hostname', [name], { timeoutMs: 5_000 });
  }
}
