import { closeSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import KeyvSqlite from '@keyv/sqlite';
import Keyv from 'keyv';

/** What the daemon persists as one value, so a change of several vars is one atomic write. */
export interface State {
  /** Increases by one with every applied change. */
  revision: number;
  vars: Record<string, unknown>;
  /** The revision at which each var last changed, for optimistic concurrency. */
  varRevisions: Record<string, number>;
}

/** One durable record of a mutation; values are already redacted. */
export interface AuditEntry {
  seq?: number;
  time: string;
  actor: string;
  transport: string;
  action: string;
  target: string;
  old?: unknown;
  new?: unknown;
  plan: string[];
  outcome: 'applied' | 'unchanged' | 'refused' | 'rolled-back';
  reason?: string;
  revision: number;
}

/** Keys of a numbered log, sorting in order: `audit:000000000042`. */
const logKey = (name: string) => (seq: number) => `${name}:${String(seq).padStart(12, '0')}`;
const auditKey = logKey('audit');
const eventKey = logKey('event');
/** Entries read from a log in one query at most. */
const SPAN = 500;

/** SQLite that writes several keys in one statement, so one commit (one fsync) instead of one each. */
class BatchingSqlite extends KeyvSqlite {
  async setMany(entries: { key: string; value: unknown }[]): Promise<boolean[]> {
    if (entries.length === 0) return [];
    const table = (this.opts as { table: string }).table;
    const rows = entries.map(() => '(?, ?)').join(', ');
    await this.query(`INSERT INTO ${table} (key, value) VALUES ${rows} ON CONFLICT(key) DO UPDATE SET value=excluded.value`, ...entries.flatMap((e) => [e.key, e.value]));
    return entries.map(() => true);
  }
}

/** The daemon's durable store: keyv over SQLite (or any keyv URI). */
export class Store {
  private constructor(
    private readonly kv: Keyv,
    readonly uri: string,
  ) {}

  /**
   * Open a store. `sqlite://PATH` makes the file mode 0600 before SQLite first writes to it,
   * because it holds secret var values.
   */
  static async open(uri: string): Promise<Store> {
    if (!uri.startsWith('sqlite://')) throw new Error(`unsupported store ${uri}: use sqlite://PATH`);
    const file = uri.slice('sqlite://'.length);
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    closeSync(openSync(file, 'a', 0o600));
    const sqlite = new BatchingSqlite({ uri, table: 'scoped', busyTimeout: 5_000 });
    // Write-ahead logging: one fsync per commit instead of rollback journaling's several, with
    // synchronous=FULL kept, so every commit is on disk before it is reported (the converge
    // journal must be durable before the first file is written). SQLite gives the -wal and
    // -shm files the database file's mode (0600).
    await sqlite.query('PRAGMA journal_mode=WAL');
    await sqlite.query('PRAGMA synchronous=FULL');
    // A failed write must fail the mutation, never pass silently.
    const kv = new Keyv({ store: sqlite, namespace: 'scoped', throwOnErrors: true });
    kv.on('error', () => {});
    const store = new Store(kv, uri);
    await kv.get('state');
    return store;
  }

  async loadState(): Promise<State> {
    const s = (await this.kv.get('state')) as State | undefined;
    return s ?? { revision: 0, vars: {}, varRevisions: {} };
  }

  async saveState(state: State): Promise<void> {
    await this.kv.set('state', state);
  }

  private auditSeq: number | undefined;
  /** The low-water marks of the numbered logs, once read. */
  private readonly lows: Record<string, number> = {};

  /**
   * Append an audit entry durably (SQLite commits before this resolves). Beyond `keep`
   * entries the oldest are deleted, so the trail is bounded.
   */
  async appendAudit(entry: AuditEntry, keep = 10_000): Promise<void> {
    this.auditSeq ??= ((await this.kv.get('auditSeq')) as number | undefined) ?? 0;
    const seq = ++this.auditSeq;
    await this.appendBounded('audit', [[seq, { ...entry, seq }]], keep);
  }

  /**
   * Write entries of the numbered log `name` and its sequence number, then delete everything
   * older than the newest `keep`, from a stored low-water mark up, so a `keep` lowered
   * between restarts trims the whole excess at once.
   */
  private async appendBounded(name: 'audit' | 'event', entries: [seq: number, value: unknown][], keep: number): Promise<void> {
    if (entries.length === 0) return;
    const key = name === 'audit' ? auditKey : eventKey;
    const seq = entries.at(-1)![0];
    await this.kv.setMany([...entries.map(([n, value]) => ({ key: key(n), value })), { key: `${name}Seq`, value: seq }]);
    const low = (this.lows[name] ??= ((await this.kv.get(`${name}Low`)) as number | undefined) ?? 1);
    const first = seq - keep + 1;
    if (first <= low) return;
    const stale = Array.from({ length: first - low }, (_, i) => key(low + i));
    for (let i = 0; i < stale.length; i += SPAN) await this.kv.deleteMany(stale.slice(i, i + SPAN));
    await this.kv.set(`${name}Low`, first);
    this.lows[name] = first;
  }

  /** The newest `limit` entries that pass `filter`, oldest first. */
  async auditEntries(limit = 100, filter: (e: AuditEntry) => boolean = () => true): Promise<AuditEntry[]> {
    const seq = ((await this.kv.get('auditSeq')) as number | undefined) ?? 0;
    const out: AuditEntry[] = [];
    for (let hi = seq; hi >= 1 && out.length < limit; hi -= SPAN) {
      const batch = await this.span<AuditEntry>(auditKey, Math.max(1, hi - SPAN + 1), hi);
      if (batch.length === 0) break;
      for (const e of batch.reverse()) if (filter(e) && out.length < limit) out.push(e);
    }
    return out.reverse();
  }

  /** The entries `lo..hi` of a numbered log that are kept, oldest first. */
  private async span<T>(key: (seq: number) => string, lo: number, hi: number): Promise<T[]> {
    const keys = Array.from({ length: Math.max(0, hi - lo + 1) }, (_, i) => key(lo + i));
    return ((await this.kv.getMany(keys)) as (T | undefined)[]).filter((e): e is T => e !== undefined);
  }

  async eventRevision(): Promise<number> {
    return ((await this.kv.get('eventSeq')) as number | undefined) ?? 0;
  }

  /** Keep events durably, in one commit; beyond `keep` the oldest are dropped. */
  async appendEvents(events: { revision: number }[], keep: number): Promise<void> {
    await this.appendBounded('event', events.map((e) => [e.revision, e]), keep);
  }

  /** The kept events after a revision, oldest first; at most the first `limit` revisions of them. */
  async eventsAfter<T extends { revision: number }>(since: number, keep: number, limit = Infinity): Promise<T[]> {
    const newest = await this.eventRevision();
    const first = Math.max(since + 1, newest - keep + 1);
    const last = Math.min(newest, first + limit - 1);
    const out: T[] = [];
    for (let lo = first; lo <= last; lo += SPAN) out.push(...(await this.span<T>(eventKey, lo, Math.min(lo + SPAN - 1, last))));
    return out;
  }

  async loadTokens<T>(): Promise<T[]> {
    return ((await this.kv.get('tokens')) as T[] | undefined) ?? [];
  }

  async saveTokens<T>(tokens: T[]): Promise<void> {
    await this.kv.set('tokens', tokens);
  }

  /** The converge journal: the intent of an apply, recorded before its first write. */
  async loadJournal<T>(): Promise<T | undefined> {
    return (await this.kv.get('journal')) as T | undefined;
  }

  async saveJournal<T>(journal: T | undefined): Promise<void> {
    if (journal === undefined) await this.kv.delete('journal');
    else await this.kv.set('journal', journal);
  }

  async close(): Promise<void> {
    await this.kv.disconnect();
  }
}
