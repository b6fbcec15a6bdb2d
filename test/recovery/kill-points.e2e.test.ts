/**
 * Kill points inside a rollback. `scope:set mail.spam-filter rspamd` with an rspamd that
 * cannot start always fails and is rolled back; scoped is killed (SCOPED_CRASH_AT=N, SIGKILL)
 * at each crash point of that set in turn, those of the rollback included (inside each file
 * write, after the files are back, around each service step, before the journal is cleared). Every restart comes up,
 * finishes the rollback, reports it in daemon.status, and leaves the files byte for byte as
 * before, Postfix running and rspamd stopped. A kill inside the restart's own recovery is
 * survived the same way.
 */
import { cp, mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type Postfix, type Scoped, pidsMentioning, scoped, treeDigest } from '../helpers/scoped.js';
import { FakeDaemons } from './fake-daemons.js';

describe('kill points inside a rollback', () => {
  /** The root, its Postfix, and the scoped process started on it again and again (with and without a crash point). */
  let fx: Scoped;
  let box: Postfix;
  let fakes: FakeDaemons;
  const pristine = () => path.join(fx.root, 'pristine');
  const storeDir = () => path.join(fx.root, 'var/lib/scoped');

  beforeAll(async () => {
    fx = await scoped({ postfix: true, listen: 'none', start: false });
    box = fx.postfix;
    fakes = await FakeDaemons.install(fx.root, ['rspamd']);
    await fakes.breakStart('rspamd', 'its configuration is broken');
  }, 60_000);

  afterAll(async () => {
    const root = fx?.root;
    await fakes?.stopAll();
    await fx?.close();
    if (root) expect(pidsMentioning(root)).toEqual([]);
  }, 60_000);

  async function restorePristine(): Promise<void> {
    await rm(box.dir, { recursive: true, force: true });
    await cp(path.join(pristine(), 'postfix'), box.dir, { recursive: true, preserveTimestamps: true });
    // What a forward apply killed before its journal could be undone wrote outside Postfix's dir too (rspamd's local.d files).
    await rm(path.join(fx.root, 'etc/rspamd'), { recursive: true, force: true });
    await rm(storeDir(), { recursive: true, force: true });
    await cp(path.join(pristine(), 'store'), storeDir(), { recursive: true, preserveTimestamps: true });
  }

  /** A restart after a kill: it must come up having rolled the set back, whole. */
  async function checkRolledBack(d: Scoped, before: Record<string, string>, where: string): Promise<void> {
    const status = await d.ok('daemon.status');
    expect(status.recovery, `${where}: daemon.status reports the finished rollback`).toMatchObject({
      state: 'completed',
      outcome: 'rolled-back',
      action: 'scope.set',
      target: 'mail.spam-filter',
    });
    expect(await treeDigest(box.dir), `${where}: the files are as before the set`).toEqual(before);
    expect(fakes.running('rspamd'), `${where}: rspamd stays stopped`).toBe(false);
    expect(await d.ok('scope.check', {}), `${where}: scope.check`).toMatchObject({ ok: true, drift: [] });
    expect((await d.ok('scope.get', { name: 'mail.spam-filter' })).value).toBe(false);
  }

  test('a kill at any crash point of a failing set, its rollback included, is recovered at restart', async () => {
    // Converged once, so the starting point has no drift; kept as the pristine copy.
    let d = await fx.start();
    // Nothing to apply: the first start took what Postfix has as the vars' starting values.
    expect((await d.ok('unit.converge', {})).status).toBe('unchanged');
    await d.stop();
    await mkdir(pristine(), { recursive: true });
    await cp(box.dir, path.join(pristine(), 'postfix'), { recursive: true, preserveTimestamps: true });
    await cp(storeDir(), path.join(pristine(), 'store'), { recursive: true, preserveTimestamps: true });
    const before = await treeDigest(box.dir);

    let kills = 0;
    let inRollback = 0;
    for (let n = 1; ; n++) {
      // rspamd's set writes its local.d files too: more crash points than Postfix's parameters alone.
      expect(n, 'the set never got past its crash points').toBeLessThan(80);
      await restorePristine();
      const attempts = fakes.starts('rspamd');
      const crashing = await fx.start({ env: { SCOPED_CRASH_AT: String(n) } });
      const answer = await crashing.call('scope.set', { name: 'mail.spam-filter', value: 'rspamd' }).catch(() => undefined);
      if (answer !== undefined && crashing.running) {
        // Past the last crash point: the set failed and was rolled back without a kill.
        expect('error' in answer && answer.error.message, `N=${n}`).toMatch(/^converge failed and was rolled back: .*rspamd: cannot start/);
        expect(await treeDigest(box.dir)).toEqual(before);
        expect((await crashing.ok('daemon.status')).recovery).toBeUndefined();
        await crashing.stop();
        break;
      }
      expect((await crashing.waitExit()).signal, `N=${n}: scoped killed itself`).toBe('SIGKILL');
      kills++;
      // Before rspamd's failed start the kill interrupts the forward apply (crash.e2e covers those
      // restarts); after it, the kill lands inside the rollback.
      if (fakes.starts('rspamd') === attempts) continue;
      inRollback++;

      if (inRollback === 1) {
        // Killed again inside the restart's own rollback, at each of its crash points in turn.
        for (let k = 1; ; k++) {
          expect(k).toBeLessThan(20);
          const again = await fx.start({ env: { SCOPED_CRASH_AT: String(k) }, wait: false });
          // Up, or killed by its crash point before listening (any other failure fails the test).
          const up = await again.ready().then(
            () => true,
            (err: unknown) => {
              if ((err as { exit?: unknown }).exit === undefined) throw err;
              return false;
            },
          );
          if (up) {
            await checkRolledBack(again, before, `N=${n}, its recovery killed ${k - 1} times`);
            await again.stop();
            break;
          }
          expect((await again.waitExit()).signal, `N=${n} K=${k}`).toBe('SIGKILL');
          kills++;
          inRollback++;
        }
        continue;
      }
      d = await fx.start();
      try {
        await checkRolledBack(d, before, `N=${n}`);
      } catch (err) {
        (err as Error).message += `\n--- daemon log after the restart ---\n${d.stderr()}`;
        throw err;
      } finally {
        await d.stop();
      }
    }
    console.log(`recovery e2e: ${kills} kill points, ${inRollback} of them inside a rollback (the set's or the restart's)`);
    // Inside the set's rollback: main.cf's write, the files back, before the journal goes; inside the restart's: main.cf's write, the files back.
    expect(inRollback).toBeGreaterThanOrEqual(10);
  }, 240_000);
});
