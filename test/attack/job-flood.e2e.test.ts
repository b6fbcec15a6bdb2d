/**
 * Attack (issue 9, item 11): an operator limited to net.* floods the daemon with async jobs
 * (3,000 scope.set with async: true, in concurrent batches) so that an admin's calls wait
 * behind them. Most of the flood must be refused busy (-32008; cpcmd exit 10) with a clear
 * message, and the admin's calls, synchronous or as jobs, complete within a few seconds while
 * the flood goes on. The same holds for a flood of synchronous calls, which wait for the
 * engine as jobs do. Real scoped, real HTTP, the real cpcmd.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCodes, ExitCodes } from '../helpers/expect.js';
import { type RpcAnswer, type Scoped, cpcmd, httpPost, scoped, sleep } from '../helpers/scoped.js';

const BUSY = ErrorCodes.Busy;
const EXIT = ExitCodes;
const FLOOD = 3_000;
const BATCH = 100;
/** What "a few seconds" means for an admin's call while the flood runs. */
const FEW_SECONDS = 5_000;
const TOO_MANY = /^Too many jobs: .*maxJobsPerPrincipal/;

/** Resolve with what `p` gave, or with 'timed out' after `ms`. */
const within = <T>(p: Promise<T>, ms: number): Promise<T | 'timed out'> => Promise.race([p, sleep(ms).then(() => 'timed out' as const)]);

describe('job flooding: an operator cannot make an admin wait', { timeout: 120_000 }, () => {
  let d: Scoped;
  let operator: string;
  let n = 0;

  /** One batch of sets of net.hostname from the operator over HTTP, as jobs or answered when done; the answers. */
  async function batch(async = true): Promise<RpcAnswer[]> {
    const calls = Array.from({ length: BATCH }, (_, i) => ({
      jsonrpc: '2.0',
      id: i,
      method: 'scope.set',
      params: { name: 'net.hostname', value: `flood-${n++}.example.test`, async },
    }));
    const r = await httpPost({ port: d.port! }, JSON.stringify(calls), { token: operator });
    return JSON.parse(r.text) as RpcAnswer[];
  }

  beforeAll(async () => {
    // The flood is of calls at once, not of changes over time: maxChangesPerMinute is raised out of its way.
    d = await scoped({ config: { maxChangesPerMinute: 100_000 } });
    operator = (await d.ok<{ token: string }>('token.create', { role: 'operator', name: 'net-ops', scopes: ['net.*'] })).token;
  });
  afterAll(() => d?.close(), 60_000);

  it(`${FLOOD} async sets at once: most refused busy with a clear message; the admin's scope.get and scope.set complete within a few seconds`, async () => {
    const answers = (await Promise.all(Array.from({ length: FLOOD / BATCH }, () => batch()))).flat();
    // The admin comes in right behind the flood, while its jobs are queued.
    const started = Date.now();
    const get = await within(d.call('scope.get', { name: 'net.hostname' }), FEW_SECONDS);
    const set = await within(d.call('scope.set', { name: 'net.hostname', value: 'admin.example.test' }), FEW_SECONDS);
    const viaCpcmd = await within(d.cpcmd(['scope:set', 'net.hostname', 'admin2.example.test']), FEW_SECONDS);
    const took = Date.now() - started;

    const queued = answers.filter((a) => 'result' in a && a.result.status === 'queued');
    const refused = answers.filter((a) => 'error' in a);
    expect(queued.length + refused.length).toBe(FLOOD);
    expect(refused.length, `${queued.length} queued`).toBeGreaterThan(FLOOD / 2);
    for (const r of refused) expect('error' in r && r.error).toEqual({ code: BUSY, message: expect.stringMatching(TOO_MANY) });

    expect(get, `scope.get after ${took} ms`).toMatchObject({ result: expect.anything() });
    expect(set, 'scope.set').toMatchObject({ result: { status: 'applied' } });
    expect(viaCpcmd, 'cpcmd scope:set').toMatchObject({ code: EXIT.ok });
  });

  it(`${FLOOD} synchronous sets at once (answered when done, not as jobs): most refused busy; the admin's set completes within a few seconds`, async () => {
    const flood = Promise.all(Array.from({ length: FLOOD / BATCH }, () => batch(false)));
    // The admin comes in while the flood's calls wait for the engine.
    await sleep(50);
    const started = Date.now();
    const set = await within(d.call('scope.set', { name: 'net.hostname', value: 'admin-sync.example.test' }), FEW_SECONDS);
    const took = Date.now() - started;
    const answers = (await flood).flat();

    const applied = answers.filter((a) => 'result' in a);
    const refused = answers.filter((a) => 'error' in a);
    expect(applied.length + refused.length).toBe(FLOOD);
    expect(refused.length, `${applied.length} applied`).toBeGreaterThan(FLOOD / 2);
    for (const r of refused) expect('error' in r && r.error).toEqual({ code: BUSY, message: expect.stringMatching(TOO_MANY) });
    expect(set, `the admin's scope.set after ${took} ms`).toMatchObject({ result: { status: 'applied' } });
  });

  it("cpcmd --url with the flooding token exits 10 (busy) with the daemon's message while its jobs fill its share; the admin is still served", async () => {
    let flooding = true;
    const flood = (async () => {
      while (flooding) await batch();
    })();
    try {
      await sleep(200);
      const tries: { code: number | null; stderr: string }[] = [];
      for (let i = 0; i < 5 && !tries.some((t) => t.code === EXIT.busy); i++)
        tries.push(await cpcmd(['scope:set', 'net.hostname', `op-${i}.example.test`], { url: d.url, token: operator }));
      const busy = tries.find((t) => t.code === EXIT.busy);
      expect(busy, JSON.stringify(tries)).toBeDefined();
      expect(busy!.stderr).toMatch(/^cpcmd: .*too many jobs/i);
      const admin = await within(cpcmd(['scope:set', 'net.hostname', 'admin3.example.test'], { url: d.url, token: d.token() }), FEW_SECONDS);
      expect(admin, 'the admin over --url during the flood').toMatchObject({ code: EXIT.ok });
    } finally {
      flooding = false;
      await flood;
    }
  });
});
