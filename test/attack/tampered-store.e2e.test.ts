/**
 * Attack: values no set would accept reach the store, then a converge.
 *
 * - A store edited while scoped is stopped (a var given a value its schema refuses) used to be
 *   loaded as it was and converged from. Now the start is refused with the var named and the
 *   way out (scoped --reset-var NAME), nothing under the root is touched, and the way out works;
 *   a stored var that no plugin declares is only reported.
 * - Lone UTF-16 surrogates, U+2028/U+2029 and NUL in a value, and values over 64 KiB, used to
 *   pass the schemas and end as "converge failed, rolled back" (main.cf cannot hold such a
 *   line). Now they are refused up front as invalid params naming the var or field; nothing is
 *   written and nothing rolled back.
 */
import sqlite3 from 'sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectExit } from '../helpers/expect.js';
import { type Postfix, type Scoped, scoped, treeDigest } from '../helpers/scoped.js';

const INVALID_PARAMS = -32602;

/** Run one statement on the stopped daemon's store with the sqlite3 package, as an intruder would. */
function sql<T = Record<string, unknown>>(file: string, statement: string, ...params: unknown[]): Promise<T[]> {
  return new Promise((resolve, reject) => {
    const db = new sqlite3.Database(file, (err) => {
      if (err) return reject(err);
      db.all(statement, params, (e, rows) => db.close(() => (e ? reject(e) : resolve(rows as T[]))));
    });
  });
}

/** Edit the stored vars (keyv keeps the state as JSON `{ value, expires }` under scoped:state). */
async function tamper(file: string, edit: (vars: Record<string, unknown>) => void): Promise<void> {
  const [row] = await sql<{ value: string }>(file, "SELECT value FROM scoped WHERE key = 'scoped:state'");
  const stored = JSON.parse(row!.value) as { value: { vars: Record<string, unknown> } };
  edit(stored.value.vars);
  await sql(file, "UPDATE scoped SET value = ? WHERE key = 'scoped:state'", JSON.stringify(stored));
}

/** Every file under the root but the daemon's own store, socket and test config: what a converge could write. */
function system(root: string): Promise<Record<string, string>> {
  return treeDigest(root, { skip: ['var/lib/scoped', 'run/scoped', 'scoped.yaml'] });
}

describe("a store edited behind scoped's back", () => {
  let d: Scoped;

  beforeAll(async () => {
    d = await scoped({ postfix: true });
    expect(await d.ok('scope.set', { name: 'net.hostname', value: 'good.example.test' })).toMatchObject({ status: 'applied' });
    expect(await d.ok('var.set', { name: 'postfix_relay_mynetworks', value: true })).toMatchObject({ status: 'applied' });
    await d.stop();
  });
  afterAll(() => d?.close(), 60_000);

  it('refuses to start, naming each bad var and the way out, and writes nothing under the root', async () => {
    await tamper(d.storeFile, (vars) => {
      vars.system_hostname = 'evil host\nmyhostname = attacker.example';
      vars.postfix_relay_mynetworks = 'yes';
      vars.ghost_var = 1;
    });
    const before = await system(d.root);
    const refused = await d.start({ wait: false });
    const exit = await refused.waitExit(20_000);
    expect(exit.timedOut).toBe(false);
    expect(exit.code).toBe(1);
    const err = refused.stderr();
    expect(err).toMatch(/cannot start/);
    expect(err).toMatch(/system_hostname \(the hostname contains whitespace or a control character\)/);
    expect(err).toMatch(/postfix_relay_mynetworks \(/);
    // In the store's order: postfix_relay_mynetworks was stored first, by the first start's adoption of what Postfix had.
    expect(err).toContain('--reset-var postfix_relay_mynetworks --reset-var system_hostname');
    // Undeclared vars are reported, never a reason to refuse.
    expect(err).toMatch(/no loaded plugin declares.*ghost_var/);
    expect(err).not.toMatch(/ghost_var \(/);
    expect(err).not.toMatch(/listening/);
    expect(await system(d.root)).toEqual(before);
  });

  it('--reset-var puts the vars back to their defaults in the store, records it, and converges nothing', async () => {
    const before = await system(d.root);
    await d.start({ args: ['--reset-var', 'system_hostname', '--reset-var', 'postfix_relay_mynetworks'] });
    expect(d.stderr()).toMatch(/ghost_var/);
    expect(await system(d.root)).toEqual(before);
    expect(await d.ok('var.get', { name: 'system_hostname' })).toMatchObject({ value: '', isDefault: true });
    expect(await d.ok('var.get', { name: 'postfix_relay_mynetworks' })).toMatchObject({ value: false, isDefault: true });
    const history = (await d.ok<{ entries: { actor: string; action: string; target: string; outcome: string }[] }>('audit.list', {})).entries;
    expect(history.filter((e) => e.action === 'var.reset').map((e) => [e.actor, e.target, e.outcome])).toEqual([
      ['scoped (--reset-var)', 'system_hostname', 'applied'],
      ['scoped (--reset-var)', 'postfix_relay_mynetworks', 'applied'],
    ]);
    // The system is set again from the repaired state only when asked.
    expect(await d.ok('scope.set', { name: 'net.hostname', value: 'good.example.test' })).toMatchObject({ status: 'applied' });
  });

  it('--reset-var of a name nobody knows is refused with the reason', async () => {
    await d.stop();
    const bad = await d.start({ wait: false, args: ['--reset-var', 'no_such_var'] });
    const exit = await bad.waitExit(20_000);
    expect(exit.code).toBe(1);
    expect(bad.stderr()).toMatch(/--reset-var no_such_var: no var of that name is stored or declared/);
    await d.start();
  });
});

describe('text no config line can carry, and over-size values', () => {
  let box: Postfix;
  let d: Scoped;

  beforeAll(async () => {
    d = await scoped({ postfix: true });
    box = d.postfix;
  });
  afterAll(() => d?.close(), 60_000);

  const big = 'x'.repeat(70 * 1024);
  const cases: [string, string, Record<string, unknown>, RegExp][] = [
    [
      'a lone surrogate in a password',
      'scope.set',
      { name: 'mail.smart-host', value: { host: '[relay.example.test]:587', username: 'bob', password: 'pw\uD800x' } },
      /mail\.smart-host: password: holds a lone UTF-16 surrogate/,
    ],
    [
      'a lone low surrogate in a var',
      'var.set',
      { name: 'postfix_custom_config', value: { smtp_helo_name: 'a\uDC00b' } },
      /postfix_custom_config: smtp_helo_name: holds a lone UTF-16 surrogate/,
    ],
    [
      'U+2028 in a var',
      'var.set',
      { name: 'postfix_custom_config', value: { smtp_helo_name: 'a\u2028b' } },
      /postfix_custom_config: smtp_helo_name: holds U\+2028/,
    ],
    [
      'U+2029 in a key',
      'var.set',
      { name: 'postfix_custom_config', value: { 'smtp\u2029helo': 'a' } },
      /postfix_custom_config: smtp\u2029helo: its key holds U\+2029/,
    ],
    [
      'NUL in a username',
      'scope.set',
      { name: 'mail.smart-host', value: { host: '[relay.example.test]:587', username: 'b\0b', password: 'pw' } },
      /mail\.smart-host: username: holds NUL/,
    ],
    [
      'a value over 64 KiB',
      'var.set',
      { name: 'postfix_custom_config', value: { smtp_helo_name: big } },
      /postfix_custom_config: the value takes \d+ bytes as JSON; a var holds at most 65536/,
    ],
    [
      'a scope value over 64 KiB',
      'scope.set',
      { name: 'mail.smart-host', value: { host: '[relay.example.test]:587', username: 'bob', password: big } },
      /mail\.smart-host: the value takes \d+ bytes/,
    ],
  ];

  it.each(cases)('%s: invalid params naming the var or field, nothing written, nothing rolled back', async (_what, method, params, message) => {
    const before = await system(d.root);
    const history = (await d.ok<{ entries: unknown[] }>('audit.list', { limit: 1_000 })).entries;
    const a = await d.call(method, params);
    expect('error' in a && a.error).toMatchObject({ code: INVALID_PARAMS, message: expect.stringMatching(message) });
    // The refused value is never echoed (a password may be in it).
    if ('error' in a) expect(a.error.message).not.toMatch(/pw|xxxx/);
    expect(await system(d.root)).toEqual(before);
    expect((await d.ok<{ entries: unknown[] }>('audit.list', { limit: 1_000 })).entries).toEqual(history);
  });

  it('cpcmd refuses U+2028 in a word with exit 6 and changes nothing', async () => {
    const before = await system(d.root);
    const r = await d.cpcmd(['scope:set', 'cp.bootstrapper', 'postfix_custom_config', '[smtp_helo_name:a\u2028b]']);
    expectExit(r, 'invalid');
    expect(r.stderr).toMatch(/cp\.bootstrapper: argument 2\.smtp_helo_name: holds U\+2028/);
    expect(await system(d.root)).toEqual(before);
    const rows = (await d.ok<{ refusals: { action: string; target: string }[] }>('audit.list', { refused: true })).refusals;
    expect(rows).toEqual(expect.arrayContaining([expect.objectContaining({ action: 'scope.set', target: 'cp.bootstrapper' })]));
  });

  it('a value within the limits still applies', async () => {
    expect(await d.ok('var.set', { name: 'postfix_custom_config', value: { smtp_helo_name: 'helo.example.test' } })).toMatchObject({ status: 'applied' });
    expect((await box.postconf(['-h', 'smtp_helo_name'])).trim()).toBe('helo.example.test');
  });
});
