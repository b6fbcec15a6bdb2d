/**
 * cpcmd job:cancel on a job that already ended says so, with how it ended, and exits 8
 * (conflict) instead of 0 "cancel requested"; the job and what it did stay. Real cpcmd, a
 * real scoped. Each test gets its own daemon on its own root.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { expectExit, expectRefused, expectRpcError } from '../helpers/expect.js';
import { type Scoped, scoped, treeDigest } from '../helpers/scoped.js';

/** A root whose hostname is not yet what the tests set. */
const start = () => scoped({ listen: 'none', files: { 'etc/hostname': 'old.example.org\n', 'etc/hosts': '127.0.0.1\tlocalhost\n' } });

/** Start a set with --no-wait and wait for its job to end; the job id. */
async function finishedJob(d: Scoped, hostname: string): Promise<string> {
  const started = await d.cpcmd(['scope:set', 'net.hostname', hostname, '--no-wait']);
  expectExit(started, 'ok');
  const id = started.stdout.trim();
  expectExit(await d.cpcmd(['job:get', id, '--wait']), 'ok');
  return id;
}

describe('job:cancel on a job that already ended', { timeout: 60_000 }, () => {
  it('says it was done, what it did, and exits 8; the job and its change stand', async () => {
    await using d = await start();
    const id = await finishedJob(d, 'done.example.org');
    const before = await treeDigest(path.join(d.root, 'etc'));
    const r = await d.cpcmd(['job:cancel', id]);
    expectRefused(r, 'conflict');
    expect(r.stderr).toMatch(
      new RegExp(
        `^cpcmd: job ${id} had already ended \\(done: (\\d+)/\\1 changes applied, revision \\d+\\): there is nothing to cancel; cpcmd job:get ${id} shows it\\n$`,
      ),
    );
    expect(JSON.parse((await d.cpcmd(['job:get', id, '-o', 'json'])).stdout)).toMatchObject({ state: 'done' });
    expect(await treeDigest(path.join(d.root, 'etc'))).toEqual(before);
    expect((await d.cpcmd(['scope:get', 'net.hostname'])).stdout).toBe('done.example.org\n');
  });

  it('says a job that changed nothing changed nothing', async () => {
    await using d = await start();
    await finishedJob(d, 'same.example.org');
    const id = await finishedJob(d, 'same.example.org'); // the hostname is already this: nothing to change
    const r = await d.cpcmd(['job:cancel', id]);
    expectRefused(r, 'conflict', /had already ended \(done: nothing needed changing\): there is nothing to cancel/);
  });

  it('answers a JSON-RPC caller conflict (-32004) with the job in data', async () => {
    await using d = await start();
    const id = await finishedJob(d, 'rpc.example.org');
    const e = expectRpcError(await d.call('job.cancel', { id }), 'Conflict');
    expect(e).toMatchObject({ message: expect.stringContaining(`job ${id} had already ended (done`), data: { job: { id, state: 'done' } } });
  });
});
