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
    const kv = new Keyv({ store: new KeyvSqlite({ uri, table: 'scoped', busyTimeout: 5_000 }), namespace: 'scoped' });
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

  async appendAudit(entry: AuditEntry): Promise<void> {
    const seq = (((await this.kv.get('auditSeq')) as number | undefined) ?? 0) + 1;
    await this.kv.set(`audit:${String(seq).padStart(12, '0')}`, entry);
    await this.kv.set('auditSeq', seq);
  }

  async auditEntries(limit = 100): Promise<AuditEntry[]> {
    const seq = ((await this.kv.get('auditSeq')) as number | undefined) ?? 0;
    const keys = [];
    for (let i = Math.max(1, seq - limit + 1); i <= seq; i++) keys.push(`audit:${String(i).padStart(12, '0')}`);
    return ((await this.kv.getMany(keys)) as (AuditEntry | undefined)[]).filter((e): e is AuditEntry => e !== undefined);
  }

  async close(): Promise<void> {
    await this.kv.disconnect();
  }
}
