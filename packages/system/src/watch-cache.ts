import { type FSWatcher, statSync, watch } from 'node:fs';
import path from 'node:path';

const within = (p: string, top: string) => p === top || p.startsWith(top === '/' ? '/' : `${top}/`);

/**
 * Caches what was read from files, each entry dropped the moment inotify reports a change
 * in its directory (a write, a rename over it, a removal), and by `invalidate` for our own
 * writes, which must be seen at once. The directories between `top` and a cached file are
 * watched as well, so a whole directory replaced (`/etc` restored from a backup, `mv
 * postfix.new postfix`) drops everything read under it; a file under a directory that does not
 * exist yet is cached as absent until the nearest existing one sees it created. A file whose
 * directories cannot be watched is never cached, so a read is always as fresh as the disk.
 */
export class WatchCache {
  /** By file, then by what was derived from it (its text, its stat, a parse of it). */
  private readonly entries = new Map<string, Map<string, Promise<unknown>>>();
  private readonly watchers = new Map<string, FSWatcher>();
  /** Grows whenever something read may have changed: a drop, an invalidation, or a read that could not be cached. */
  generation = 0;

  /** `top`: the highest directory to watch above a cached file (the sandbox root); none watches only the file's own. */
  constructor(private readonly top?: string) {}

  /** The cached `kind` of a file, or what `load` reads now (cached when its directories are watched). */
  get<T>(file: string, kind: string, load: () => Promise<T>): Promise<T> {
    const hit = this.entries.get(file)?.get(kind);
    if (hit) return hit as Promise<T>;
    if (!this.watched(path.dirname(file))) {
      this.generation++;
      return load();
    }
    const value = load();
    let kinds = this.entries.get(file);
    if (!kinds) this.entries.set(file, (kinds = new Map()));
    kinds.set(kind, value);
    value.catch(() => this.entries.get(file)?.delete(kind));
    return value;
  }

  /** Forget a file (after writing it ourselves). */
  invalidate(file: string): void {
    this.generation++;
    this.entries.delete(file);
  }

  /**
   * Watch a directory and its ancestors up to `top`. True when a change to the file must show
   * up as an event: every existing directory of the chain is watched, and where the chain stops
   * existing, the creation of its first missing directory is seen by the last existing one.
   */
  private watched(dir: string): boolean {
    let any = false;
    for (const d of this.chain(dir)) {
      const w = this.watchDir(d);
      if (w === 'failed') return false;
      if (w === 'missing') return any;
      any = true;
    }
    return true;
  }

  /** The directory and its ancestors up to `top`, topmost first. */
  private chain(dir: string): string[] {
    const out = [dir];
    if (this.top === undefined || !within(dir, this.top)) return out;
    for (let d = dir; d !== this.top && path.dirname(d) !== d; ) out.unshift((d = path.dirname(d)));
    return out;
  }

  private watchDir(dir: string): 'watched' | 'missing' | 'failed' {
    if (this.watchers.has(dir)) return 'watched';
    let ino: number;
    try {
      ino = statSync(dir).ino;
    } catch {
      return 'missing';
    }
    try {
      const w = watch(dir, { persistent: false }, (_event, name) => {
        if (name === null) return this.dropTree(dir);
        const child = name.toString();
        // A file changed, or a directory under this one was renamed, replaced or removed.
        this.dropTree(path.join(dir, child));
        // Events about the watched directory itself carry its own name: moved away or deleted?
        if (child === path.basename(dir) && !this.sameDir(dir, ino)) this.dropTree(dir);
      });
      w.on('error', () => this.dropTree(dir));
      this.watchers.set(dir, w);
      return 'watched';
    } catch {
      return 'failed';
    }
  }

  private sameDir(dir: string, ino: number): boolean {
    try {
      return statSync(dir).ino === ino;
    } catch {
      return false;
    }
  }

  /** Forget everything read at or under a path, and stop watching the directories there (re-watched on the next read). */
  private dropTree(p: string): void {
    this.generation++;
    for (const key of this.entries.keys()) if (within(key, p)) this.entries.delete(key);
    for (const [dir, w] of this.watchers) {
      if (!within(dir, p)) continue;
      w.close();
      this.watchers.delete(dir);
    }
  }

  close(): void {
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
    this.entries.clear();
  }
}
