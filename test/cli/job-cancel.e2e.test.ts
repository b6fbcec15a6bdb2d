/**
 * cpcmd job:cancel on a job that already ended says so, with how it ended, and exits 8
 * (conflict) instead of 0 "cancel requested"; the job and what it did stay. Real cpcmd, a
 * real scoped.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon, type RunResult, cleanupAll, cpcmd, hashTree, makeRoot, pidsMentioning } from '../helpers/sandbox.js';

const EXIT = { ok: 0, conflict: 8 } as const;

let d: Daemon;
let root: string;

function expectExit(r: RunResult, code: number): void {
  expect(r.code, `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(code);
}

const cp = (...args: string[]) => cpcmd(args, { socket: d.socket });

/** Start a set with --no-wait and wait for its job to end; the job id. */
async function finishedJob(hostname: string): Promise<string> {
  const started = await cp('scope:set', 'net.hostname', hostname, '--no-wait');
  expectExit(started, EXIT.ok);
  const id = started.stdout.trim();
  expectExit(await cp('job:get', id, '--wait'), EXIT.ok);
  return id;
}

describe('job:cancel on a job that already ended', { timeout: 60_000 }, () => {
  beforeAll(async () => {
    root = await makeRoot();
    await mkdir(path.join(root, 'etc'));
    await writeFile(path.join(root, 'etc/hostname'), 'old.example.org\n');
    await writeFile(path.join(root, 'etc/hosts'), '127.0.0.1\tlocalhost\n');
    d = await Daemon.start(root, { listen: 'none' });
  });

  afterAll(async () => {
    await cleanupAll();
    if (root) expect(pidsMentioning(root)).toEqual([]);
  }, 60_000);

  it('says it was done, what it did, and exits 8; the job and its change stand', async () => {
    const id = await finishedJob('done.example.org');
    const before = await hashTree(path.join(root, 'etc'));
    const r = await cp('job:cancel', id);
    expectExit(r, EXIT.conflict);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(new RegExp(`^cpcmd: job ${id} had already ended \\(done: (\\d+)/\\1 changes applied, revision \\d+\\): there is nothing to cancel; cpcmd job:get ${id} shows it\\n$`));
    expect(JSON.parse((await cp('job:get', id, '-o', 'json')).stdout)).toMatchObject({ state: 'done' });
    expect(await hashTree(path.join(root, 'etc'))).toEqual(before);
    expect((await cp('scope:get', 'net.hostname')).stdout).toBe('done.example.org\n');
  });

  it('says a job that changed nothing changed nothing', async () => {
    const id = await finishedJob('done.example.org');
    const r = await cp('job:cancel', id);
    expectExit(r, EXIT.conflict);
    expect(r.stderr).toMatch(/had already ended \(done: nothing needed changing\): there is nothing to cancel/);
  });

  it('answers a JSON-RPC caller conflict (-32004) with the job in data', async () => {
    const id = await finishedJob('rpc.example.org');
    const a = await d.call('job.cancel', { id });
    expect('error' in a && a.error).toMatchObject({ code: -32004, message: expect.stringContaining(`job ${id} had already ended (done`), data: { job: { id, state: 'done' } } });
  });
});
