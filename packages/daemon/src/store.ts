import { closeSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import KeyvSqlite from '@keyv/sqlite';
import type { AuditEntry as ListedEntry, Json } from '@scoped/protocol';
import Keyv from 'keyv';
import { Mutex } from './mutex.js';

/** What the daemon persists as one value, so a change of several vars is one atomic write. */
export interface State {
  /** Increases by one with every applied change. */
  revision: number;
  vars: Record<string, unknown>;
  /** The revision at which each var last changed, for optimistic concurrency. */
  varRevisions: Record<string, number>;
  /**
   * The vars whose starting value scoped took from the system at its first start, with the
   * revision of that adoption: while a var's revision is still that one, no one has set it.
   */
  adopted?: Record<string, number>;
}

/**
 * One durable record of a mutation (values already redacted): the protocol's AuditEntry, as
 * audit.list answers it, whose seq the store gives when it appends it. 'unchanged' and
 * 'refused' occur only in trails written before no-ops and refusals got stores of their own.
 */
export type AuditEntry = Omit<ListedEntry, 'seq' | 'outcome'> & { seq?: number; outcome: ListedEntry['outcome'] | 'unchanged' | 'refused' };

/** How long the history of changes is kept: the newest `keep` entries, none older than `maxAgeDays` (0: no age limit). */
export interface AuditRetention {
  keep: number;
  maxAgeDays: number;
}

/**
 * The refused calls of one caller, action and target, collapsed into one row: a flood of the
 * same refused call is one row with a count, never a row per call. `reason` is the last one's,
 * built without secrets and clipped.
 */
export type Refusal = Omit<CollapsedRow, 'value'>;

/**
 * The calls of one caller, action and target that changed nothing (answered 'unchanged'),
 * collapsed into one row like refusals. `value` is the last one's, redacted and clipped as in
 * the history; `reason` appears only on the row counting the no-ops over the caller's limit.
 */
export type Noop = CollapsedRow;

/** How much a collapsed log may write: `keep` rows in all, at most `newPerMinute` new rows per caller a minute. */
export interface RefusalLimits {
  keep: number;
  newPerMinute: number;
}

/** The action and target of the row that counts a caller's refusals over its rate limit. */
export const OVER_LIMIT = '*';

/** Keys of a numbered log, sorting in order: `audit:000000000042`. */
const logKey = (name: string) => (seq: number) => `${name}:${String(seq).padStart(12, '0')}`;
/** The history of changes, the token changes (kept apart so no token holder's changes push them out), the events. */
type LogName = 'audit' | 'tokenAudit' | 'event';
type AuditLog = Exclude<LogName, 'event'>;
const LOG_KEYS: Record<LogName, (seq: number) => string> = { audit: logKey('audit'), tokenAudit: logKey('token-audit'), event: logKey('event') };
const AUDIT_LOGS: readonly AuditLog[] = ['audit', 'tokenAudit'];
/** Entries read from a log in one query at most. */
const SPAN = 500;
/** The tables of collapsed refusals and no-ops, next to keyv's own table in the same database. */
const REFUSALS = 'scoped_refusals';
const NOOPS = 'scoped_noops';

/** SQLite that writes several keys in one statement, so one commit (one fsync) instead of one each. */
class BatchingSqlite extends KeyvSqlite {
  async setMany(entries: { key: string; value: unknown }[]): Promise<boolean[]> {
    if (entries.length === 0) return [];
    const table = (this.opts as { table: string }).table;
    const rows = entries.map(() => '(?, ?)').join(', ');
    await this.query(
      `INSERT INTO ${table} (key, value) VALUES ${rows} ON CONFLICT(key) DO UPDATE SET value=excluded.value`,
      ...entries.flatMap((e) => [e.key, e.value]),
    );
    return entries.map(() => true);
  }
}

/**
 * An open transaction of the store (Store.transaction): the writes given it go to disk in its
 * one commit, all of them or none.
 */
export interface Tx {
  readonly open: boolean;
}

/** The daemon's durable store: keyv over SQLite (or any keyv URI). */
export class Store {
  /** Refused calls, collapsed and rate-limited, apart from the history. */
  readonly refusals: CollapsedLog<Refusal>;
  /** Calls that changed nothing, collapsed and rate-limited the same way, apart from the history. */
  readonly noops: CollapsedLog<Noop>;
  /**
   * Every write runs under this lock, and a transaction holds it from BEGIN to COMMIT: the one
   * SQLite connection is shared, so nobody else's write can land inside a transaction (and be
   * committed, or rolled back, with it).
   */
  private readonly writes = new Mutex();

  private constructor(
    private readonly kv: Keyv,
    private readonly sql: Sql,
    readonly uri: string,
  ) {
    const locked: Sql = { query: (text: string, ...params: unknown[]) => this.writes.run(() => sql.query(text, ...params)) };
    this.refusals = new CollapsedLog<Refusal>(locked, REFUSALS, 'refused');
    this.noops = new CollapsedLog<Noop>(locked, NOOPS, 'unchanged');
  }

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
    // Refusals and no-ops live in tables of their own, one row per caller, action and target,
    // so neither can push the history of changes out of its bounded log.
    for (const [table, extra] of [
      [REFUSALS, ''],
      [NOOPS, ', value TEXT'],
    ]) {
      await sqlite.query(
        `CREATE TABLE IF NOT EXISTS ${table} (actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, transport TEXT NOT NULL, ` +
          `count INTEGER NOT NULL, first TEXT NOT NULL, last TEXT NOT NULL, reason TEXT${extra}, PRIMARY KEY (actor, action, target))`,
      );
      await sqlite.query(`CREATE INDEX IF NOT EXISTS ${table}_last ON ${table} (last)`);
    }
    const store = new Store(kv, sqlite, uri);
    await kv.get('state');
    await store.loadCounters();
    return store;
  }

  async loadState(): Promise<State> {
    const s = (await this.kv.get('state')) as State | undefined;
    return s ?? { revision: 0, vars: {}, varRevisions: {} };
  }

  /** Store the state: at once in a commit of its own, or in `tx`'s. */
  async saveState(state: State, tx?: Tx): Promise<void> {
    await this.write(tx, () => this.kv.set('state', state));
  }

  /**
   * Run `fn` in one transaction: the writes it gives `tx` are committed together (one commit,
   * one fsync), or, when it throws, none of them. Other writes wait until it ends.
   */
  transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return this.writes.run(async () => {
      const tx = { open: true };
      // The counters cached in memory follow the writes: a rolled-back transaction puts them back too.
      const cached = { seqs: { ...this.seqs }, auditNumber: this.auditNumber, lows: { ...this.lows }, oldest: { ...this.oldest } };
      await this.sql.query('BEGIN IMMEDIATE');
      try {
        const result = await fn(tx);
        await this.sql.query('COMMIT');
        return result;
      } catch (err) {
        await this.sql.query('ROLLBACK').catch(() => undefined);
        Object.assign(this.seqs, cached.seqs);
        this.auditNumber = cached.auditNumber;
        for (const k of Object.keys(this.lows)) delete this.lows[k];
        Object.assign(this.lows, cached.lows);
        for (const k of AUDIT_LOGS) delete this.oldest[k];
        Object.assign(this.oldest, cached.oldest);
        throw err;
      } finally {
        tx.open = false;
      }
    });
  }

  /** A write: inside `tx` (whose owner holds the lock) or under the lock as a commit of its own. */
  private write<T>(tx: Tx | undefined, fn: () => Promise<T>): Promise<T> {
    if (!tx) return this.writes.run(fn);
    if (!tx.open) throw new Error('a write was given a transaction that has ended');
    return fn();
  }

  /** The sequence numbers of the history logs (the newest key of each). */
  private readonly seqs: Record<AuditLog, number> = { audit: 0, tokenAudit: 0 };
  /**
   * The `seq` of the newest history entry, counted across both logs, so entries sort by it as
   * they were made; a store from before the token log began numbers on from its history's.
   */
  private auditNumber = 0;

  /** Read the counters once, at open, so appends running at once never read the same one. */
  private async loadCounters(): Promise<void> {
    for (const name of AUDIT_LOGS) this.seqs[name] = ((await this.kv.get(`${name}Seq`)) as number | undefined) ?? 0;
    this.auditNumber = ((await this.kv.get('auditNumber')) as number | undefined) ?? this.seqs.audit;
  }

  /** The low-water marks of the numbered logs, once read. */
  private readonly lows: Record<string, number> = {};

  /**
   * Append an entry to the history of changes durably (SQLite commits before this resolves).
   * Beyond `keep` entries, or older than `maxAgeDays`, the oldest are deleted. Refusals and
   * no-ops never come here (see `refusals` and `noops`), so nobody can push changes out of the
   * history by being refused or by setting what is already set. Token changes (`tokens`) go to
   * a log of their own, bounded by its own `keep`, so no token holder's changes can push them
   * out either; `auditEntries` merges the two.
   */
  async appendAudit(entry: AuditEntry, retention: AuditRetention = { keep: 10_000, maxAgeDays: 0 }, tokens = false, tx?: Tx): Promise<void> {
    await this.write(tx, async () => {
      const name: AuditLog = tokens ? 'tokenAudit' : 'audit';
      const seq = ++this.auditNumber;
      await this.appendBounded(name, [[++this.seqs[name], { ...entry, seq }]], retention.keep, [{ key: 'auditNumber', value: seq }]);
      await this.pruneAged(retention.maxAgeDays);
    });
  }

  /** The time of the oldest kept entry of each history log, once read: the age limit is checked against it without a read per append. */
  private readonly oldest: Partial<Record<AuditLog, string>> = {};

  /**
   * Delete the history entries older than `maxAgeDays`, of both logs. Also run at start-up,
   * so a lowered age limit or a long-stopped daemon trims at once.
   */
  pruneAudit(maxAgeDays: number): Promise<void> {
    return this.write(undefined, () => this.pruneAged(maxAgeDays));
  }

  /** pruneAudit, its caller holding the lock. */
  private async pruneAged(maxAgeDays: number): Promise<void> {
    if (maxAgeDays <= 0) return;
    const cutoff = new Date(Date.now() - maxAgeDays * 86_400_000).toISOString();
    for (const name of AUDIT_LOGS) await this.pruneLog(name, cutoff);
  }

  /** Delete the entries of one history log older than `cutoff`, oldest first, stopping at the first younger one (entries are appended in time order). */
  private async pruneLog(name: AuditLog, cutoff: string): Promise<void> {
    const cached = this.oldest[name];
    if (cached !== undefined && cached >= cutoff) return;
    const key = LOG_KEYS[name];
    const seq = ((await this.kv.get(`${name}Seq`)) as number | undefined) ?? 0;
    let low = (this.lows[name] ??= ((await this.kv.get(`${name}Low`)) as number | undefined) ?? 1);
    // The common case, once auditKeep trims an entry per append: the oldest kept one is young enough. One key read, not a span.
    const [head] = await this.span<AuditEntry>(key, low, low);
    if (head && head.time >= cutoff) {
      this.oldest[name] = head.time;
      return;
    }
    while (low <= seq) {
      const hi = Math.min(low + SPAN - 1, seq);
      const batch = (await this.kv.getMany(Array.from({ length: hi - low + 1 }, (_, i) => key(low + i)))) as (AuditEntry | undefined)[];
      const at = batch.findIndex((e) => e !== undefined && e.time >= cutoff);
      const keep = at >= 0 ? batch[at] : undefined;
      const next = at >= 0 ? low + at : hi + 1;
      if (next > low) await this.kv.deleteMany(Array.from({ length: next - low }, (_, i) => key(low + i)));
      low = next;
      if (keep) {
        this.oldest[name] = keep.time;
        break;
      }
    }
    if (low !== this.lows[name]) {
      await this.kv.set(`${name}Low`, low);
      this.lows[name] = low;
    }
  }

  /**
   * Write entries of the numbered log `name` and its sequence number, then delete everything
   * older than the newest `keep`, from a stored low-water mark up, so a `keep` lowered
   * between restarts trims the whole excess at once.
   */
  private async appendBounded(
    name: LogName,
    entries: [seq: number, value: unknown][],
    keep: number,
    extra: { key: string; value: unknown }[] = [],
  ): Promise<void> {
    if (entries.length === 0) return;
    const key = LOG_KEYS[name];
    const seq = entries.at(-1)![0];
    await this.kv.setMany([...entries.map(([n, value]) => ({ key: key(n), value })), { key: `${name}Seq`, value: seq }, ...extra]);
    const low = (this.lows[name] ??= ((await this.kv.get(`${name}Low`)) as number | undefined) ?? 1);
    const first = seq - keep + 1;
    if (first <= low) return;
    const stale = Array.from({ length: first - low }, (_, i) => key(low + i));
    for (let i = 0; i < stale.length; i += SPAN) await this.kv.deleteMany(stale.slice(i, i + SPAN));
    await this.kv.set(`${name}Low`, first);
    this.lows[name] = first;
    if (name !== 'event') delete this.oldest[name];
  }

  /**
   * The newest `limit` entries that pass `filter`, oldest first: the history of changes and
   * the token changes, merged in the order they were made (by `seq`, which also orders them by time).
   */
  async auditEntries(limit = 100, filter: (e: AuditEntry) => boolean = () => true): Promise<AuditEntry[]> {
    const [changes, tokens] = await Promise.all(AUDIT_LOGS.map((name) => this.newest(name, limit, filter)));
    const merged: AuditEntry[] = [];
    // Both are oldest first: take from their ends, newest first.
    let i = changes!.length - 1;
    let j = tokens!.length - 1;
    while (merged.length < limit && (i >= 0 || j >= 0)) {
      if (j < 0 || (i >= 0 && changes![i]!.seq! > tokens![j]!.seq!)) merged.push(changes![i--]!);
      else merged.push(tokens![j--]!);
    }
    return merged.reverse();
  }

  /** The newest `limit` entries of one history log that pass `filter`, oldest first. */
  private async newest(name: AuditLog, limit: number, filter: (e: AuditEntry) => boolean): Promise<AuditEntry[]> {
    const seq = ((await this.kv.get(`${name}Seq`)) as number | undefined) ?? 0;
    const out: AuditEntry[] = [];
    for (let hi = seq; hi >= 1 && out.length < limit; hi -= SPAN) {
      const batch = await this.span<AuditEntry>(LOG_KEYS[name], Math.max(1, hi - SPAN + 1), hi);
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

  /** Keep events durably, in one commit (`tx`'s, or one of their own); beyond `keep` the oldest are dropped. */
  async appendEvents(events: { revision: number }[], keep: number, tx?: Tx): Promise<void> {
    await this.write(tx, () =>
      this.appendBounded(
        'event',
        events.map((e) => [e.revision, e]),
        keep,
      ),
    );
  }

  /** The kept events after a revision, oldest first; at most the first `limit` revisions of them. */
  async eventsAfter<T extends { revision: number }>(since: number, keep: number, limit = Infinity): Promise<T[]> {
    const newest = await this.eventRevision();
    const first = Math.max(since + 1, newest - keep + 1);
    const last = Math.min(newest, first + limit - 1);
    const out: T[] = [];
    for (let lo = first; lo <= last; lo += SPAN) out.push(...(await this.span<T>(LOG_KEYS.event, lo, Math.min(lo + SPAN - 1, last))));
    return out;
  }

  async loadTokens<T>(): Promise<T[]> {
    return ((await this.kv.get('tokens')) as T[] | undefined) ?? [];
  }

  async saveTokens<T>(tokens: T[]): Promise<void> {
    await this.write(undefined, () => this.kv.set('tokens', tokens));
  }

  /** The converge journal: the intent of an apply, recorded before its first write. */
  async loadJournal<T>(): Promise<T | undefined> {
    return (await this.kv.get('journal')) as T | undefined;
  }

  /** Record the journal, or clear it (undefined): at once in a commit of its own, or in `tx`'s. */
  async saveJournal<T>(journal: T | undefined, tx?: Tx): Promise<void> {
    await this.write(tx, async () => {
      if (journal === undefined) await this.kv.delete('journal');
      else await this.kv.set('journal', journal);
    });
  }

  async close(): Promise<void> {
    await this.refusals.settle();
    await this.noops.settle();
    await this.writes.run(async () => {});
    await this.kv.disconnect();
  }
}

type Sql = Pick<KeyvSqlite, 'query'>;

/** A row of a collapsed log: one caller, action and target, with a count. */
interface CollapsedRow {
  actor: string;
  /** The transport (and peer) of the last such call. */
  transport: string;
  /** `*` (with target `*`) for the row counting the calls over the caller's rate limit. */
  action: string;
  target: string;
  count: number;
  first: string;
  last: string;
  reason?: string;
  value?: Json;
}

/** A row's identity: one per caller, action and target. */
const rowKey = (r: Pick<CollapsedRow, 'actor' | 'action' | 'target'>) => `${r.actor}\0${r.action}\0${r.target}`;

/**
 * Calls collapsed apart from the history of changes (refused ones, and ones that changed
 * nothing): one row per caller, action and target (count, first and last time, last reason or
 * value); a caller adds at most `newPerMinute` new rows a minute, beyond which only its
 * over-the-limit row counts; `keep` rows in all, the least recently seen dropped first. Calls
 * that arrive while a write is in flight go out together in the next one, so a flood costs one
 * commit per write, not one per call.
 */
export class CollapsedLog<Row extends CollapsedRow> {
  /** The rows in the table, once read: whether a call makes a new row. */
  private known: Set<string> | undefined;
  /** Per caller: the minute being counted and the new rows made in it. */
  private readonly minutes = new Map<string, { start: number; fresh: number }>();
  /** Counts waiting for the next write, by row. */
  private pending = new Map<string, CollapsedRow>();
  private writing: Promise<void> = Promise.resolve();
  private queued: Promise<void> | undefined;
  /** Only the no-op table has a value column (the refusal table predates it). */
  private readonly columns: string[];

  /** `outcome` names the calls in the over-the-limit row's reason: 'refused', 'unchanged'. */
  constructor(
    private readonly sql: Sql,
    private readonly table: string,
    private readonly outcome: string,
  ) {
    this.columns = ['actor', 'action', 'target', 'transport', 'count', 'first', 'last', 'reason', ...(table === NOOPS ? ['value'] : [])];
  }

  /** Count one call; resolves once it is on disk. */
  async record(r: Omit<Row, 'count' | 'first' | 'last'> & { time: string }, limits: RefusalLimits): Promise<void> {
    this.known ??= new Set(((await this.sql.query(`SELECT actor, action, target FROM ${this.table}`)) as CollapsedRow[]).map(rowKey));
    let key = rowKey(r);
    let row = r as Omit<CollapsedRow, 'count' | 'first' | 'last'>;
    if (!this.known.has(key) && !this.pending.has(key) && !this.allowNew(r.actor, r.time, limits.newPerMinute)) {
      row = {
        actor: r.actor,
        transport: r.transport,
        action: OVER_LIMIT,
        target: OVER_LIMIT,
        reason: `more than ${limits.newPerMinute} different ${this.outcome} calls a minute: the rest are counted here only`,
      };
      key = rowKey(row);
    }
    const waiting = this.pending.get(key);
    this.pending.set(key, { ...row, count: (waiting?.count ?? 0) + 1, first: waiting?.first ?? r.time, last: r.time });
    return this.flush(limits.keep);
  }
  /** Whether a caller may make another new row this minute (a fixed window per caller). */
  private allowNew(actor: string, time: string, perMinute: number): boolean {
    const now = Date.parse(time);
    if (this.minutes.size > 10_000) for (const [a, m] of this.minutes) if (now - m.start >= 60_000) this.minutes.delete(a);
    let m = this.minutes.get(actor);
    if (!m || now - m.start >= 60_000) this.minutes.set(actor, (m = { start: now, fresh: 0 }));
    return ++m.fresh <= perMinute;
  }

  /** Write what is pending once the write in flight is done; every call waiting joins that one write. */
  private flush(keep: number): Promise<void> {
    this.queued ??= (async () => {
      await this.writing;
      this.queued = undefined;
      const rows = [...this.pending.values()];
      this.pending = new Map();
      const write = this.write(rows, keep);
      this.writing = write.catch(() => undefined);
      await write;
    })();
    return this.queued;
  }

  /** One statement (one commit) adds the counts; then the least recently seen rows beyond `keep` go. */
  private async write(rows: CollapsedRow[], keep: number): Promise<void> {
    const cols = this.columns;
    const updates = [
      'count = count + excluded.count',
      'last = excluded.last',
      'transport = excluded.transport',
      'reason = excluded.reason',
      ...(cols.includes('value') ? ['value = excluded.value'] : []),
    ];
    // Chunked under SQLite's limit of bound parameters in one statement.
    for (let i = 0; i < rows.length; i += SPAN) {
      const chunk = rows.slice(i, i + SPAN);
      await this.sql.query(
        `INSERT INTO ${this.table} (${cols.join(', ')}) VALUES ${chunk.map(() => `(${cols.map(() => '?').join(', ')})`).join(', ')} ` +
          `ON CONFLICT (actor, action, target) DO UPDATE SET ${updates.join(', ')}`,
        ...chunk.flatMap((r) => [
          r.actor,
          r.action,
          r.target,
          r.transport,
          r.count,
          r.first,
          r.last,
          r.reason ?? null,
          ...(cols.includes('value') ? [r.value === undefined ? null : JSON.stringify(r.value)] : []),
        ]),
      );
    }
    for (const r of rows) this.known!.add(rowKey(r));
    if (this.known!.size <= keep) return;
    const gone = (await this.sql.query(
      `DELETE FROM ${this.table} WHERE rowid IN (SELECT rowid FROM ${this.table} ORDER BY last DESC, rowid DESC LIMIT -1 OFFSET ?) RETURNING actor, action, target`,
      keep,
    )) as CollapsedRow[];
    for (const r of gone) this.known!.delete(rowKey(r));
  }

  /** The `limit` most recently seen rows that pass `filter`, least recent first. */
  async list(limit: number, filter: (r: Row) => boolean): Promise<Row[]> {
    await this.writing;
    const out: Row[] = [];
    for (let offset = 0; out.length < limit; offset += SPAN) {
      const page = (await this.sql.query(
        `SELECT ${this.columns.join(', ')} FROM ${this.table} ORDER BY last DESC, rowid DESC LIMIT ? OFFSET ?`,
        SPAN,
        offset,
      )) as (CollapsedRow & { reason: string | null; value?: string | null })[];
      for (const { reason, value, ...r } of page) {
        const row = { ...r, ...(reason !== null ? { reason } : {}), ...(typeof value === 'string' ? { value: JSON.parse(value) as unknown } : {}) } as Row;
        if (out.length < limit && filter(row)) out.push(row);
      }
      if (page.length < SPAN) break;
    }
    return out.reverse();
  }

  /** Wait for the writes under way (before the store closes). */
  async settle(): Promise<void> {
    while (this.queued) await this.queued.catch(() => undefined);
    await this.writing;
  }
}
