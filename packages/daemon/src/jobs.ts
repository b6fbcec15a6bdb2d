import { randomBytes } from 'node:crypto';
import { ErrorCodes, type Job, RpcError } from '@scoped/protocol';
import type { Progress } from './engine.js';
import type { Logger } from './log.js';

/**
 * Jobs in memory (the newest `keep`); every state change and step is published as an event
 * (`job.progress`, `job.done`, `job.failed`, `job.cancelled`).
 */
export class JobManager {
  private readonly jobs = new Map<string, { job: Job; abort: AbortController; owner: string }>();

  constructor(
    private readonly publish: (topic: string, data: unknown) => void,
    private readonly log: Logger,
    private readonly keep = 1_000,
  ) {}

  /** `owner` identifies who started it (a token id, or the admin's name): only they and admins may see or cancel it. */
  start(action: string, target: string, owner: string, work: (ctl: Progress) => Promise<unknown>): Job {
    const now = new Date().toISOString();
    const job: Job = { id: `job-${randomBytes(6).toString('hex')}`, action, target, state: 'queued', done: 0, total: 0, step: null, createdAt: now, updatedAt: now };
    const abort = new AbortController();
    this.jobs.set(job.id, { job, abort, owner });
    // Beyond `keep`, the oldest finished jobs are forgotten; queued and running ones never are.
    for (const [id, e] of this.jobs) {
      if (this.jobs.size <= this.keep) break;
      if (e.job.state !== 'queued' && e.job.state !== 'running') this.jobs.delete(id);
    }
    const touch = (changes: Partial<Job>) => Object.assign(job, changes, { updatedAt: new Date().toISOString() });
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
          touch({ state: 'done', result: result as Job['result'] });
          this.publish('job.done', { job: job.id, action, target, owner });
        },
        // Failed or cancelled: either way the engine rolled back what the job had applied.
        (err: unknown) => {
          if (!(err instanceof RpcError)) this.log.error('job failed', { job: job.id, action, target, error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
          const e = err instanceof RpcError ? err : new RpcError(ErrorCodes.InternalError, 'Internal error (the daemon log has the detail)');
          touch({ state: abort.signal.aborted ? 'cancelled' : 'failed', error: e.toJSON() as Job['error'] });
          this.publish(`job.${job.state}`, { job: job.id, action, target, owner, error: e.message });
        },
      );
    });
    return { ...job };
  }

  /** `viewer`: the owner key of the caller, or undefined for an admin (who sees every job). Someone else's job is not found. */
  private entry(id: string, viewer: string | undefined) {
    const entry = this.jobs.get(id);
    if (!entry || (viewer !== undefined && entry.owner !== viewer)) throw new RpcError(ErrorCodes.NotFound, `no job ${id} (jobs are kept in memory until the daemon restarts)`);
    return entry;
  }

  get(id: string, viewer?: string): Job {
    return { ...this.entry(id, viewer).job };
  }

  /** Ask a job to stop; a running converge rolls back what it did. A finished job is left as it is. */
  cancel(id: string, viewer?: string): Job {
    const entry = this.entry(id, viewer);
    if (entry.job.state === 'queued' || entry.job.state === 'running') entry.abort.abort();
    return { ...entry.job };
  }
}
