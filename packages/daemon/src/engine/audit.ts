import type { AuditEntry as ListedEntry, Json } from '@scoped/protocol';
import type { AuditEntry, Noop, Refusal, Store, Tx } from '../store.js';
import type { Actor, EngineOptions } from './types.js';
import { asJson } from './values.js';

/** Audit entries keep bounded text: a hostile 1 MiB name must not become a 1 MiB row. */
export const clip = (text: string, max: number) => (text.length > max ? `${text.slice(0, max)}…` : text);

/** The most of a value's JSON an audit entry keeps; beyond it, a marker with the size. */
const AUDIT_VALUE_BYTES = 1024;
/** Within a larger object, the most of one member's JSON kept as itself. */
const AUDIT_MEMBER_BYTES = 256;

const jsonBytes = (value: unknown) => Buffer.byteLength(JSON.stringify(value) ?? '');
const notKept = (bytes: number) => `(not kept: ${bytes.toLocaleString('en-US')} bytes of JSON)`;

/**
 * A value as the audit and events keep it: itself when its JSON is at most 1 KiB; else an
 * object keeps its small members and each large one becomes a marker with its size (so a smart
 * host's host stays readable), and anything still too large becomes one marker. Every set
 * writes the old and the new value into the history and the new one into a scope.changed
 * event, and audit.list and every replay read them back: a 64 KiB value must not cost 128 KiB
 * of disk per set, nor a subscriber's replay 64 KiB per event.
 */
export function auditValue(value: unknown): Json {
  const bytes = jsonBytes(value);
  if (bytes <= AUDIT_VALUE_BYTES) return asJson(value);
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const members = Object.entries(value).map(([k, v]) => [k, jsonBytes(v) <= AUDIT_MEMBER_BYTES ? v : notKept(jsonBytes(v))] as const);
    const small = Object.fromEntries(members);
    if (jsonBytes(small) <= AUDIT_VALUE_BYTES) return asJson(small);
  }
  return notKept(bytes);
}

/** Whether a stored entry is one of the history of changes as audit.list lists it (read back, so numbered). */
const listed = (e: AuditEntry): e is ListedEntry => e.seq !== undefined && e.outcome !== 'refused' && e.outcome !== 'unchanged';

/** One call to record: its values already redacted, its reason built without secrets. */
export interface AuditRecord {
  actor: Actor;
  action: string;
  target: string;
  old?: unknown;
  new?: unknown;
  plan?: string[];
  outcome: AuditEntry['outcome'];
  reason?: string;
  /** The revision the entry records, when it is not the state's as it stands (a change stored in the same commit). */
  revision?: number;
}

/** The audit trail: the history of changes, the refused calls and the calls that changed nothing. */
export class AuditTrail {
  constructor(
    private readonly store: Store,
    private readonly options: EngineOptions,
    /** The revision an entry records: the state's, as it stands when the entry is written. */
    private readonly revision: () => number,
  ) {}

  /**
   * Record one audit entry durably; its values are already redacted and its reason built
   * without secrets. A refusal goes to the refusal store and a call that changed nothing to
   * the no-op store, each collapsed per caller, action and target and limited per caller,
   * never into the history of changes, which they could otherwise push out of its bounded log.
   * Values are kept small (auditValue). An entry of the history goes into `tx`'s commit when given one.
   */
  record(e: AuditRecord, tx?: Tx): Promise<void> {
    const limits = { keep: this.options.refusalKeep ?? 1_000, newPerMinute: this.options.refusalNewPerMinute ?? 30 };
    const who = {
      time: new Date().toISOString(),
      actor: clip(e.actor.name, 200),
      transport: clip(e.actor.transport, 200),
      action: clip(e.action, 100),
      target: clip(e.target, 200),
    };
    // Refusals and no-ops are written on their own, never inside another commit (whose lock they would wait for).
    if (tx && (e.outcome === 'refused' || e.outcome === 'unchanged')) throw new Error(`an audit entry of a call ${e.outcome} cannot go into a transaction`);
    if (e.outcome === 'refused') return this.store.refusals.record({ ...who, ...(e.reason ? { reason: clip(e.reason, 300) } : {}) }, limits);
    if (e.outcome === 'unchanged') return this.store.noops.record({ ...who, ...(e.new !== undefined ? { value: auditValue(e.new) } : {}) }, limits);
    return this.store.appendAudit(
      {
        time: who.time,
        actor: e.actor.name,
        transport: e.actor.transport,
        action: e.action,
        target: who.target,
        ...(e.old !== undefined ? { old: auditValue(e.old) } : {}),
        ...(e.new !== undefined ? { new: auditValue(e.new) } : {}),
        plan: (e.plan ?? []).map((p) => clip(p, 300)),
        outcome: e.outcome,
        ...(e.reason ? { reason: clip(e.reason, 1_000) } : {}),
        revision: e.revision ?? this.revision(),
      },
      { keep: this.options.auditKeep ?? 10_000, maxAgeDays: this.options.auditMaxAgeDays ?? 0 },
      // Token changes are kept in a log of their own: no token holder's changes can push them out.
      e.action.startsWith('token.'),
      tx,
    );
  }

  /** The history of changes (never refusals or no-ops, even from trails written before they had stores of their own). */
  async entries(limit: number, filter: (e: ListedEntry) => boolean): Promise<ListedEntry[]> {
    return (await this.store.auditEntries(limit, (e) => listed(e) && filter(e))).filter(listed);
  }

  /** The refused calls, one row per caller, action and target, with counts. */
  refusals(limit: number, filter: (r: Refusal) => boolean): Promise<Refusal[]> {
    return this.store.refusals.list(limit, filter);
  }

  /** The calls that changed nothing, one row per caller, action and target, with counts and the last value. */
  noops(limit: number, filter: (r: Noop) => boolean): Promise<Noop[]> {
    return this.store.noops.list(limit, filter);
  }
}
