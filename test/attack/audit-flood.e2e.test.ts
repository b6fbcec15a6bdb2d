/**
 * Attack: a reader erases the audit trail. Refused calls used to go into the same numbered log
 * as applied changes, which keeps the newest auditKeep (10,000) entries, so a reader's 101
 * batches of 100 refused calls pushed out every applied change and every token change.
 *
 * Here an admin applies changes and creates tokens over the unix socket; a reader token then
 * floods scope.set over HTTP (batches of maxBatch 100), first at one target, then at a hundred
 * different ones. Everything the admin did is still in audit:list, the refusals are a few rows
 * with counts (cpcmd audit:list --refused), the distinct rows a reader can add are limited per
 * minute, and the store barely grew.
 */
import type { AuditEntry, AuditRefusal } from '@scoped/protocol';
import sqlite3 from 'sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Scoped, cpcmd, httpPost, scoped, storeBytes } from '../helpers/scoped.js';

const BATCHES = 101;
const BATCH = 100;
/** The daemon's default limit of new distinct refusal rows per caller per minute. */
const NEW_PER_MINUTE = 30;

type Entry = AuditEntry;
type Refusal = AuditRefusal;

/** Run one statement on a stopped daemon's store. */
function sql<T = Record<string, unknown>>(file: string, statement: string, ...params: unknown[]): Promise<T[]> {
  return new Promise((resolve, reject) => {
    const db = new sqlite3.Database(file, (err) => {
      if (err) return reject(err);
      db.all(statement, params, (e, rows) => db.close(() => (e ? reject(e) : resolve(rows as T[]))));
    });
  });
}

describe('a reader floods the audit trail with refused calls', () => {
  let d: Scoped;
  let reader = '';
  let readerId = '';
  let operatorId = '';
  const applied: Entry[] = [];

  beforeAll(async () => {
    d = await scoped({ postfix: true });
    // The admin's history: changes applied, and tokens made.
    for (const host of ['one.example.test', 'two.example.test']) {
      expect(await d.ok('scope.set', { name: 'net.hostname', value: host })).toMatchObject({ status: 'applied' });
    }
    expect(await d.ok('var.set', { name: 'postfix_relay_mynetworks', value: true })).toMatchObject({ status: 'applied' });
    const r = await d.ok<{ token: string; id: string }>('token.create', { role: 'reader', name: 'flooder' });
    reader = r.token;
    readerId = r.id;
    operatorId = (await d.ok<{ id: string }>('token.create', { role: 'operator', name: 'ops', scopes: ['net.*'] })).id;
    applied.push(...(await d.ok<{ entries: Entry[] }>('audit.list', { limit: 1_000 })).entries);
  });
  afterAll(() => d?.close(), 60_000);

  it('keeps every applied change and token change, and shows the refusals as a few rows with counts', async () => {
    expect(applied.map((e) => `${e.action} ${e.outcome}`)).toEqual([
      // The first start's adoption of what Postfix had.
      'system.adopt applied',
      'scope.set applied',
      'scope.set applied',
      'var.set applied',
      'token.create applied',
      'token.create applied',
    ]);
    const before = await storeBytes(d.storeFile);
    const started = Date.now();
    const batch = (i: number, target: (j: number) => string) =>
      JSON.stringify(
        Array.from({ length: BATCH }, (_, j) => ({
          jsonrpc: '2.0',
          id: i * BATCH + j,
          method: 'scope.set',
          params: { name: target(j), value: `evil${j}.example.test` },
        })),
      );
    for (let i = 0; i < BATCHES; i++) {
      // The last batch aims at a hundred different targets, each a new row if nothing limited it.
      const body = batch(i, i < BATCHES - 1 ? () => 'net.hostname' : (j) => `net.host${j}`);
      const res = await httpPost({ port: d.port! }, body, { token: reader });
      expect(res.status).toBe(200);
      const answers = JSON.parse(res.text) as { error?: { code: number } }[];
      expect(answers).toHaveLength(BATCH);
      for (const a of answers) expect(a.error?.code).toBe(-32003);
    }
    const seconds = (Date.now() - started) / 1000;
    const after = await storeBytes(d.storeFile);
    console.log(`audit flood: ${BATCHES * BATCH} refused calls in ${seconds.toFixed(1)} s; store ${before} -> ${after} bytes`);

    // The history: exactly what the admin did, nothing pushed out, no refusal among it.
    const history = (await d.ok<{ entries: Entry[] }>('audit.list', { limit: 1_000 })).entries;
    expect(history).toEqual(applied);
    const cli = await d.cpcmd(['audit:list', '-o', 'json']);
    expect(cli.code, cli.stderr).toBe(0);
    expect((JSON.parse(cli.stdout) as Entry[]).map((e) => e.seq)).toEqual(applied.map((e) => e.seq));
    for (const id of [readerId, operatorId]) expect(history.some((e) => e.action === 'token.create' && e.target.endsWith(`(${id})`))).toBe(true);

    // The refusals: one row for the repeated call, at most the per-minute limit of new rows for
    // the spread one, and a row counting what was over that limit; every call counted once.
    const refused = await d.cpcmd(['audit:list', '--refused', '-o', 'json']);
    expect(refused.code, refused.stderr).toBe(0);
    const rows = (JSON.parse(refused.stdout) as Refusal[]).filter((r) => r.actor === `flooder (${readerId})`);
    expect(rows.length).toBeLessThanOrEqual(NEW_PER_MINUTE + 1);
    expect(rows.reduce((n, r) => n + r.count, 0)).toBe(BATCHES * BATCH);
    const repeated = rows.find((r) => r.target === 'net.hostname')!;
    expect(repeated).toMatchObject({
      action: 'scope.set',
      count: (BATCHES - 1) * BATCH + 0,
      reason: expect.stringMatching(/lacks the operator role needed for scope\.set/),
    });
    expect(Date.parse(repeated.first)).toBeLessThanOrEqual(Date.parse(repeated.last));
    const dropped = rows.find((r) => r.action === '*')!;
    expect(dropped.count).toBe(BATCH - (rows.length - 2));
    expect(dropped.reason).toMatch(/more than 30 different refused calls a minute/);

    // Read as people do: one line per row, with its count.
    const text = await d.cpcmd(['audit:list', '--refused']);
    expect(text.stdout).toMatch(
      new RegExp(`flooder \\(${readerId}\\) via http 127\\.0\\.0\\.1 {2}scope\\.set net\\.hostname {2}refused ${(BATCHES - 1) * BATCH} times`),
    );

    // The store grew by little more than the rows (the write-ahead log is reused, not appended to forever).
    expect(after - before).toBeLessThan(5 * 1024 * 1024);
  });

  it("a scope-limited token sees only its scopes' refusals and history", async () => {
    const ops = (await d.ok<{ token: string }>('token.create', { role: 'operator', name: 'mail-ops', scopes: ['mail.*'] })).token;
    const call = async (params: Record<string, unknown>) =>
      JSON.parse((await httpPost({ port: d.port! }, JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'audit.list', params }), { token: ops })).text);
    expect((await call({ refused: true })).result.refusals).toEqual([]);
    expect((await call({})).result.entries).toEqual([]);
    // The reader sees the rows through cpcmd over HTTP too.
    const viaHttp = await cpcmd(['audit:list', '--refused', '-o', 'json'], { url: d.url, token: reader });
    expect(viaHttp.code, viaHttp.stderr).toBe(0);
    expect((JSON.parse(viaHttp.stdout) as Refusal[]).some((r) => r.target === 'net.hostname')).toBe(true);
  });
});

describe("retention is the admin's: age and size of the history, size of the refusals", () => {
  it('drops history entries older than auditMaxAgeDays at start-up, and keeps the rest', async () => {
    await using d = await scoped({ postfix: true, listen: 'none' });
    for (const i of [1, 2, 3]) expect(await d.ok('scope.set', { name: 'net.hostname', value: `age${i}.example.test` })).toMatchObject({ status: 'applied' });
    await d.stop();
    // The first three entries are made 400 days old: the first start's adoption of what Postfix had, and the first two sets.
    const old = new Date(Date.now() - 400 * 86_400_000).toISOString();
    for (const key of ['scoped:audit:000000000001', 'scoped:audit:000000000002', 'scoped:audit:000000000003']) {
      const [row] = await sql<{ value: string }>(d.storeFile, 'SELECT value FROM scoped WHERE key = ?', key);
      const stored = JSON.parse(row!.value) as { value: { time: string } };
      stored.value.time = old;
      await sql(d.storeFile, 'UPDATE scoped SET value = ? WHERE key = ?', JSON.stringify(stored), key);
    }
    const trail = async () =>
      (await d.ok<{ entries: { action: string; new: string }[] }>('audit.list', { limit: 1_000 })).entries
        .filter((e) => e.action === 'scope.set')
        .map((e) => e.new);
    await d.start({ config: { auditMaxAgeDays: 0 } });
    expect(await trail()).toEqual(['age1.example.test', 'age2.example.test', 'age3.example.test']);
    await d.stop();
    await d.start({ config: { auditMaxAgeDays: 365 } });
    expect(await trail()).toEqual(['age3.example.test']);
    expect(await d.ok('scope.set', { name: 'net.hostname', value: 'age4.example.test' })).toMatchObject({ status: 'applied' });
    expect(await trail()).toEqual(['age3.example.test', 'age4.example.test']);
    await d.stop();
  });

  it('keeps at most refusalKeep refusal rows, the most recently refused', async () => {
    await using d = await scoped({ postfix: true, listen: 'none', config: { refusalKeep: 5, refusalNewPerMinute: 1_000 } });

    for (let i = 1; i <= 12; i++) expect(await d.call('scope.set', { name: `nope.x${i}`, value: 1 })).toHaveProperty('error');
    const rows = (await d.ok<{ refusals: { target: string; count: number }[] }>('audit.list', { refused: true })).refusals;
    expect(rows.map((r) => r.target)).toEqual(['nope.x8', 'nope.x9', 'nope.x10', 'nope.x11', 'nope.x12']);
    await d.stop();
  });
});
