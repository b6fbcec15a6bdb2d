/**
 * A recovery that cannot finish never keeps scoped down. When undoing a change fails (the
 * filter the change stopped cannot be started again), scoped stays up, or comes up after a
 * restart: it serves reads, reports the stuck recovery (what, since when, the error, what to do)
 * in daemon:status and scope:check (which exits 9), refuses other changes naming cpcmd converge,
 * and `cpcmd converge` finishes the recovery once its cause is fixed.
 */
import { cp, rm } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { expectExit, expectRpcError } from '../helpers/expect.js';
import { type Postfix, type Scoped, pidsMentioning, scoped, treeDigest } from '../helpers/scoped.js';
import { FakeDaemons } from './fake-daemons.js';

describe('a recovery that cannot finish', { timeout: 90_000 }, () => {
  /** The root, its Postfix, and the scoped process (re)started on it. */
  let d: Scoped;
  let box: Postfix;
  let fakes: FakeDaemons;
  let before: Record<string, string>;

  /** A converged sandbox with stand-ins for both filters, rspamd set and running; `before` is its config. */
  beforeEach(async () => {
    d = await scoped({ postfix: true, listen: 'none', start: false });
    box = d.postfix;
    fakes = await FakeDaemons.install(d.root, ['rspamd', 'spamd']);
    await d.start();
    // Nothing to apply: the first start took what Postfix has as the vars' starting values.
    expect((await d.ok('unit.converge', {})).status).toBe('unchanged');
    expectExit(await d.cpcmd(['scope:set', 'mail.spam-filter', 'rspamd']), 'ok');
    expect(fakes.running('rspamd')).toBe(true);
    before = await treeDigest(box.dir);
  });

  afterEach(async () => {
    const root = d?.root;
    await fakes?.stopAll();
    await d?.close();
    if (root) expect(pidsMentioning(root)).toEqual([]);
  });

  /** Stuck: reported by daemon:status and scope:check, reads served, changes other than converge refused, nothing changed. */
  async function expectStuck(error: RegExp): Promise<string> {
    const status = await d.cpcmd(['daemon:status']);
    expectExit(status, 'ok');
    expect(status.stdout).toMatch(/^recovery:\n {2}state: stuck\n {2}action: scope\.set\n {2}target: mail\.spam-filter\n/m);
    expect(status.stdout).toMatch(/^ {2}since: \d{4}-\d\d-\d\dT/m);
    expect(status.stdout).toMatch(error);
    expect(status.stdout).toMatch(/^ {2}hint: .*cpcmd converge/m);

    const check = await d.cpcmd(['scope:check']);
    expectExit(check, 'convergeFailed');
    expect(check.stdout).toMatch(/^recovery stuck: scope\.set mail\.spam-filter \(started .*\) has not been finished or undone since /);
    expect(check.stdout).toMatch(error);
    expect(check.stdout).toMatch(/^hint: .*cpcmd converge/m);

    const get = await d.cpcmd(['scope:get', 'mail.spam-filter']);
    expectExit(get, 'ok');
    expect(get.stdout.trim()).toBe('rspamd');
    expectExit(await d.cpcmd(['scope:set', 'mail.spam-filter', 'false', '--dry-run']), 'ok');

    const set = await d.cpcmd(['scope:set', 'mail.spam-filter', 'false']);
    expectExit(set, 'convergeFailed');
    expect(set.stderr).toMatch(/^cpcmd: refused: the recovery of scope\.set mail\.spam-filter .* has not finished since .*cpcmd converge/m);
    expect(await treeDigest(box.dir)).toEqual(before);
    return (await d.ok('daemon.status')).recovery.since as string;
  }

  /** Mend rspamd and converge: the recovery finishes, rspamd runs, and changes go through again. */
  async function expectConvergeFinishes(): Promise<void> {
    await fakes.mend('rspamd');
    const converge = await d.cpcmd(['converge']);
    expectExit(converge, 'ok');
    expect(fakes.running('rspamd')).toBe(true);
    expect(fakes.running('spamd')).toBe(false);
    expect(await treeDigest(box.dir)).toEqual(before);
    expect((await d.ok('daemon.status')).recovery).toMatchObject({ state: 'completed', outcome: 'rolled-back', target: 'mail.spam-filter' });
    const check = await d.cpcmd(['scope:check']);
    expectExit(check, 'ok');
    expect(check.stdout.trim()).toBe('ok: no drift');
    expectExit(await d.cpcmd(['scope:set', 'mail.spam-filter', 'false']), 'ok');
    expect(fakes.running('rspamd')).toBe(false);
  }

  it('a rollback that fails leaves scoped up and stuck, through a restart, until cpcmd converge finishes it', async () => {
    // The switch stops rspamd and fails to start spamd; rspamd then cannot be started again either.
    await fakes.breakStart('spamd', 'no bayes database');
    await fakes.breakStart('rspamd', 'port 11332 is taken');
    const set = await d.cpcmd(['scope:set', 'mail.spam-filter', 'spamassassin']);
    expectExit(set, 'convergeFailed');
    expect(set.stderr).toMatch(
      /^cpcmd: converge failed: .*spamd: cannot start: no bayes database; rolling it back did not finish either: .*start rspamd: .*port 11332 is taken.*cpcmd converge/m,
    );
    expect(fakes.running('rspamd')).toBe(false);

    const since = await expectStuck(/rspamd: cannot start: port 11332 is taken/);

    // Converge while the cause is still there: still stuck, and it says so.
    const retry = await d.cpcmd(['converge']);
    expectExit(retry, 'convergeFailed');
    expect(retry.stderr).toMatch(/^cpcmd: the recovery of scope\.set mail\.spam-filter did not finish: .*port 11332 is taken/m);

    // A restart comes up (the recovery fails again) and reports it stuck since the first failure.
    await d.restart({ listen: '127.0.0.1:0' });
    expect(await expectStuck(/port 11332 is taken/)).toBe(since);

    // A token limited to other scopes learns that a recovery is stuck and what to do, not whose change or why.
    const { token } = await d.ok('token.create', { role: 'reader', scopes: ['net.*'], name: 'monitor' });
    const seen = await d.tcpCall('daemon.status', {}, token);
    expect('result' in seen && seen.result.recovery).toMatchObject({ state: 'stuck', target: 'another scope', actor: 'another caller', since });
    expect(JSON.stringify('result' in seen && seen.result.recovery)).not.toMatch(/mail\.spam-filter|11332|unix-socket/);
    const checked = await d.tcpCall('scope.check', { name: 'net.hostname' }, token);
    expect('result' in checked && checked.result).toMatchObject({ ok: false, recovery: { state: 'stuck', target: 'another scope' } });
    // An operator limited to other scopes may neither change its own scopes nor run the recovery through a converge of its units,
    // and its refusal tells no more than daemon:status does.
    const op = (await d.ok('token.create', { role: 'operator', scopes: ['net.*'], name: 'net-op' })).token;
    const retries = () => d.stderr().split('recovery did not finish').length;
    const retriedBefore = retries();
    for (const [method, params] of [
      ['scope.set', { name: 'net.hostname', args: ['other.example.test'] }],
      ['unit.converge', { units: ['net/hostname'] }],
    ] as const) {
      const refused = await d.tcpCall(method, params, op);
      expectRpcError(
        refused,
        'ConvergeFailed',
        /^refused: the recovery of a change to another scope has not finished since .*An admin, or a token for that scope, finishes it with cpcmd converge/,
      );
      expect(JSON.stringify(refused)).not.toMatch(/mail\.spam-filter|11332|unix-socket|spamd|rspamd/);
    }
    // Neither ran the recovery: no new attempt in the log, and it is still stuck since the first failure.
    expect(retries()).toBe(retriedBefore);
    expect(await expectStuck(/port 11332 is taken/)).toBe(since);

    await expectConvergeFinishes();
  });

  it('killed right after a change stopped rspamd, which then cannot start: the restart comes up stuck, converge starts rspamd again', async () => {
    // Killed at each crash point of the switch in turn, from the same config and store, until a
    // kill comes after rspamd was stopped (the kills before it leave rspamd running).
    await d.stop();
    const saved = path.join(d.root, 'saved');
    const storeDir = path.join(d.root, 'var/lib/scoped');
    await cp(box.dir, path.join(saved, 'postfix'), { recursive: true, preserveTimestamps: true });
    await cp(storeDir, path.join(saved, 'store'), { recursive: true, preserveTimestamps: true });
    // The switch also writes rspamd's local.d files and the SpamAssassin filter script: each try starts from the same ones.
    const rspamdDir = path.join(d.root, 'etc/rspamd');
    await cp(rspamdDir, path.join(saved, 'rspamd'), { recursive: true, preserveTimestamps: true });
    for (let n = 1; ; n++) {
      expect(n, 'no kill came after rspamd was stopped').toBeLessThan(60);
      for (const [from, to] of [
        ['postfix', box.dir],
        ['store', storeDir],
        ['rspamd', rspamdDir],
      ] as const) {
        await rm(to, { recursive: true, force: true });
        await cp(path.join(saved, from), to, { recursive: true, preserveTimestamps: true });
      }
      await rm(path.join(d.root, 'usr/local/libexec/scoped'), { recursive: true, force: true });
      await d.start({ env: { SCOPED_CRASH_AT: String(n) } });
      const answer = await d.call('scope.set', { name: 'mail.spam-filter', value: 'spamassassin' }).catch(() => undefined);
      expect(answer, `N=${n}: scoped was killed before answering`).toBeUndefined();
      expect((await d.waitExit()).signal).toBe('SIGKILL');
      if (!fakes.running('rspamd')) break;
    }
    await fakes.breakStart('rspamd', 'port 11332 is taken');
    await d.start();
    await expectStuck(/rspamd: cannot start: port 11332 is taken/);
    await expectConvergeFinishes();
  });
});
