import { ErrorCodes, type PlanChange, RpcError } from '@scoped/protocol';
import { type Change, type UnitDef, changeTarget } from '@scoped/sdk';
import { type HostSystem, crashpoint, serializeSnapshot } from '@scoped/system';
import { type Logger, stackFrames, thrownSummary } from '../log.js';
import type { Store } from '../store.js';
import type { EngineCore } from './core.js';
import type { JournalRecovery } from './journal.js';
import type { Reads } from './reads.js';
import type { Secrets } from './secrets.js';
import type { Journal, Planned, Progress } from './types.js';
import { withTimeout } from './watchdog.js';

/**
 * Carrying out a plan: snapshot what it touches, record the intent (the journal), apply unit
 * by unit under each unit's time limit, verify that nothing is left to do, and on any failure
 * put the snapshot back.
 */
export class Applier {
  private readonly system: HostSystem;
  private readonly store: Store;
  private readonly log: Logger;

  constructor(
    core: EngineCore,
    private readonly secrets: Secrets,
    private readonly reads: Reads,
    private readonly journal: JournalRecovery,
  ) {
    this.system = core.system;
    this.store = core.store;
    this.log = core.log;
  }

  private describe(c: Change): string {
    return this.secrets.describe(c);
  }

  private secretChange(c: Change): boolean {
    return this.secrets.secretChange(c);
  }

  private plan(units: readonly UnitDef[], vars: Record<string, unknown>): Promise<Planned[]> {
    return this.reads.plan(units, vars);
  }

  private show(planned: readonly Planned[]): PlanChange[] {
    return planned.flatMap(({ unit, changes }) => changes.map((c) => ({ unit: unit.name, kind: c.kind, target: changeTarget(c), summary: this.describe(c) })));
  }

  /** Snapshot, apply, verify; on any failure restore the snapshot and rethrow. */
  async applyPlanned(
    planned: readonly Planned[],
    vars: Record<string, unknown>,
    intent: Pick<Journal, 'action' | 'target' | 'actor' | 'fromRevision' | 'toRevision'>,
    progress?: Progress,
  ): Promise<void> {
    const all = planned.flatMap((p) => p.changes);
    let done = 0;
    // Set when an apply overran its time limit: it stops at its next change instead of writing over the rollback.
    let overran = false;
    // The change being carried out, so a failure is reported as that change's.
    let inFlight: Change | undefined = all[0];
    const afterEach = (c: Change) => {
      done++;
      inFlight = all[done];
      if (overran) throw new RpcError(ErrorCodes.ConvergeFailed, 'stopped: the apply overran its time limit');
      progress?.step(this.describe(c), done, all.length);
      if (progress?.signal.aborted) throw new RpcError(ErrorCodes.ConvergeFailed, `cancelled after ${done} of ${all.length} changes`);
    };
    progress?.begin(all.length);
    const snapshot = await this.system.snapshot(all);
    await this.store.saveJournal<Journal>({
      ...intent,
      units: planned.map((p) => p.unit.name),
      services: all.filter((c) => c.kind === 'service'),
      snapshot: serializeSnapshot(snapshot),
      startedAt: new Date().toISOString(),
    });
    crashpoint();
    try {
      for (const { unit, changes } of planned) {
        const applying = this.system.apply(changes, afterEach).catch((err: unknown) => {
          throw this.applyFailure(err, inFlight);
        });
        try {
          await withTimeout(applying, unit.timeoutMs ?? 30_000, `unit ${unit.name} did not finish applying in ${unit.timeoutMs ?? 30_000} ms`);
        } catch (err) {
          // Let a change in flight land (for a while) before the snapshot goes back over it.
          overran = true;
          await withTimeout(applying, 10_000, 'the overrunning apply did not stop').catch(() => undefined);
          throw err;
        }
      }
      const left = (
        await this.plan(
          planned.map((p) => p.unit),
          vars,
        )
      ).flatMap((p) => p.changes.filter((c) => c.kind !== 'service').map((c) => `${p.unit.name}: ${this.describe(c)}`));
      if (left.length) throw new Error(`verification found the system still differs: ${left.join('; ')}`);
    } catch (err) {
      try {
        // Files back, then each service undone (what the apply started is stopped, never started again).
        await this.system.restore(snapshot);
        crashpoint();
        await this.store.saveJournal(undefined);
      } catch (restoreErr) {
        // The journal stays, marked stuck: converge (or the next start) tries the rollback again.
        this.log.error('rollback failed', { error: thrownSummary(restoreErr), at: stackFrames(restoreErr) });
        throw await this.journal.rollbackFailed(err, restoreErr, this.show(planned));
      }
      throw err;
    }
  }

  /**
   * A failure while carrying out a change, as the caller and the audit trail get it. A tool's
   * output (postmap, postconf, a file write) may quote what it was given, so for a change that
   * holds a secret only what failed and how is told, built from what the engine knows.
   */
  private applyFailure(err: unknown, change: Change | undefined): unknown {
    if (err instanceof RpcError || !change || !this.secretChange(change)) return err;
    return new Error(
      `${this.describe(change)} failed: ${thrownSummary(err)} (its output is withheld because the change holds a secret; run that step by hand to see it)`,
    );
  }
}
