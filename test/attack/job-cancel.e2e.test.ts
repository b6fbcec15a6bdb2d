/**
 * Attack (second pass): an operator token without scope limits sees every job (job.* events,
 * job.get) and used job.cancel on an admin's queued jobs, undoing changes of an admin-only
 * var it may not make itself. Seeing a job is not owning it: only the token that started a
 * job, and admins, may cancel it. Real scoped on a sandbox root, real HTTP.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectRpcError } from '../helpers/expect.js';
import { type Scoped, httpPost, scoped, tcpCall, waitFor } from '../helpers/scoped.js';

describe("job.cancel by someone other than the job's owner", { timeout: 60_000 }, () => {
  let d: Scoped;
  let operator: string;
  let other: string;

  beforeAll(async () => {
    d = await scoped();
    operator = (await d.ok<{ token: string }>('token.create', { role: 'operator', name: 'ops' })).token;
    other = (await d.ok<{ token: string }>('token.create', { role: 'operator', name: 'ops-2' })).token;
  });
  afterAll(() => d?.close(), 60_000);

  it("an operator cannot cancel an admin's jobs, queued or done, though it may see them; the admin's changes stand", async () => {
    // The admin queues six changes in one batch over the unix socket.
    const batch = Array.from({ length: 6 }, (_, i) => ({
      jsonrpc: '2.0',
      id: i,
      method: 'scope.set',
      params: { name: 'net.hostname', value: `admin-${i}.example.test`, async: true },
    }));
    const queued = JSON.parse((await httpPost({ socket: d.socket }, JSON.stringify(batch))).text) as { result: { job: string } }[];
    const ids = queued.map((a) => a.result.job);
    for (const id of ids) {
      const seen = await tcpCall(d.port!, operator, 'job.get', { id });
      expect(seen, 'an unlimited operator may read the job').toMatchObject({ result: { id } });
      const cancel = await tcpCall(d.port!, operator, 'job.cancel', { id });
      expectRpcError(cancel, 'Forbidden', /started by another caller/);
    }
    for (const id of ids)
      await waitFor(`job ${id} done`, async () => ((await d.ok<{ state: string }>('job.get', { id })).state === 'done' ? true : undefined), 20_000);
    expect(await d.ok('scope.get', { name: 'net.hostname' })).toMatchObject({ value: 'admin-5.example.test' });
  });

  it("an operator cannot cancel another operator's job, and can cancel its own", async () => {
    const mine = (await tcpCall(d.port!, operator, 'scope.set', { name: 'net.hostname', value: 'ops.example.test', async: true })) as {
      result: { job: string };
    };
    const theirs = await tcpCall(d.port!, other, 'job.cancel', { id: mine.result.job });
    expect(theirs).toBeRpcError('Forbidden');

    const own = await tcpCall(d.port!, operator, 'job.cancel', { id: mine.result.job });
    expect(own).toMatchObject({ result: { id: mine.result.job } });
  });
});
