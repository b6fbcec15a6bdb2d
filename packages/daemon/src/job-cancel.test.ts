import { ErrorCodes, RpcError } from '@scoped/protocol';
import { describe, expect, it } from 'vitest';
import { JobManager } from './jobs.js';
import { jsonLogger } from './log.js';

const silent = jsonLogger({ level: 'silent' });
const settle = () => new Promise((r) => setTimeout(r, 0));

/** Cancel, expecting a refusal; the refusal. */
function refusedCancel(jobs: JobManager, id: string): RpcError {
  try {
    jobs.cancel(id);
  } catch (err) {
    expect(err).toBeInstanceOf(RpcError);
    return err as RpcError;
  }
  throw new Error(`cancelling ${id} was not refused`);
}

describe('job.cancel of a job that already ended', () => {
  it('answers conflict saying it was done and what it did, with the job in data; the job stays done', async () => {
    const jobs = new JobManager(() => {}, silent);
    const job = jobs.reserve('admin', true).start('scope.set', 'net.hostname', async (ctl) => {
      ctl.begin(2);
      ctl.step('one', 1, 2);
      ctl.step('two', 2, 2);
      return { status: 'applied', plan: [], revision: 7 };
    });
    await settle();
    const e = refusedCancel(jobs, job.id);
    expect(e.code).toBe(ErrorCodes.Conflict);
    expect(e.message).toBe(
      `job ${job.id} had already ended (done: 2/2 changes applied, revision 7): there is nothing to cancel; cpcmd job:get ${job.id} shows it`,
    );
    expect(e.data).toMatchObject({ job: { id: job.id, state: 'done' } });
    expect(jobs.get(job.id).state).toBe('done');
  });

  it('says a done job that changed nothing changed nothing', async () => {
    const jobs = new JobManager(() => {}, silent);
    const job = jobs.reserve('admin', true).start('scope.set', 'net.hostname', async () => ({ status: 'unchanged', plan: [], revision: 3 }));
    await settle();
    expect(refusedCancel(jobs, job.id).message).toMatch(/had already ended \(done: nothing needed changing\)/);
  });

  it('says why a failed job failed', async () => {
    const jobs = new JobManager(() => {}, silent);
    const job = jobs.reserve('admin', true).start('scope.set', 'net.hostname', async () => {
      throw new RpcError(ErrorCodes.ConvergeFailed, 'converge failed and was rolled back: postfix exited with 1');
    });
    await settle();
    const e = refusedCancel(jobs, job.id);
    expect(e.code).toBe(ErrorCodes.Conflict);
    expect(e.message).toMatch(/had already ended \(failed: converge failed and was rolled back: postfix exited with 1\)/);
    expect(jobs.get(job.id).state).toBe('failed');
  });

  it('says a job cancelled before was cancelled; a queued or running job is still cancelled', async () => {
    const jobs = new JobManager(() => {}, silent);
    // Work that ends only when it is cancelled, as the engine's does (it rolls back and rejects).
    const untilCancelled = (signal: AbortSignal) =>
      new Promise((_, reject) => {
        const stop = () => reject(new RpcError(ErrorCodes.ConvergeFailed, 'cancelled'));
        if (signal.aborted) stop();
        else signal.addEventListener('abort', stop);
      });
    const job = jobs.reserve('admin', true).start('scope.set', 'net.hostname', (ctl) => untilCancelled(ctl.signal));
    expect(jobs.cancel(job.id).state).toBe('queued');
    await settle();
    expect(jobs.get(job.id).state).toBe('cancelled');
    expect(refusedCancel(jobs, job.id).message).toMatch(/had already ended \(cancelled before it finished; what it had applied was rolled back\)/);
  });
});
