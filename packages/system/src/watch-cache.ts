import { type FSWatcher, watch } from 'node:fs';
import path from 'node:path';

/**
 * Caches what was read from files, each entry dropped the moment inotify reports a change
 * in its directory (a write, a rename over it, a removal), and by `invalidate` for our own
 * writes, which must be seen at once. A file whose directory cannot be watched (it does not
 * exist yet) is never cached, so a read is always as fresh as the file system.
 */
export class WatchCache {
  /** By file, then by what was derived from it (its text, its stat, a parse of it). */
  private readonly entries = new Map<string, Map<string, Promise<unknown>>>();
  private readonly watchers = new Map<string, FSWatcher | null>();

  /** The cached `kind` of a file, or what `load` reads now (cached when the directory is watched). */
  get<T>(file: string, kind: string, load: () => Promise<T>): Promise<T> {
    const hit = this.entries.get(file)?.get(kind);
    if (hit) return hit as Promise<T>;
    if (!this.watchDir(path.dirname(file))) return load();
    const value = load();
    let kinds = this.entries.get(file);
    if (!kinds) this.entries.set(file, (kinds = new Map()));
    kinds.set(kind, value);
    value.catch(() => this.entries.get(file)?.delete(kind));
    return value;
  }

  /** Forget a file (after writing it ourselves). */
  invalidate(file: string): void {
    this.entries.delete(file);
  }

  private watchDir(dir: string): boolean {
    const existing = this.watchers.get(dir);
    if (existing) return true;
    try {
      const w = watch(dir, { persistent: false }, (_event, name) => {
        if (name === null) this.dropDir(dir);
        else this.entries.delete(path.join(dir, name.toString()));
      });
      w.on('error', () => {
        this.dropDir(dir);
        w.close();
        this.watchers.delete(dir);
      });
      this.watchers.set(dir, w);
      return true;
    } catch {
      return false;
    }
  }

  private dropDir(dir: string): void {
    for (const key of this.entries.keys()) if (path.dirname(key) === dir) this.entries.delete(key);
  }

  close(): void {
    for (const w of this.watchers.values()) w?.close();
    this.watchers.clear();
    this.entries.clear();
  }
}
