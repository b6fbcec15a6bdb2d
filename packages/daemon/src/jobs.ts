import { randomBytes } from 'node:crypto';
import { ErrorCodes, JOB_WAIT_MAX_MS, type Job, RpcError } from '@scoped/protocol';
import { type Progress, toRpcError } from './engine.js';
import type { Logger } from './log.js';

/** How many jobs may be queued or running at once (config maxJobsPerPrincipal, maxJobs), and changes a token may start a minute (maxChangesPerMinute). */
export interface JobLimits {
  perPrincipal: number;
  total: number;
  changesPerMinute?: number;
}

const MINUTE = 60_000;

/** A place for one job, taken before its plan is prepared: start the job in it, or release it. */
export interface JobSlot {
  start(action: string, target: string, work: (ctl: Progress) => Promise<unknown>): Job;
  release(): void;
}

/** A job, its canceller and owner, and the job.get calls waiting for its end. */
type Entry = { job: Job; abort: AbortController; owner: string; waiters: Set<() => void> };

/**
 * Jobs in memory (the newest `keep`); every state change and step is published as an event
 * (`job.progress`, `job.done`, `job.failed`, `job.cancelled`).
 *
 * Jobs wait for the engine one after another, so a flood of them would make every later call
 * wait: each principal may have `perPrincipal` queued or running, and all together `total`,
 * of which the last `perPrincipal` are kept for admins so that tokens cannot take them all.
 * An admin is bounded by the total only.
 */
export class JobManager {
  private readonly jobs = new Map<string, Entry>();
  /** Queued and running jobs (and slots taken for jobs being prepared), per owner. */
  private readonly active = new Map<string, number>();
  private activeTotal = 0;
  /** When each non-admin owner started its changes of the last minute, oldest first. */
  private readonly recent = new Map<string, number[]>();

  constructor(
    private readonly publish: (topic: string, data: unknown) => void,
    private readonly log: Logger,
    private readonly limits: JobLimits = { perPrincipal: Infinity, total: Infinity },
    private readonly keep = 1_000,
  ) {}

  /**
   * Take a place for a job of `owner` now, before its plan is prepared, so a flood is refused
   * before any work is done; busy (-32008) when the owner or the daemon has too many.
   */
  reserve(owner: string, admin: boolean): JobSlot {
    const { perPrincipal, total } = this.limits;
    const mine = this.active.get(owner) ?? 0;
    if (!admin && mine >= perPrincipal) {
      throw new RpcError(
        ErrorCodes.Busy,
        `Too many jobs: this token has ${mine} queued or running, at most ${perPrincipal} (maxJobsPerPrincipal); wait for one to end (cpcmd job:get ID --wait) and try again`,
      );
    }
    const forTokens = total - Math.min(perPrincipal, Math.floor(total / 2));
    if (this.activeTotal >= (admin ? total : forTokens)) {
      const share = admin ? `at most ${total} in all (maxJobs)` : `tokens may fill ${forTokens} of the ${total} places (maxJobs; the rest are kept for admins)`;
      throw new RpcError(ErrorCodes.Busy, `Too many jobs: ${this.activeTotal} are queued or running, and ${share}; try again shortly`);
    }
    if (!admin) this.count(owner);
    this.active.set(owner, mine + 1);
    this.activeTotal++;
    let held = true;
    const release = () => {
      if (!held) return;
      held = false;
      this.activeTotal--;
      const left = (this.active.get(owner) ?? 1) - 1;
      if (left > 0) this.active.set(owner, left);
      else this.active.delete(owner);
    };
    return {
      start: (action, target, work) => this.start(action, target, owner, work, release),
      release,
    };
  }

  /**
   * Count a change of a token, or refuse it busy when the token started `changesPerMinute` in
   * the last minute (a sliding window). Every change counts, applied or not, dry runs too: each
   * takes the engine's lock, and each applied one is an entry of the bounded history, which a
   * token must not be able to flush (at 60 a minute, 10,000 entries take nearly three hours).
   */
  private count(owner: string): void {
    const limit = this.limits.changesPerMinute ?? Infinity;
    if (limit === Infinity) return;
    const now = Date.now();
    const times = this.recent.get(owner) ?? [];
    let stale = 0;
    while (stale < times.length && times[stale]! <= now - MINUTE) stale++;
    if (stale > 0) times.splice(0, stale);
    if (times.length >= limit) {
      const wait = Math.max(1, Math.ceil((times[0]! + MINUTE - now) / 1_000));
      throw new RpcError(
        ErrorCodes.Busy,
        `Too many changes: this token made ${times.length} in the last minute, at most ${limit} a minute (maxChangesPerMinute; an admin may raise it); try again in ${wait} s`,
      );
    }
    times.push(now);
    this.recent.set(owner, times);
  }

  /** `owner` identifies who started it (a token id, or the admin's name): only they and admins may see or cancel it. */
  private start(action: string, target: string, owner: string, work: (ctl: Progress) => Promise<unknown>, release: () => void): Job {
    const now = new Date().toISOString();
    const job: Job = {
      id: `job-${randomBytes(6).toString('hex')}`,
      action,
      target,
      state: 'queued',
      done: 0,
      total: 0,
      step: null,
      createdAt: now,
      updatedAt: now,
    };
    const abort = new AbortController();
    const entry: Entry = { job, abort, owner, waiters: new Set() };
    this.jobs.set(job.id, entry);
    // Beyond `keep`, the oldest finished jobs are forgotten; queued and running ones never are.
    for (const [id, e] of this.jobs) {
      if (this.jobs.size <= this.keep) break;
      if (e.job.state !== 'queued' && e.job.state !== 'running') this.jobs.delete(id);
    }
    const touch = (changes: Partial<Job>) => Object.assign(job, changes, { updatedAt: new Date().toISOString() });
    /** Answer everyone waiting for the job to end (job.get with waitMs). */
    const wakeWaiters = () => {
      for (const wake of entry.waiters) wake();
      entry.waiters.clear();
    };
    const ctl: Progress = {
      signal: abort.signal,
      started: () => {
        if (job.state === 'queued') touch({ state: 'running' });
      },
      begin: (total) => void touch({ total }),
      step: (summary, done, total) => {
        touch({ step: summary, done, total });
        this.publish('job.progress', { job: job.id, owner, done, total, step: summary });
      },
    };
    // Queued until the work holds the engine's lock (ctl.started); another converge may run first.
    queueMicrotask(() => {
      work(ctl).then(
        // Done when the work finished, even if a cancel came after its last change: it was applied and stands.
        (result) => {
          release();
          touch({ state: 'done', result: result as Job['result'] });
          this.publish('job.done', { job: job.id, action, target, owner });
          wakeWaiters();
        },
        // Failed or cancelled: either way the engine rolled back what the job had applied.
        (err: unknown) => {
          release();
          const e = toRpcError(err, this.log, { job: job.id, action, target });
          touch({ state: abort.signal.aborted ? 'cancelled' : 'failed', error: e.toJSON() as Job['error'] });
          this.publish(`job.${job.state}`, { job: job.id, action, target, owner, error: e.message });
          wakeWaiters();
        },
      );
    });
    return { ...job };
  }

  /** `viewer`: the owner key of the caller, or undefined for an admin (who sees every job). Someone else's job is not found. */
  private entry(id: string, viewer: string | undefined) {
    const entry = this.jobs.get(id);
    if (!entry || (viewer !== undefined && entry.owner !== viewer))
      throw new RpcError(ErrorCodes.NotFound, `no job ${id} (jobs are kept in memory until the daemon restarts)`);
    return entry;
  }

  get(id: string, viewer?: string): Job {
    return { ...this.entry(id, viewer).job };
  }

  /**
   * The job once it has ended, or as it stands after `ms` (at most JOB_WAIT_MAX_MS) if it is
   * still queued or running: a caller waiting for a job learns of its end the moment it comes,
   * in one call, instead of polling. Seen by the same rule as get.
   */
  async wait(id: string, ms: number, viewer?: string): Promise<Job> {
    const entry = this.entry(id, viewer);
    if (entry.job.state === 'queued' || entry.job.state === 'running') {
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          entry.waiters.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, Math.min(Math.max(ms, 0), JOB_WAIT_MAX_MS));
        entry.waiters.add(wake);
      });
    }
    return { ...entry.job };
  }

  /**
   * Ask a job to stop; a running converge rolls back what it did. A job that already ended is
   * left as it is and answers conflict, saying how it ended (the job is in the error's data).
   */
  cancel(id: string, viewer?: string): Job {
    const entry = this.entry(id, viewer);
    const job = { ...entry.job };
    if (job.state === 'queued' || job.state === 'running') {
      entry.abort.abort();
      return job;
    }
    throw new RpcError(ErrorCodes.Conflict, `job ${id} had already ended (${outcome(job)}): there is nothing to cancel; cpcmd job:get ${id} shows it`, { job });
  }
}

/** How an ended job ended, in a few words: done and what it did, failed and why, or cancelled. */
function outcome(job: Job): string {
  if (job.state === 'failed') return `failed: ${job.error?.message ?? 'no reason kept'}`;
  if (job.state === 'cancelled') return 'cancelled before it finished; what it had applied was rolled back';
  const r = job.result as { status?: unknown; revision?: unknown } | undefined;
  if (r?.status === 'unchanged') return 'done: nothing needed changing';
  return `done: ${job.done}/${job.total} changes applied${typeof r?.revision === 'number' ? `, revision ${r.revision}` : ''}`;
}
