import type { Client } from '@scoped/client/light';
import type { ApplyResult, Job } from '@scoped/protocol';
import { ErrorCodes, RpcError } from '@scoped/protocol/errors';
import { escapeControls } from './terminal.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const SHOW_AFTER_MS = 300;

/** Shows a job's progress on stderr: a bar redrawn in place on a terminal, one line per step otherwise. */
function progressView(stream: NodeJS.WriteStream) {
  let lastStep = '';
  return {
    update(job: Job) {
      if (job.total === 0) return;
      if (stream.isTTY) {
        const width = 24;
        const filled = Math.round((job.done / job.total) * width);
        const line = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${job.done}/${job.total} ${escapeControls(job.step ?? '')}`;
        stream.write(`\r${line.slice(0, (stream.columns || 80) - 1).padEnd((stream.columns || 80) - 1)}`);
      } else if (job.step && job.step !== lastStep) {
        stream.write(`${job.done}/${job.total} ${escapeControls(job.step)}\n`);
      }
      lastStep = job.step ?? lastStep;
    },
    end() {
      if (stream.isTTY && lastStep) stream.write('\n');
    },
  };
}

/** How long each job.get waits once progress shows: the bar is redrawn about this often. */
const REDRAW_MS = 100;

const ended = (job: Job) => job.state === 'done' || job.state === 'failed' || job.state === 'cancelled';

/**
 * Wait for a job to end with job.get's waitMs, which the daemon answers the moment the job
 * ends: no poll interval is added to the time a change takes. If it runs past about 300 ms,
 * its progress is shown, redrawn about every 100 ms. Resolves with the job's result; rejects
 * with the job's error as an RpcError, so exit codes are the same as for a call that did not
 * go through a job. A daemon that does not know waitMs is polled instead.
 */
export async function waitForJob<T = ApplyResult>(client: Client, id: string, stream: NodeJS.WriteStream = process.stderr): Promise<T> {
  const started = Date.now();
  const view = progressView(stream);
  let showing = false;
  let longPoll = true;
  let delay = 5;
  for (;;) {
    const waitMs = Math.max(showing ? REDRAW_MS : SHOW_AFTER_MS - (Date.now() - started), 1);
    let job: Job;
    if (longPoll) {
      try {
        job = await client.call('job.get', { id, waitMs });
      } catch (err) {
        if (!(err instanceof RpcError && err.code === ErrorCodes.InvalidParams && /waitMs/.test(err.message))) throw err;
        longPoll = false;
        continue;
      }
    } else {
      job = await client.call('job.get', { id });
    }
    if (!showing && Date.now() - started >= SHOW_AFTER_MS) showing = true;
    if (showing) view.update(job);
    if (ended(job)) {
      if (showing) view.end();
      if (job.state === 'done') return job.result as T;
      const e = job.error ?? { code: -32005, message: `job ${id} was cancelled` };
      throw new RpcError(e.code as never, e.message, e.data);
    }
    if (!longPoll) {
      await sleep(delay);
      delay = Math.min(delay * 2, REDRAW_MS);
    }
  }
}
