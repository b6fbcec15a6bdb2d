/**
 * Attack: a reader forges lines in the admin's `cpcmd audit:list --refused`. The target kept for
 * a refused call was the raw (clipped) params.name, never checked against the name grammar, and
 * the --refused rows were printed unescaped: a scope.set with the name
 * "zz\n2026-11-27T18:00:00.000Z  admin-token via unix  scope.set mail.smart-host  refused 1 time …"
 * printed a line that looked like the admin's own refused call.
 *
 * Now a name that fails its grammar is kept as "(invalid name)", and every field of a --refused
 * or --unchanged row goes through the same escaping as the history's rows.
 */
import sqlite3 from 'sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Scoped, scoped, tcpCall } from '../helpers/scoped.js';

/** Run one statement on a stopped daemon's store. */
function sql(file: string, statement: string, ...params: unknown[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const db = new sqlite3.Database(file, (err) => {
      if (err) return reject(err);
      db.run(statement, params, (e) => db.close(() => (e ? reject(e) : resolve())));
    });
  });
}

const FORGED = '2026-11-27T18:00:00.000Z  admin-token via unix  scope.set mail.smart-host  refused 1 time since 2026-11-27T18:00:00.000Z: forbidden';

/** The forged line, printed as a line of its own. */
const FORGED_LINE = /^2026-11-27T18:00:00\.000Z {2}admin-token via unix/m;

describe('forged lines in audit:list --refused', () => {
  let d: Scoped;
  let reader = '';
  let readerId = '';

  beforeAll(async () => {
    d = await scoped({ postfix: true });
    const r = await d.ok<{ token: string; id: string }>('token.create', { role: 'reader', name: 'forger' });
    reader = r.token;
    readerId = r.id;
  });
  afterAll(() => d?.close(), 60_000);

  it('keeps a name that fails the grammar as a placeholder, and prints no line the reader wrote', async () => {
    for (const [method, params] of [
      ['scope.set', { name: `zz\n${FORGED}`, value: 'x' }],
      ['var.set', { name: `zz\r${FORGED}`, value: 1 }],
      ['job.cancel', { id: `job-\u001b[2J\n${FORGED}` }],
      ['unit.converge', { units: [`net/hostname\n${FORGED}`] }],
      ['token.create', { role: 'admin', name: `x\n${FORGED}` }],
    ] as const) {
      const r = await tcpCall(d.port!, reader, method, params);
      expect(r, method).toHaveProperty('error');
    }
    const json = await d.cpcmd(['audit:list', '--refused', '-o', 'json']);
    expect(json.code, json.stderr).toBe(0);
    const rows = (JSON.parse(json.stdout) as { actor: string; action: string; target: string }[]).filter((r) => r.actor === `forger (${readerId})`);
    expect(rows.map((r) => r.action).sort()).toEqual(['job.cancel', 'scope.set', 'token.create', 'unit.converge', 'var.set']);
    for (const r of rows) expect(r.target, r.action).toBe('(invalid name)');

    const text = await d.cpcmd(['audit:list', '--refused']);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).not.toContain(FORGED.slice(0, 40));
    // One line per row, each of them the reader's.
    const lines = text.stdout.trimEnd().split('\n');
    expect(lines.filter((l) => l.includes(`forger (${readerId})`))).toHaveLength(rows.length);
    for (const l of lines) expect(l).toMatch(/^\d{4}-\d\d-\d\dT\S+Z {2}\S/);
    expect(text.stdout).not.toMatch(FORGED_LINE);
  });

  it('still shows a well-formed name as itself', async () => {
    // A well-formed name still shows as itself.
    await tcpCall(d.port!, reader, 'scope.set', { name: 'mail.smart-host', args: ['x'] });
    const text = await d.cpcmd(['audit:list', '--refused', '--scope', 'mail.*']);
    expect(text.stdout).toMatch(new RegExp(`forger \\(${readerId}\\) via http 127\\.0\\.0\\.1 {2}scope\\.set mail\\.smart-host {2}refused 1 time since`));
  });

  it('escapes every field of a refused or no-op row, even rows written before the names were checked', async () => {
    await d.stop();
    const when = new Date().toISOString();
    for (const table of ['scoped_refusals', 'scoped_noops']) {
      await sql(
        d.storeFile,
        `INSERT INTO ${table} (actor, action, target, transport, count, first, last, reason) VALUES (?, ?, ?, ?, 1, ?, ?, ?)`,
        `old\n${FORGED}`,
        'scope.set',
        `zz\n${FORGED}`,
        'http\t127.0.0.1',
        when,
        when,
        `why\r\n${FORGED}`,
      );
    }
    await d.start();

    for (const flag of ['--refused', '--unchanged']) {
      const text = await d.cpcmd(['audit:list', flag]);
      expect(text.code, text.stderr).toBe(0);
      expect(text.stdout, flag).not.toMatch(FORGED_LINE);
      expect(text.stdout, flag).toContain('old\\x0a2026-11-27');
      expect(text.stdout, flag).toContain('via http\\x09127.0.0.1');
    }
  });
});
