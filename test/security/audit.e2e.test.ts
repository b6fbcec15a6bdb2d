/**
 * Security end to end, the audit trail: every kind of mutation and outcome, refusals apart with
 * counts (audit:list --refused), the filters of audit:list, durability across kill -9, rotation
 * at auditKeep. Each test has a daemon of its own; the ones that read a trail make it first.
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCodes, expectExit, expectRefused } from '../helpers/expect.js';
import { type Scoped, WsClient, scoped } from '../helpers/scoped.js';
import { REDACTED, http, idOf, makeTokens, relayhostOf, rolesSandbox, unix } from './shared.js';

describe('audit trail', { timeout: 60_000 }, () => {
  let d: Scoped;
  let box: Scoped['postfix'];
  let tok: { reader: string; operator: string; admin: string };
  let since = '';
  let entries: Record<string, any>[] = [];
  let refusals: Record<string, any>[] = [];

  beforeEach(async () => {
    d = await rolesSandbox();
    box = d.postfix;
    tok = await makeTokens(d);
    since = '';
    entries = [];
    refusals = [];
  });
  afterEach(() => d?.close(), 60_000);

  /**
   * A trail with every kind of mutation and outcome in it, made through cpcmd, HTTP and a
   * WebSocket; `since`, `entries` and `refusals` are what audit:list shows of it. Returns the
   * ids and values the checks need.
   */
  async function makeTrail(): Promise<{ before: string; auditedId: string; listed: string }> {
    since = new Date().toISOString();
    const hostname = path.join(box.root, 'etc/hostname');
    const before = (await d.cpcmd(['scope:get', 'net.hostname'])).stdout.trim();
    expect(before).toMatch(/\.example\.test$/);

    // set: applied, then unchanged, then refused (invalid value)
    expectExit(await d.cpcmd(['scope:set', 'net.hostname', 'audit-a.example.test']), 'ok');
    expect((await d.cpcmd(['scope:set', 'net.hostname', 'audit-a.example.test'])).stdout).toMatch(/unchanged/);
    expectExit(await d.cpcmd(['scope:set', 'net.hostname', 'not_a_hostname']), 'invalid');
    // refused: forbidden to a reader over HTTP
    expect((await http(d, tok.reader, 'scope.set', { name: 'net.hostname', value: 'evil.example.test' })).json).toMatchObject({
      error: { code: ErrorCodes.Forbidden },
    });
    // converge after a hand edit
    await writeFile(hostname, 'drifted.example.test\n');
    expectExit(await d.cpcmd(['converge', 'net/hostname']), 'ok');
    expect(await readFile(hostname, 'utf8')).toBe('audit-a.example.test\n');
    // var.set over HTTP with an admin token
    // The first start adopted the sandbox's Postfix default (mynetworks relay): the admin turns it off.
    expect((await http(d, tok.admin, 'var.set', { name: 'postfix_relay_mynetworks', value: false })).json).toMatchObject({ result: { status: 'applied' } });
    // adopt a hand edit of relayhost
    await box.postconf(['-e', 'relayhost=[adopted.example.test]:2525']);
    box.backdateMainCf();
    expectExit(await d.cpcmd(['scope:check', '--adopt', 'mail.smart-host']), 'ok');
    // reset
    expectExit(await d.cpcmd(['scope:reset', 'mail.smart-host']), 'ok');
    expect(await relayhostOf(box)).toBe('');
    // token create and revoke over a WebSocket
    const ws = await WsClient.open(d.port!, tok.admin);
    let auditedId = '';
    try {
      const c = await ws.call('token.create', { role: 'reader', name: 'audited' });
      auditedId = (c as { result: { id: string } }).result.id;
      expect(await ws.call('token.revoke', { id: 'audited' })).toHaveProperty('result');
    } finally {
      ws.terminate();
    }
    // rolled back: postmap cannot write the database where a directory stands
    const db = box.authDb;
    await mkdir(db);
    const mainCf = await readFile(box.mainCf, 'utf8');
    const failed = await d.cpcmd(['scope:set', 'mail.smart-host', "'[rb.example.test]:587'", 'bob', 'pw-rollback-1']);
    await rm(db, { recursive: true });
    expectRefused(failed, 'convergeFailed', /rolled back/);
    expect(await readFile(box.mainCf, 'utf8')).toBe(mainCf);

    const listed = await d.cpcmd(['audit:list', '--since', since, '-o', 'json']);
    expectExit(listed, 'ok');
    entries = JSON.parse(listed.stdout);
    const now = Date.now();
    for (const e of entries) {
      expect(e.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      expect(Date.parse(e.time)).toBeGreaterThanOrEqual(Date.parse(since));
      expect(Date.parse(e.time)).toBeLessThanOrEqual(now);
      expect(Array.isArray(e.plan)).toBe(true);
      expect(typeof e.revision).toBe('number');
    }
    expect(entries.map((e) => e.seq)).toEqual([...entries.map((e) => e.seq)].sort((a, b) => a - b));
    // Refusals are kept apart, one row per caller, action and target with a count; never in the history.
    expect(entries.filter((e) => e.outcome === 'refused')).toEqual([]);
    const refusedList = await d.cpcmd(['audit:list', '--refused', '--since', since, '-o', 'json']);
    expectExit(refusedList, 'ok');
    refusals = JSON.parse(refusedList.stdout);
    return { before, auditedId, listed: listed.stdout };
  }

  it('records every mutation with time, actor, transport and peer, target, old and new values, the plan and the outcome; refusals apart, with counts', async () => {
    const { before, auditedId, listed } = await makeTrail();
    const find = (what: Record<string, unknown>, among = entries) => {
      const hit = among.find((e) => expect.objectContaining(what).asymmetricMatch(e));
      expect(hit, `no audit entry like ${JSON.stringify(what)} in\n${JSON.stringify(among, null, 1)}`).toBeDefined();
      return hit!;
    };
    const unixActor = { actor: 'unix-socket', transport: 'unix' };
    const applied = find({ ...unixActor, action: 'scope.set', target: 'net.hostname', outcome: 'applied', old: before, new: 'audit-a.example.test' });
    expect(applied.plan).toEqual(expect.arrayContaining([expect.stringContaining('/etc/hostname')]));
    // No-ops are kept apart too, one row per caller, action and target with a count and the last value.
    expect(entries.filter((e) => e.outcome === 'unchanged')).toEqual([]);
    const noops = JSON.parse((await d.cpcmd(['audit:list', '--unchanged', '--since', since, '-o', 'json'])).stdout) as Record<string, any>[];
    expect(find({ ...unixActor, action: 'scope.set', target: 'net.hostname', value: 'audit-a.example.test' }, noops).count).toBeGreaterThanOrEqual(1);
    expect(find({ ...unixActor, action: 'scope.set', target: 'net.hostname', count: expect.any(Number) }, refusals).reason).toMatch(
      /not_a_hostname|hostname|label/,
    );
    const forbidden = find({ actor: `monitoring (${idOf(tok.reader)})`, transport: 'http 127.0.0.1', action: 'scope.set', target: 'net.hostname' }, refusals);
    expect(forbidden.reason).toMatch(/lacks the operator role needed for scope\.set/);
    expect(forbidden.count).toBeGreaterThanOrEqual(1);
    expect(Date.parse(forbidden.first)).toBeLessThanOrEqual(Date.parse(forbidden.last));
    expect(find({ ...unixActor, action: 'unit.converge', target: 'net/hostname', outcome: 'applied' }).plan).toEqual(
      expect.arrayContaining([expect.stringContaining('/etc/hostname')]),
    );
    find({
      actor: `root-ci (${idOf(tok.admin)})`,
      transport: 'http 127.0.0.1',
      action: 'var.set',
      target: 'postfix_relay_mynetworks',
      old: true,
      new: false,
      outcome: 'applied',
    });
    find({
      ...unixActor,
      action: 'scope.adopt',
      target: 'mail.smart-host',
      outcome: 'applied',
      new: { postfix_smarthost: expect.objectContaining({ host: '[adopted.example.test]:2525' }) },
    });
    find({ ...unixActor, action: 'scope.reset', target: 'mail.smart-host', outcome: 'applied' });
    find({
      actor: `root-ci (${idOf(tok.admin)})`,
      transport: 'ws 127.0.0.1',
      action: 'token.create',
      target: `audited (${auditedId})`,
      new: { role: 'reader', scopes: [], expiresAt: null },
      outcome: 'applied',
    });
    find({ actor: `root-ci (${idOf(tok.admin)})`, transport: 'ws 127.0.0.1', action: 'token.revoke', target: `audited (${auditedId})`, outcome: 'applied' });
    const rolledBack = find({
      ...unixActor,
      action: 'scope.set',
      target: 'mail.smart-host',
      outcome: 'rolled-back',
      new: { host: '[rb.example.test]:587', username: 'bob', password: REDACTED },
    });
    expect(rolledBack.reason).toEqual(expect.any(String));
    expect(rolledBack.plan.length).toBeGreaterThan(0);
    expect(listed).not.toContain('pw-rollback-1');
  });

  it('audit:list filters by --scope, --since and --limit, in cli and json', async () => {
    await makeTrail();
    const json = async (...args: string[]) => {
      const r = await d.cpcmd(['audit:list', ...args, '-o', 'json']);
      expectExit(r, 'ok');
      return JSON.parse(r.stdout) as Record<string, any>[];
    };
    const mail = await json('--scope', 'mail.*', '--since', since);
    expect(mail.map((e) => e.action)).toEqual(expect.arrayContaining(['scope.adopt', 'scope.reset', 'scope.set']));
    for (const e of mail) expect(e.target).toMatch(/^mail\./);

    const varSet = entries.find((e) => e.action === 'var.set')!;
    const fromVarSet = await json('--since', varSet.time);
    expect(fromVarSet.map((e) => e.seq)).toContain(varSet.seq);
    for (const e of fromVarSet) expect(Date.parse(e.time)).toBeGreaterThanOrEqual(Date.parse(varSet.time));
    expect(fromVarSet.some((e) => e.action === 'scope.set' && e.target === 'net.hostname' && e.outcome === 'applied')).toBe(false);
    expect((await json('--since', '1h')).length).toBeGreaterThanOrEqual(entries.length);
    expect(await json('--since', new Date(Date.now() + 3_600_000).toISOString())).toEqual([]);
    const last2 = await json('--limit', '2');
    expect(last2).toHaveLength(2);
    expect(last2.map((e) => e.seq)).toEqual(entries.slice(-2).map((e) => e.seq));

    const cli = await d.cpcmd(['audit:list', '--since', since]);
    expectExit(cli, 'ok');
    expect(cli.stdout).toMatch(/^\S+Z {2}unix-socket via unix {2}scope\.set net\.hostname {2}applied {2}-> "audit-a\.example\.test"$/m);
    expect(cli.stdout).not.toMatch(/ refused/);
    expect(cli.stdout).toMatch(/scope\.set mail\.smart-host {2}rolled-back: /);
    const refusedCli = await d.cpcmd(['audit:list', '--refused', '--since', since]);
    expectExit(refusedCli, 'ok');
    expect(refusedCli.stdout).toMatch(
      new RegExp(
        `^\\S+Z {2}monitoring \\(${idOf(tok.reader)}\\) via http 127\\.0\\.0\\.1 {2}scope\\.set net\\.hostname {2}refused \\d+ times? since \\S+Z: forbidden`,
        'm',
      ),
    );
    const mailRefusals = JSON.parse((await d.cpcmd(['audit:list', '--refused', '--scope', 'mail.*', '-o', 'json'])).stdout) as Record<string, any>[];
    for (const r of mailRefusals) expect(r.target).toMatch(/^mail\./);
    expect(refusals.length).toBeGreaterThan(0);
    expect((await d.cpcmd(['audit:list', '--since', new Date(Date.now() + 3_600_000).toISOString()])).stdout).toBe('no entries\n');
    expectRefused(await d.cpcmd(['audit:list', '--since', 'yesterday']), 'invalid', /--since/);
  });

  it('records an entry durably before answering: kill -9 right after the answer, and the trail survives the restart', async () => {
    await makeTrail();
    const count = (await unix(d, 'audit.list', { limit: 1_000 })).json.result.entries.length;
    const set = await unix(d, 'scope.set', { name: 'net.hostname', value: 'durable.example.test' });
    expect(set.json).toMatchObject({ result: { status: 'applied' } });
    process.kill(d.pid, 'SIGKILL');
    await d.exited;
    await d.start();
    const after = (await unix(d, 'audit.list', { limit: 1_000 })).json.result.entries;
    expect(after).toHaveLength(count + 1);
    expect(after.at(-1)).toMatchObject({ action: 'scope.set', target: 'net.hostname', new: 'durable.example.test', outcome: 'applied', actor: 'unix-socket' });
    const viaCli = await d.cpcmd(['audit:list', '--since', since, '-o', 'json']);
    expect(JSON.parse(viaCli.stdout).map((e: { seq: number }) => e.seq)).toEqual([...entries.map((e) => e.seq), after.at(-1).seq]);
    // Tokens survive too.
    expect((await http(d, tok.reader, 'daemon.status')).status).toBe(200);
  });
});

describe('audit trail rotation at auditKeep', { timeout: 60_000 }, () => {
  let rot: Scoped;
  const sets = async (from: number, to: number) => {
    for (let i = from; i <= to; i++)
      expect((await unix(rot, 'scope.set', { name: 'net.hostname', value: `rot${i}.example.test` })).json).toHaveProperty('result');
  };
  const trail = async () => (await unix(rot, 'audit.list', { limit: 1_000 })).json.result.entries.map((e: { new: string }) => e.new);
  const names = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => `rot${a + i}.example.test`);

  beforeEach(async () => {
    rot = await scoped({ listen: 'none', config: { auditKeep: 5 } });
  });
  afterEach(() => rot?.close(), 60_000);

  it('keeps only the newest auditKeep entries, also across a restart', async () => {
    await sets(1, 8);
    expect(await trail()).toEqual(names(4, 8));
    const cli = await rot.cpcmd(['audit:list', '-o', 'json']);
    expect(JSON.parse(cli.stdout)).toHaveLength(5);
    await rot.restart();
    expect(await trail()).toEqual(names(4, 8));
    await sets(9, 9);
    expect(await trail()).toEqual(names(5, 9));
  });

  it('trims the trail to a lowered auditKeep after a restart', async () => {
    await sets(1, 9);
    expect(await trail()).toEqual(names(5, 9));
    await rot.restart({ config: { auditKeep: 3 } });
    await sets(10, 10);
    expect(await trail()).toEqual(names(8, 10));
  });
});
