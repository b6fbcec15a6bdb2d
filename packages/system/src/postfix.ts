import { existsSync } from 'node:fs';
import { chmod, realpath } from 'node:fs/promises';
import path from 'node:path';
import { type PostfixView, withManagedBlock } from '@scoped/sdk';
import { crashpoint } from './crash.js';
import { exec } from './exec.js';
import { hostPath, modeIfExists, ownerIfExists, readIfExists, writeFileAtomic } from './files.js';
import { editMainCf, parseMainCf } from './maincf.js';
import type { WatchCache } from './watch-cache.js';

/** Where the Postfix programs live; overridable for unusual installs. */
const POSTCONF = process.env.SCOPED_POSTCONF ?? 'postconf';
const POSTMAP = process.env.SCOPED_POSTMAP ?? 'postmap';

/**
 * Postfix waits ("cools down") before reading a main.cf modified within the last ~2 s,
 * because an editor might still be writing it. Our writes are atomic renames, so the file
 * is whole the moment it appears; dating its mtime this far back keeps every Postfix
 * program that reads it next (reload, postmap, postconf) from pausing.
 */
const COOL_DOWN_MS = 3_000;

/** A file's real path (symlinks resolved) when it exists under the root (on `/`, anywhere); null otherwise. */
async function realPathUnder(root: string, file: string): Promise<string | null> {
  if (!path.isAbsolute(file)) return null;
  try {
    const [realRoot, real] = await Promise.all([realpath(root), realpath(file)]);
    return realRoot === '/' || real.startsWith(`${realRoot}/`) ? real : null;
  } catch {
    return null;
  }
}

/** Postfix's configuration under a root: read like `postconf -n`, written in one atomic write. */
export class PostfixAdapter implements PostfixView {
  readonly configDir = '/etc/postfix';
  private known: Promise<Map<string, string>> | undefined;

  constructor(
    private readonly root: string,
    private readonly cache?: WatchCache,
  ) {}

  /** The host path of the config dir, for `-c`. */
  get hostConfigDir(): string {
    return hostPath(this.root, this.configDir);
  }

  private get mainCfPath(): string {
    return hostPath(this.root, `${this.configDir}/main.cf`);
  }

  async installed(): Promise<boolean> {
    try {
      await this.defaults();
      return true;
    } catch {
      return false;
    }
  }

  mainCf(): Promise<Map<string, string>> {
    const load = async () => parseMainCf((await readIfExists(this.mainCfPath))?.toString('utf8') ?? '');
    return this.cache ? this.cache.get(this.mainCfPath, 'main.cf', load) : load();
  }

  /** Every parameter Postfix knows with its built-in default (`postconf -d`), read once per process. */
  private defaults(): Promise<Map<string, string>> {
    this.known ??= exec(POSTCONF, ['-d', '-c', this.hostConfigDir], { timeoutMs: 10_000 }).then(
      ({ stdout }) => parseMainCf(stdout),
      (err) => {
        this.known = undefined;
        throw err;
      },
    );
    return this.known;
  }

  async isKnownParameter(name: string): Promise<boolean> {
    return (await this.defaults()).has(name);
  }

  /** A parameter's built-in default value. */
  async defaultOf(name: string): Promise<string> {
    return (await this.defaults()).get(name) ?? '';
  }

  async defaultMapType(): Promise<string> {
    return (await this.defaultOf('default_database_type')) || 'hash';
  }

  /**
   * The master's pid file: `pid/master.pid` under queue_directory (main.cf's, else the built-in
   * default), symlinks resolved; null when it is missing or lies outside the root, where it is
   * never read (main.cf's queue_directory may name any directory).
   */
  async masterPidFile(): Promise<string | null> {
    const queue = (await this.mainCf()).get('queue_directory') ?? (await this.defaultOf('queue_directory'));
    return realPathUnder(this.root, `${queue}/pid/master.pid`);
  }

  /** Postfix's master program in its built-in daemon_directory (never main.cf's, which could name any directory). */
  async masterProgram(): Promise<string> {
    return `${await this.defaultOf('daemon_directory')}/master`;
  }

  /** All main.cf edits of one converge, in one atomic write. */
  async editMainCf(edits: ReadonlyMap<string, string | null>): Promise<void> {
    const before = (await readIfExists(this.mainCfPath))?.toString('utf8') ?? '';
    const after = editMainCf(before, edits);
    if (after === before) return;
    await writeFileAtomic(this.mainCfPath, after, 0o644, new Date(Date.now() - COOL_DOWN_MS));
  }

  /**
   * All master.cf block edits of one converge, in one atomic write, onto master.cf as it is now:
   * the operator's lines and other blocks stay byte for byte, and the file keeps its mode.
   */
  async editMasterCf(blocks: readonly { name: string; lines: readonly string[] | null }[]): Promise<void> {
    const file = hostPath(this.root, `${this.configDir}/master.cf`);
    const before = (await readIfExists(file))?.toString('utf8');
    if (before === undefined) throw new Error(`${this.configDir}/master.cf is missing: Postfix is not installed under this root`);
    let after = before;
    for (const b of blocks) after = withManagedBlock(after, b.lines, b.name);
    if (after === before) return;
    // Its mode and owner stay as they were: only the blocks' lines are scoped's.
    await writeFileAtomic(file, after, (await modeIfExists(file)) ?? 0o644, undefined, (await ownerIfExists(file)) ?? undefined);
  }

  /**
   * The database file postmap builds for a source file with the default map type
   * (`.db` for hash and btree, `.lmdb` for lmdb).
   */
  async mapDatabase(path: string): Promise<string> {
    const type = await this.defaultMapType();
    return `${path}.${type === 'lmdb' ? 'lmdb' : 'db'}`;
  }

  /**
   * Rebuild a map. The umask is narrowed while postmap starts so the database is never
   * wider than its source file, not even for the instant before a chmod.
   */
  async postmap(path: string, mode: number): Promise<void> {
    const type = await this.defaultMapType();
    const source = hostPath(this.root, path);
    const old = process.umask(0o077);
    let run;
    try {
      run = exec(POSTMAP, ['-c', this.hostConfigDir, `${type}:${source}`], { timeoutMs: 30_000 });
    } finally {
      process.umask(old);
    }
    crashpoint();
    await run;
    crashpoint();
    const db = hostPath(this.root, await this.mapDatabase(path));
    if (existsSync(db)) await chmod(db, mode);
  }
}
