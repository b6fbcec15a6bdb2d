/**
 * Crash recovery, and what happens when it cannot finish. An apply records its intent (the
 * journal) before its first write; a restart finishes it (its vars were committed) or undoes it
 * (they were not), and a failed rollback leaves the same journal behind. A recovery that cannot
 * finish never keeps scoped down: scoped serves reads, reports it in daemon.status and
 * scope.check, refuses other changes, and `cpcmd converge` tries it again.
 */
import { ErrorCodes, RpcError, type RecoveryStatus } from '@scoped/protocol';
import { type HostSystem, parseSnapshot } from '@scoped/system';
import { type Logger, stackFrames, thrownSummary } from '../log.js';
import { clip } from './audit.js';
import type { Actor, Journal } from './types.js';

/** What the recovery needs of the engine. */
export interface RecoveryHost {
  store: { loadJournal<T>(): Promise<T | undefined>; saveJournal<T>(journal: T | undefined): Promise<void> };
  system: Pick<HostSystem, 'restore'>;
  log: Logger;
  audit(e: { actor: Actor; action: string; target: string; outcome: 'applied' | 'rolled-back'; reason: string }): Promise<void>;
  /** Converge the journal's units to the stored vars; throws when that fails. */
  finish(j: Journal): Promise<void>;
  /** The events of a finished converge that the interrupted one did not get to store. */
  announce(j: Journal): Promise<void>;
}

const HINT =
  'fix what the error names (a service that cannot start or stop, a file that cannot be written), then run cpcmd converge to finish it; ' +
  'until then scoped answers reads and refuses other changes';

const OTHERS_HINT =
  'An admin, or a token for that scope, finishes it with cpcmd converge; until then scoped answers reads and refuses other changes (cpcmd daemon:status shows it)';

/** A recovery as a caller limited to other scopes may see it: that one is stuck and what to do, not whose change or why. */
export function hiddenStatus(r: RecoveryStatus): RecoveryStatus {
  const { error: _error, detail: _detail, ...rest } = r;
  return { ...rest, action: 'a change', target: 'another scope', actor: 'another caller', hint: OTHERS_HINT };
}

/** A rollback that did not finish: the change failed, and undoing it failed too. */
export class RollbackIncomplete extends RpcError {
  constructor(reason: string, rollback: string, plan: unknown) {
    super(
      ErrorCodes.ConvergeFailed,
      `converge failed: ${reason}; rolling it back did not finish either: ${rollback}. ${HINT} (cpcmd daemon:status shows what is stuck)`,
      { plan },
    );
  }
}

export class JournalRecovery {
  /** The unfinished recovery, while there is one. */
  private pending: Journal | undefined;
  /** The last recovery this process finished. */
  private finished: RecoveryStatus | undefined;

  constructor(private readonly host: RecoveryHost) {}

  /**
   * At start-up, before anything is served: finish or undo an interrupted apply. When that
   * fails the journal stays, marked stuck, and scoped starts anyway.
   */
  async atStart(committed: (j: Journal) => boolean): Promise<void> {
    const j = await this.host.store.loadJournal<Journal>();
    if (!j) return;
    try {
      await this.run(j, committed, { name: 'scoped (recovery)', transport: 'startup' }, 'at restart');
    } catch (err) {
      await this.stuck(j, err);
    }
  }

  /**
   * Before a mutation while a recovery is stuck: a converge tries the recovery again (and goes
   * on when it finishes); anything else is refused, naming the way out.
   */
  async gate(action: string, actor: Actor): Promise<void> {
    const j = this.pending;
    if (!j) return;
    // A caller limited to other scopes learns that a recovery is stuck and who can finish it, not whose change, which or why, and cannot run it.
    if (actor.sees && !actor.sees(j.target)) {
      throw new RpcError(
        ErrorCodes.ConvergeFailed,
        `refused: the recovery of a change to another scope has not finished since ${j.stuckSince}. ${OTHERS_HINT}`,
        { recovery: hiddenStatus(this.status()!) },
      );
    }
    if (action !== 'unit.converge') {
      throw new RpcError(
        ErrorCodes.ConvergeFailed,
        `refused: the recovery of ${j.action} ${j.target} (started ${j.startedAt}) has not finished since ${j.stuckSince}: ${j.error}. ${HINT}`,
        { recovery: this.status() },
      );
    }
    try {
      await this.run(j, () => j.direction === 'finish', actor, `by ${actor.name}'s converge`);
    } catch (err) {
      await this.stuck(j, err);
      throw new RpcError(ErrorCodes.ConvergeFailed, `the recovery of ${j.action} ${j.target} did not finish: ${this.pending?.error}. ${HINT}`, {
        recovery: this.status(),
      });
    }
  }

  /**
   * An apply failed and so did its rollback: its journal stays, marked stuck, and the error to
   * answer with says so.
   */
  async rollbackFailed(failure: unknown, rollbackErr: unknown, plan: unknown): Promise<RollbackIncomplete> {
    const j = await this.host.store.loadJournal<Journal>().catch(() => undefined);
    if (j) await this.stuck({ ...j, direction: 'undo' }, rollbackErr);
    else this.host.log.error('rollback failed and no journal is left to retry it', { error: thrownSummary(rollbackErr) });
    return new RollbackIncomplete(failure instanceof Error ? failure.message : String(failure), this.pending?.error ?? errorText(rollbackErr), plan);
  }

  /** For daemon.status: the stuck recovery, else the last one finished since scoped started. */
  status(): RecoveryStatus | undefined {
    const j = this.pending;
    if (!j) return this.finished;
    return {
      state: 'stuck',
      action: j.action,
      target: j.target,
      actor: j.actor,
      startedAt: j.startedAt,
      since: j.stuckSince ?? j.startedAt,
      error: j.error ?? 'unknown',
      hint: HINT,
    };
  }

  /** For scope.check: the stuck recovery only. */
  stuckStatus(): RecoveryStatus | undefined {
    return this.pending ? this.status() : undefined;
  }

  /** Finish (committed) or undo the journal's apply; throws when the system could not be brought to either. */
  private async run(j: Journal, committed: (j: Journal) => boolean, actor: Actor, how: string): Promise<void> {
    if (!j.direction) {
      j.direction = committed(j) ? 'finish' : 'undo';
      await this.host.store.saveJournal<Journal>(j);
    }
    const started = `started ${j.startedAt} by ${j.actor}`;
    let outcome: 'applied' | 'rolled-back' = 'rolled-back';
    let reason = `interrupted (${started}); rolled back ${how}`;
    if (j.direction === 'finish') {
      try {
        await this.host.finish(j);
        outcome = 'applied';
        reason = `completed ${how} after an interruption (${started})`;
      } catch (err) {
        // Its vars stay stored; the system goes back whole to before it, and the difference shows as drift.
        this.host.log.error('could not complete an interrupted converge; rolling it back', {
          action: j.action,
          target: j.target,
          error: thrownSummary(err),
          at: stackFrames(err),
        });
        reason = `interrupted (${started}) and could not be completed ${how} (${thrownSummary(err)}); rolled back, so its stored vars differ from the system (cpcmd scope:check shows it, cpcmd converge applies it)`;
      }
    }
    if (outcome === 'rolled-back') await this.host.system.restore(parseSnapshot(j.snapshot, j.services));
    await this.host.audit({
      actor,
      action: j.action,
      target: j.target,
      outcome,
      reason: j.stuckSince ? `${reason}; it was stuck since ${j.stuckSince}` : reason,
    });
    if (outcome === 'applied') await this.host.announce(j);
    await this.host.store.saveJournal(undefined);
    this.pending = undefined;
    const hint =
      j.direction === 'finish' && outcome === 'rolled-back'
        ? 'cpcmd scope:check shows where the system differs from the stored vars; fix the cause and run cpcmd converge, or set the scope again'
        : 'nothing: the system is whole again';
    this.finished = {
      state: 'completed',
      action: j.action,
      target: j.target,
      actor: j.actor,
      startedAt: j.startedAt,
      at: new Date().toISOString(),
      outcome,
      detail: reason,
      hint,
    };
    this.host.log.warn(outcome === 'applied' ? 'completed an interrupted converge' : 'rolled back an interrupted converge', {
      action: j.action,
      target: j.target,
      how,
    });
  }

  /** Record a recovery that failed: in the journal (a restart shows it stuck since the first failure) and here. */
  private async stuck(j: Journal, err: unknown): Promise<void> {
    const marked: Journal = { ...j, stuckSince: j.stuckSince ?? new Date().toISOString(), error: clip(errorText(err), 500) };
    this.pending = marked;
    this.host.log.error('recovery did not finish; scoped serves reads and refuses other changes until cpcmd converge finishes it', {
      action: j.action,
      target: j.target,
      error: thrownSummary(err),
      at: stackFrames(err),
    });
    await this.host.store
      .saveJournal<Journal>(marked)
      .catch((e: unknown) => this.host.log.error('could not mark the journal stuck', { error: thrownSummary(e) }));
  }
}

/**
 * A rollback's error as callers see it. What fails there is a file write (its path and errno)
 * or a service command (its name and complaint), never a tool fed a secret (a rollback writes
 * the snapshot's bytes; it runs no postmap).
 */
function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
