import { ErrorCodes } from '@scoped/protocol';
import { describe, expect, it } from 'vitest';
import { JobManager } from './jobs.js';
import { jsonLogger } from './log.js';

const silent = jsonLogger({ level: 'silent' });
const busy = (limit: RegExp) => expect.objectContaining({ code: ErrorCodes.Busy, message: expect.stringMatching(limit) });

/** A job that runs until `finish` is called. */
function pending() {
  let finish!: () => void;
  const done = new Promise<void>((resolve) => (finish = resolve));
  return { work: () => done, finish };
}

describe('JobManager limits', () => {
  it('refuses a principal beyond maxJobsPerPrincipal with busy, and takes it again once a job ends', async () => {
    const jobs = new JobManager(() => {}, silent, { perPrincipal: 2, total: 10 });
    const first = pending();
    jobs.reserve('op', false).start('scope.set', 'net.hostname', first.work);
    jobs.reserve('op', false).start('scope.set', 'net.hostname', pending().work);
    expect(() => jobs.reserve('op', false)).toThrow(busy(/^Too many jobs: this token has 2 queued or running, at most 2 \(maxJobsPerPrincipal\)/));
    // Another principal is not held up by the first.
    jobs.reserve('other', false).release();
    first.finish();
    await new Promise((r) => setTimeout(r, 0));
    expect(() => jobs.reserve('op', false).release()).not.toThrow();
  });

  it('a slot released before its job starts (the plan was refused) is given back once', () => {
    const jobs = new JobManager(() => {}, silent, { perPrincipal: 1, total: 10 });
    const slot = jobs.reserve('op', false);
    slot.release();
    slot.release();
    jobs.reserve('op', false);
    expect(() => jobs.reserve('op', false)).toThrow(busy(/maxJobsPerPrincipal/));
  });

  it('keeps the last maxJobsPerPrincipal places of maxJobs for admins, who are bounded by the total only', () => {
    const jobs = new JobManager(() => {}, silent, { perPrincipal: 2, total: 6 });
    for (const token of ['a', 'b']) for (let i = 0; i < 2; i++) jobs.reserve(token, false);
    expect(() => jobs.reserve('c', false)).toThrow(
      busy(/^Too many jobs: 4 are queued or running, and tokens may fill 4 of the 6 places \(maxJobs; the rest are kept for admins\)/),
    );
    jobs.reserve('admin', true);
    jobs.reserve('admin', true);
    expect(() => jobs.reserve('admin', true)).toThrow(busy(/^Too many jobs: 6 are queued or running, and at most 6 in all \(maxJobs\)/));
  });
});
