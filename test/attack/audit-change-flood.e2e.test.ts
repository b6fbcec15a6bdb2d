/**
 * Attack: an operator limited to net.* erases the history with real changes. Alternating
 * scope.set net.hostname between two values over four keep-alive connections applied about 92
 * changes a second, so after about two minutes the history (the newest auditKeep, 10,000) was
 * the operator's alone: the admin's token.create and token.revoke entries and every mail.*
 * change were gone, and the kept events too.
 *
 * Here the history keeps 50 entries (auditKeep) and the rate limit is the default (60 changes
 * a minute per non-admin token). The admin creates the operator's token and changes
 * mail.smart-host; the operator alternates net.hostname as fast as it can for a few seconds
 * while the admin keeps changing mail.smart-host over the unix socket; then an admin token
 * makes more changes than the limit allows a token. Afterwards the admin's token.create is
 * still in audit:list, most of the operator's calls were refused busy (-32008; cpcmd exit 10)
 * with a message naming maxChangesPerMinute, and none of the admin's calls was refused.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RpcAnswer, type Scoped, cpcmd, httpPost, scoped, sleep } from '../helpers/scoped.js';

const KEEP = 50;
/** The default maxChangesPerMinute. */
const LIMIT = 60;
const BUSY = -32008;
const FLOOD_MS = 3_000;
const LOOPS = 4;
const TOO_MANY = /^Too many changes: .*at most 60 a minute \(maxChangesPerMinute;.*try again in \d+ s$/;

interface Entry {
  seq: number;
  time: string;
  actor: string;
  action: string;
  target: string;
  outcome: string;
}

describe('an operator floods the history with applied changes', { timeout: 120_000 }, () => {
  let d: Scoped;
  let ops = '';
  let opsId = '';

  beforeAll(async () => {
    d = await scoped({ postfix: true, config: { auditKeep: KEEP } });
    const r = await d.ok<{ token: string; id: string }>('token.create', { role: 'operator', name: 'net-ops', scopes: ['net.*'] });
    ops = r.token;
    opsId = r.id;
    expect(await d.ok('scope.set', { name: 'mail.smart-host', args: ['[relay.example.test]:587'] })).toMatchObject({ status: 'applied' });
  });
  afterAll(() => d?.close(), 60_000);

  it("keeps the admin's token changes and refuses the operator's changes beyond the limit, never the admin's", async () => {
    const answers: RpcAnswer[] = [];
    const adminAnswers: RpcAnswer[] = [];
    const end = Date.now() + FLOOD_MS;
    let n = 0;
    const flood = async () => {
      while (Date.now() < end) {
        const value = n++ % 2 ? 'flood-a.example.test' : 'flood-b.example.test';
        const res = await httpPost({ port: d.port! }, JSON.stringify({ jsonrpc: '2.0', id: n, method: 'scope.set', params: { name: 'net.hostname', value } }), {
          token: ops,
        });
        answers.push(JSON.parse(res.text) as RpcAnswer);
      }
    };
    const admin = async () => {
      for (let i = 0; Date.now() < end; i++) {
        adminAnswers.push(await d.call('scope.set', { name: 'mail.smart-host', args: [`[relay${i % 2}.example.test]:587`] }));
        await sleep(200);
      }
    };
    await Promise.all([...Array.from({ length: LOOPS }, flood), admin()]);

    // The operator: at most LIMIT applied, the rest refused busy with the limit named.
    const applied = answers.filter((a) => 'result' in a);
    const refused = answers.filter((a) => 'error' in a);
    expect(applied.length).toBeLessThanOrEqual(LIMIT);
    expect(refused.length).toBeGreaterThan(applied.length);
    for (const a of refused) {
      expect('error' in a && a.error.code, JSON.stringify(a)).toBe(BUSY);
      expect('error' in a && a.error.message).toMatch(TOO_MANY);
    }
    const cli = await cpcmd(['scope:set', 'net.hostname', 'cli.example.test'], { url: d.url, token: ops });
    expect(cli.code).toBe(10);
    expect(cli.stderr).toMatch(/maxChangesPerMinute/);

    // The admin over the unix socket, and an admin token beyond what a token may do: never refused.
    expect(adminAnswers.length).toBeGreaterThan(0);
    for (const a of adminAnswers) expect(a, JSON.stringify(a)).toHaveProperty('result');
    const root = (await d.ok<{ token: string }>('token.create', { role: 'admin', name: 'root-ci' })).token;
    for (let i = 0; i <= LIMIT; i++) {
      const res = await httpPost(
        { port: d.port! },
        JSON.stringify({ jsonrpc: '2.0', id: i, method: 'scope.set', params: { name: 'net.hostname', value: `admin-${i}.example.test` } }),
        { token: root },
      );
      expect(JSON.parse(res.text), res.text).toHaveProperty('result');
    }

    // The history: every token change is still there, though the changes pushed out older ones.
    const history = (await d.ok<{ entries: Entry[] }>('audit.list', { limit: 1_000 })).entries;
    const tokenEntries = history.filter((e) => e.action.startsWith('token.'));
    expect(tokenEntries.map((e) => `${e.action} ${e.target.replace(/ \(.*/, '')}`)).toEqual(['token.create net-ops', 'token.create root-ci']);
    expect(tokenEntries[0]).toMatchObject({ actor: 'unix-socket', target: `net-ops (${opsId})`, outcome: 'applied' });
    const listed = await d.cpcmd(['audit:list', '--limit', '1000', '-o', 'json']);
    expect(listed.code, listed.stderr).toBe(0);
    expect((JSON.parse(listed.stdout) as Entry[]).filter((e) => e.action === 'token.create')).toHaveLength(2);
    // Oldest first, token changes merged in where they were made.
    const seqs = history.map((e) => e.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    const times = history.map((e) => Date.parse(e.time));
    expect(times).toEqual([...times].sort((a, b) => a - b));
    expect(history.length).toBe(KEEP + 2);
    // The operator sees its own scopes only: no token change, no mail.* change.
    const seen = (
      JSON.parse(
        (await httpPost({ port: d.port! }, JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'audit.list', params: { limit: 1_000 } }), { token: ops })).text,
      ) as { result: { entries: Entry[] } }
    ).result.entries;
    expect(seen.length).toBeGreaterThan(0);
    for (const e of seen) expect(e.target).toMatch(/^net\./);
  });
});
