/**
 * Security end to end, concurrency: 50 clients setting one scope at once over every transport,
 * and --if-revision, alone and raced. Each test has a daemon of its own.
 */
import { randomBytes } from 'node:crypto';
import { readFile, readdir, stat } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCodes, expectExit, expectRefused } from '../helpers/expect.js';
import { type Scoped, WsClient, mustRun, treeDigest } from '../helpers/scoped.js';
import { REDACTED, http, relayhostOf, rolesSandbox, unix } from './shared.js';

describe('concurrency', { timeout: 60_000 }, () => {
  let d: Scoped;
  let box: Scoped['postfix'];

  beforeEach(async () => {
    d = await rolesSandbox();
    box = d.postfix;
  });
  afterEach(() => d?.close(), 60_000);

  const N = 50;
  const value = (tag: string, i: number) => ({
    host: `[192.0.2.${i + 1}]:587`,
    username: `${tag}${i}`,
    password: `${tag}-pw-${i}-${randomBytes(3).toString('hex')}`,
  });
  const shown = (v: { host: string; username: string }) => ({ host: v.host, username: v.username, password: REDACTED });

  /** The files and the store agree with one value, and scope.check finds nothing. */
  async function expectFilesEqual(v: { host: string; username: string; password: string }, revision: number) {
    expect(await relayhostOf(box)).toBe(v.host);
    expect(await readFile(box.authMap, 'utf8')).toBe(`${v.host} ${v.username}:${v.password}\n`);
    expect((await stat(box.authMap)).mode & 0o777).toBe(0o600);
    expect((await mustRun('postmap', ['-c', box.dir, '-q', v.host, `hash:${box.authMap}`])).trim()).toBe(`${v.username}:${v.password}`);
    expect((await unix(d, 'var.get', { name: 'postfix_smarthost' })).json.result.value).toEqual(shown(v));
    expect((await unix(d, 'scope.get', { name: 'mail.smart-host' })).json.result).toMatchObject({ value: shown(v), revision, drift: [] });
    expect((await unix(d, 'scope.check', { name: 'mail.smart-host' })).json.result).toEqual({ ok: true, drift: [] });
    expect((await readdir(box.dir)).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  }

  let concurrentEntries: Record<string, any>[] = [];

  it(`serializes ${N} clients setting mail.smart-host at once (HTTP, WebSocket, unix socket, cpcmd); afterwards the files equal the stored value, and each set's old value is the one it really replaced`, async () => {
    const admin = d.token();
    const r0 = (await unix(d, 'daemon.status')).json.result.revision as number;
    const values = Array.from({ length: N }, (_, i) => value('c', i));
    const sockets = await Promise.all(values.map((_, i) => (i % 5 === 1 ? WsClient.open(d.port!, admin) : undefined)));
    const one = async (i: number): Promise<{ status: string; revision: number; plan: unknown[]; value: unknown }> => {
      const v = values[i]!;
      const params = { name: 'mail.smart-host', value: v };
      switch (i % 5) {
        case 1: {
          const a = await sockets[i]!.call('scope.set', params);
          sockets[i]!.close();
          return (a as { result: any }).result ?? a;
        }
        case 2:
          return (await unix(d, 'scope.set', params)).json.result;
        case 3: {
          const r = await d.cpcmd(['scope:set', 'mail.smart-host', `'${v.host}'`, v.username, v.password, '-o', 'json']);
          expectExit(r, 'ok');
          return JSON.parse(r.stdout);
        }
        default:
          return (await http(d, admin, 'scope.set', params)).json.result;
      }
    };
    const started = Date.now();
    const results = await Promise.all(values.map((_, i) => one(i)));
    const took = Date.now() - started;
    for (const [i, r] of results.entries()) expect(r, `client ${i}`).toMatchObject({ status: 'applied', value: shown(values[i]!) });
    // Serialized: every set got its own revision, one after another, and each planned against what the previous left.
    const revisions = results.map((r) => r.revision).sort((a, b) => a - b);
    expect(revisions).toEqual(Array.from({ length: N }, (_, i) => r0 + 1 + i));
    for (const r of results) expect(r.plan.length).toBeGreaterThan(0);
    const last = results.findIndex((r) => r.revision === r0 + N);
    await expectFilesEqual(values[last]!, r0 + N);

    const trail = (await unix(d, 'audit.list', { limit: 1_000 })).json.result.entries as Record<string, any>[];
    concurrentEntries = trail
      .filter((e) => e.action === 'scope.set' && e.target === 'mail.smart-host' && e.revision > r0 && e.revision <= r0 + N)
      .sort((a, b) => a.revision - b.revision);
    expect(concurrentEntries).toHaveLength(N);
    expect(concurrentEntries.map((e) => e.outcome)).toEqual(Array(N).fill('applied'));
    expect(concurrentEntries.map((e) => e.new)).toEqual(revisions.map((rev) => shown(values[results.findIndex((r) => r.revision === rev)]!)));
    expect(took).toBeLessThan(30_000);
  });

  let conflictSince = '';

  it('--if-revision: a set at the current revision applies; a stale one answers conflict (cpcmd exit 8, RPC -32004) and changes nothing; the conflicts are audited as refused, from cpcmd or over RPC', async () => {
    conflictSince = new Date().toISOString();
    const at = (await unix(d, 'scope.get', { name: 'mail.smart-host' })).json.result.revision as number;
    const ok = await d.cpcmd(['scope:set', 'mail.smart-host', "'[rev1.example.test]:587'", '--if-revision', String(at)]);
    expectExit(ok, 'ok');
    expect(ok.stdout).toMatch(/^mail\.smart-host: applied \(revision (\d+)\)/);
    const now = (await unix(d, 'scope.get', { name: 'mail.smart-host' })).json.result.revision as number;
    expect(now).toBeGreaterThan(at);

    const files = await treeDigest(box.dir);
    const stale = await d.cpcmd(['scope:set', 'mail.smart-host', "'[stale.example.test]:587'", '--if-revision', String(at)]);
    expectRefused(stale, 'conflict', new RegExp(`mail\\.smart-host is at revision ${now}, not ${at}`));
    const staleJson = await d.cpcmd(['scope:set', 'mail.smart-host', "'[stale.example.test]:587'", '--if-revision', String(at), '-o', 'json']);
    expectExit(staleJson, 'conflict');
    const rpc = await http(d, d.token(), 'scope.set', { name: 'mail.smart-host', value: { host: '[stale.example.test]:587' }, ifRevision: at });
    expect(rpc.json).toEqual({
      jsonrpc: '2.0',
      id: 1,
      error: { code: ErrorCodes.Conflict, message: expect.stringContaining(`at revision ${now}, not ${at}`), data: { revision: now } },
    });
    expect(await treeDigest(box.dir)).toEqual(files);
    expect(await relayhostOf(box)).toBe('[rev1.example.test]:587');

    const fresh = await http(d, d.token(), 'scope.set', { name: 'mail.smart-host', value: { host: '[rev2.example.test]:587' }, ifRevision: now });
    expect(fresh.json).toMatchObject({ result: { status: 'applied' } });
    expect(await relayhostOf(box)).toBe('[rev2.example.test]:587'); // Audited as refused: one row per caller, never in the history.
    const rows = JSON.parse((await d.cpcmd(['audit:list', '--refused', '--since', conflictSince, '-o', 'json'])).stdout) as Record<string, any>[];
    const conflicts = rows.filter((e) => e.action === 'scope.set' && e.target === 'mail.smart-host' && /at revision \d+, not \d+/.test(e.reason));
    // One row per caller, counting its refusals: the two from cpcmd on the socket, the one over HTTP.
    expect(conflicts.map((e) => e.transport).sort()).toEqual(['http 127.0.0.1', 'unix']);
    expect(conflicts.find((e) => e.transport === 'unix')!.count).toBeGreaterThanOrEqual(2);
    const history = JSON.parse((await d.cpcmd(['audit:list', '--since', conflictSince, '-o', 'json'])).stdout) as Record<string, any>[];
    expect(history.filter((e) => /at revision \d+, not \d+/.test(e.reason ?? ''))).toEqual([]);
  });

  it(`lets exactly one of ${N} clients racing with the same --if-revision win; the others answer conflict`, async () => {
    const admin = d.token();
    const at = (await unix(d, 'scope.get', { name: 'mail.smart-host' })).json.result.revision as number;
    const values = Array.from({ length: N }, (_, i) => value('race', i));
    const answers = await Promise.all(
      values.map(async (v, i) => {
        const params = { name: 'mail.smart-host', value: v, ifRevision: at };
        return (i % 2 ? await unix(d, 'scope.set', params) : await http(d, admin, 'scope.set', params)).json;
      }),
    );
    const winners = answers.flatMap((a, i) => ('result' in a ? [i] : []));
    expect(winners).toHaveLength(1);
    for (const a of answers.filter((x) => 'error' in x)) expect(a.error).toMatchObject({ code: ErrorCodes.Conflict, data: { revision: expect.any(Number) } });
    expect(answers.filter((x) => 'error' in x)).toHaveLength(N - 1);
    await expectFilesEqual(values[winners[0]!]!, answers[winners[0]!].result.revision);
  });
});
