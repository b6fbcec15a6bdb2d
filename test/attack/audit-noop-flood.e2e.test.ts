/**
 * Attack: an operator limited to net.* erases the history of changes with no-ops. A set that
 * changes nothing is answered 'unchanged', and each such answer used to be an entry of the
 * numbered history, which keeps the newest auditKeep: 10,500 scope.set net.hostname with the
 * current value (11 s over HTTP keep-alive) left 10,000 'unchanged' entries and pushed out the
 * admin's mail.smart-host change and every token creation.
 *
 * Here the history keeps 60 entries (auditKeep), so 300 no-ops are more than enough to push it
 * out. The admin applies a change and creates tokens; the operator floods scope.set with the
 * current value over HTTP, in batches, then spreads no-ops over a few targets. Everything the
 * admin did is still in audit:list; the no-ops are one row per caller, action and target with
 * a count (cpcmd audit:list --unchanged), and a caller's new rows a minute are limited.
 */
import type { AuditEntry, AuditNoop } from '@scoped/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Scoped, cpcmd, httpPost, scoped } from '../helpers/scoped.js';

const KEEP = 60;
const FLOOD = 304;
const BATCH = 8;
/** New collapsed rows per caller a minute, lowered so a few targets reach it. */
const NEW_PER_MINUTE = 2;

type Entry = AuditEntry;
type Noop = AuditNoop;

describe('an operator floods the history with no-ops', () => {
  let d: Scoped;
  let ops = '';
  let opsId = '';
  const admin: Entry[] = [];

  beforeAll(async () => {
    // No-ops count against maxChangesPerMinute too; raised here to show they cannot flush the history even unlimited.
    d = await scoped({ postfix: true, config: { auditKeep: KEEP, refusalNewPerMinute: NEW_PER_MINUTE, maxChangesPerMinute: 100_000 } });
    expect(await d.ok('scope.set', { name: 'net.hostname', value: 'noop.example.test' })).toMatchObject({ status: 'applied' });
    expect(await d.ok('scope.set', { name: 'mail.smart-host', args: ['[relay.example.test]:587'] })).toMatchObject({ status: 'applied' });
    const r = await d.ok<{ token: string; id: string }>('token.create', { role: 'operator', name: 'net-ops', scopes: ['net.*'] });
    ops = r.token;
    opsId = r.id;
    admin.push(...(await d.ok<{ entries: Entry[] }>('audit.list', {})).entries);
  });
  afterAll(() => d?.close(), 60_000);

  it('keeps every applied change and token change; the no-ops are one row with a count', async () => {
    expect(admin.map((e) => `${e.action} ${e.target.replace(/ \(.*/, '')} ${e.outcome}`)).toEqual([
      // The first start's adoption of what Postfix had.
      'system.adopt * applied',
      'scope.set net.hostname applied',
      'scope.set mail.smart-host applied',
      'token.create net-ops applied',
    ]);
    // Batches of maxJobsPerPrincipal (8): a token's concurrent mutations beyond that are refused busy.
    for (let i = 0; i < FLOOD; i += BATCH) {
      const body = JSON.stringify(
        Array.from({ length: BATCH }, (_, j) => ({
          jsonrpc: '2.0',
          id: i + j,
          method: 'scope.set',
          params: { name: 'net.hostname', value: 'noop.example.test' },
        })),
      );
      const res = await httpPost({ port: d.port! }, body, { token: ops });
      expect(res.status).toBe(200);
      const answers = JSON.parse(res.text) as { result?: { status: string } }[];
      expect(answers).toHaveLength(BATCH);
      for (const a of answers) expect(a.result?.status, JSON.stringify(a)).toBe('unchanged');
    }

    // The history: exactly what the admin did, nothing pushed out, no no-op among it.
    const history = (await d.ok<{ entries: Entry[] }>('audit.list', {})).entries;
    expect(history).toEqual(admin);
    const cli = await d.cpcmd(['audit:list', '-o', 'json']);
    expect(cli.code, cli.stderr).toBe(0);
    expect((JSON.parse(cli.stdout) as Entry[]).map((e) => e.seq)).toEqual(admin.map((e) => e.seq));
    expect(history.some((e) => e.action === 'token.create' && e.target === `net-ops (${opsId})`)).toBe(true);

    // The no-ops: one row, every call counted, with the value set.
    const listed = await d.cpcmd(['audit:list', '--unchanged', '-o', 'json']);
    expect(listed.code, listed.stderr).toBe(0);
    const rows = (JSON.parse(listed.stdout) as Noop[]).filter((r) => r.actor === `net-ops (${opsId})`);
    expect(rows).toEqual([
      expect.objectContaining({ transport: 'http 127.0.0.1', action: 'scope.set', target: 'net.hostname', count: FLOOD, value: 'noop.example.test' }),
    ]);
    expect(Date.parse(rows[0]!.first)).toBeLessThanOrEqual(Date.parse(rows[0]!.last));
    const text = await d.cpcmd(['audit:list', '--unchanged']);
    expect(text.stdout).toMatch(
      new RegExp(
        `^\\S+Z {2}net-ops \\(${opsId}\\) via http 127\\.0\\.0\\.1 {2}scope\\.set net\\.hostname {2}unchanged ${FLOOD} times since \\S+Z {2}-> "noop\\.example\\.test"$`,
        'm',
      ),
    );
    // Refusals stay apart: none of this is a refusal.
    expect((await d.ok<{ refusals: Noop[] }>('audit.list', { refused: true })).refusals.filter((r) => r.actor === `net-ops (${opsId})`)).toEqual([]);
  });

  it("limits a caller's new no-op rows a minute; the rest are counted in one row", async () => {
    // An operator of every scope, setting each to what it is: only NEW_PER_MINUTE rows of its own.
    const token = (await d.ok<{ token: string }>('token.create', { role: 'operator', name: 'wide-ops' })).token;
    const calls = [
      { name: 'net.hostname', value: 'noop.example.test' },
      { name: 'mail.smart-host', args: ['[relay.example.test]:587'] },
      { name: 'net.hostname', value: 'noop.example.test' },
      { name: 'mail.spam-filter', value: false },
    ];
    const body = JSON.stringify(calls.map((params, i) => ({ jsonrpc: '2.0', id: i, method: 'scope.set', params })));
    const res = await httpPost({ port: d.port! }, body, { token });
    const answers = JSON.parse(res.text) as { result?: { status: string }; error?: unknown }[];
    for (const a of answers) expect(a.result?.status, JSON.stringify(a)).toBe('unchanged');
    const rows = (await d.ok<{ unchanged: Noop[] }>('audit.list', { unchanged: true })).unchanged.filter((r) => r.actor.startsWith('wide-ops '));
    expect(rows.length).toBe(NEW_PER_MINUTE + 1);
    expect(rows.reduce((n, r) => n + r.count, 0)).toBe(calls.length);
    expect(rows.find((r) => r.action === '*')?.reason).toMatch(/more than 2 different unchanged calls a minute/);
    // The history still holds the admin's changes.
    const history = (await d.ok<{ entries: Entry[] }>('audit.list', {})).entries;
    for (const e of admin) expect(history).toContainEqual(e);
  });

  it("shows a scope-limited token only its scopes' no-ops, and refuses --refused with --unchanged", async () => {
    const mailOps = (await d.ok<{ token: string }>('token.create', { role: 'operator', name: 'mail-ops', scopes: ['mail.*'] })).token;
    const seen = await cpcmd(['audit:list', '--unchanged', '-o', 'json'], { url: d.url, token: mailOps });
    expect(seen.code, seen.stderr).toBe(0);
    for (const r of JSON.parse(seen.stdout) as Noop[]) expect(r.target).toMatch(/^mail\./);
    const both = await d.cpcmd(['audit:list', '--unchanged', '--refused']);
    expect(both.code).not.toBe(0);
    expect(both.stderr).toMatch(/--refused or --unchanged/);
    const help = await cpcmd(['audit:list', '--help']);
    expect(help.stdout).toMatch(/--unchanged/);
  });
});
