import type { Drift, Json } from '@scoped/protocol';
import type { Change, UnitDef } from '@scoped/sdk';
import type { SerializedSnapshot } from '@scoped/system';
import type { Tx } from '../store.js';

/** The engine's settings, from the daemon's config. */
export interface EngineOptions {
  kernelHostname: boolean;
  /** The history of changes keeps this many entries at most (default 10,000)... */
  auditKeep?: number;
  /** ...and none older than this many days (default 0: no age limit). */
  auditMaxAgeDays?: number;
  /** Refused calls keep this many rows (default 1,000)... */
  refusalKeep?: number;
  /** ...and a caller adds at most this many new rows a minute (default 30). */
  refusalNewPerMinute?: number;
  /** Vars put back to their defaults in the store at start-up (scoped --reset-var), before the stored vars are checked. */
  resetVars?: readonly string[];
}

/** Who asked, for the audit trail. */
export interface Actor {
  name: string;
  transport: string;
  /** Whether the caller holds the admin role: only an admin changes an adminOnly var. */
  admin?: boolean;
  /**
   * Whether the caller may learn of, and act on, a change to this target: a token limited to
   * some scopes only those. Absent: every target (admins, unlimited tokens, the daemon itself).
   */
  sees?: (target: string) => boolean;
}

/** A unit's changes, planned. */
export interface Planned {
  unit: UnitDef;
  changes: Change[];
}

/** The intent of an apply, recorded durably before its first write, so a restart can finish or undo it. */
export interface Journal {
  action: string;
  target: string;
  actor: string;
  fromRevision: number;
  toRevision: number;
  units: string[];
  /** The apply's service changes (what journals written before the snapshot held service states have instead). */
  services: Change[];
  snapshot: SerializedSnapshot;
  startedAt: string;
  /** Set at the first recovery attempt, so later attempts go the same way whatever moves the revision meanwhile. */
  direction?: 'finish' | 'undo';
  /** When recovering it first failed, and the last failure: the recovery is stuck. */
  stuckSince?: string;
  error?: string;
}

export interface GetResult {
  name: string;
  value: Json;
  revision: number;
  drift: Drift[];
}

/** A background job's hooks into a mutation: cancel, and a report per change applied. */
export interface Progress {
  signal: AbortSignal;
  /** The mutation holds the engine's lock: no longer queued. */
  started(): void;
  /** The apply starts: this many changes. */
  begin(total: number): void;
  step(summary: string, done: number, total: number): void;
}

/**
 * Events to publish, each a topic and its data. With `alongside`, the writes it makes (the
 * change the events announce) go to disk in the same commit as the events, and the sink fails
 * when that commit does.
 */
export type EventSink = (events: { topic: string; data: unknown }[], alongside?: (tx: Tx) => Promise<void>) => void | Promise<void>;
