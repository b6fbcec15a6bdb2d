/**
 * A service change that fails is undone, never repeated: `scope:set mail.spam-filter rspamd`
 * whose rspamd cannot start is rolled back to the files as they were and the services as they
 * were, leaves no journal behind, and scoped goes on serving. A filter that ran and was stopped
 * by the failed change runs again afterwards. The spam daemons are stand-ins inside the sandbox
 * root (fake-daemons.ts), so nothing depends on what the machine has installed.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { expectExit } from '../helpers/expect.js';
import { type Postfix, type Scoped, pidsMentioning, scoped, treeDigest, waitFor } from '../helpers/scoped.js';
import { FakeDaemons } from './fake-daemons.js';

describe('a service that cannot start', { timeout: 60_000 }, () => {
  /** The root with its Postfix laid out; each test starts scoped on it once its stand-ins are in place. */
  let d: Scoped;
  let box: Postfix;
  let fakes: FakeDaemons | undefined;

  beforeEach(async () => {
    fakes = undefined;
    d = await scoped({ postfix: true, listen: 'none', start: false });
    box = d.postfix;
  });

  afterEach(async () => {
    const root = d?.root;
    await fakes?.stopAll();
    await d?.close();
    if (root) expect(pidsMentioning(root)).toEqual([]);
  });

  /** scoped on the root, converged once so the starting point has no drift. */
  async function startConverged(): Promise<void> {
    await d.start();
    // Nothing to apply: the first start took what Postfix has as the vars' starting values.
    expect((await d.ok('unit.converge', {})).status).toBe('unchanged');
  }

  it('scope:set mail.spam-filter rspamd fails, says rolled back, leaves the files byte for byte and no journal, and scoped keeps serving', async () => {
    fakes = await FakeDaemons.install(d.root, ['rspamd']);
    await fakes.breakStart('rspamd', 'its configuration is broken');
    await startConverged();
    const before = await treeDigest(box.dir);

    const set = await d.cpcmd(['scope:set', 'mail.spam-filter', 'rspamd']);
    expectExit(set, 'convergeFailed');
    expect(set.stderr).toMatch(/^cpcmd: converge failed and was rolled back: .*rspamd: cannot start: its configuration is broken/m);
    expect(set.stderr).not.toMatch(/did not finish/);

    expect(await treeDigest(box.dir)).toEqual(before);
    expect(fakes.running('rspamd')).toBe(false);
    expect(d.stderr()).not.toMatch(/rollback failed/);

    // Still serving, and nothing left to recover: neither now nor after a restart.
    const get = await d.cpcmd(['scope:get', 'mail.spam-filter']);
    expectExit(get, 'ok');
    expect(get.stdout.trim()).toBe('false');
    expectExit(await d.cpcmd(['scope:check']), 'ok');
    expect((await d.ok('daemon.status')).recovery).toBeUndefined();
    await d.restart(); // a journal left behind would be recovered (and reported) at this start
    expect((await d.ok('daemon.status')).recovery).toBeUndefined();
    expect(d.stderr()).not.toMatch(/interrupted converge/);
    expect(await treeDigest(box.dir)).toEqual(before);

    // Once rspamd can start, the same set goes through.
    await fakes.mend('rspamd');
    const again = await d.cpcmd(['scope:set', 'mail.spam-filter', 'rspamd']);
    expectExit(again, 'ok');
    expect(fakes.running('rspamd')).toBe(true);
    expect((await d.cpcmd(['scope:get', 'mail.spam-filter'])).stdout.trim()).toBe('rspamd');
  });

  it('a filter that ran and was stopped by the failed change runs again, and a running Postfix is reloaded with the restored files', async () => {
    fakes = await FakeDaemons.install(d.root, ['rspamd', 'spamd']);
    await box.start();
    await startConverged();
    expectExit(await d.cpcmd(['scope:set', 'mail.spam-filter', 'rspamd']), 'ok');
    const rspamdBefore = fakes.pid('rspamd');
    expect(rspamdBefore).toBeDefined();
    const before = await treeDigest(box.dir);
    const reloads = async () => (await box.maillog()).split('\n').filter((l) => /postfix\/master\[\d+\]: reload/.test(l)).length;
    const reloadsBefore = await waitFor("the set's Postfix reload in the log", async () => ((await reloads()) > 0 ? reloads() : undefined));

    // The switch stops rspamd, then fails to start spamd.
    await fakes.breakStart('spamd', 'no bayes database');
    const set = await d.cpcmd(['scope:set', 'mail.spam-filter', 'spamassassin']);
    expectExit(set, 'convergeFailed');
    expect(set.stderr).toMatch(/^cpcmd: converge failed and was rolled back: .*spamd: cannot start: no bayes database/m);

    expect(await treeDigest(box.dir)).toEqual(before);
    expect(fakes.running('spamd')).toBe(false);
    const rspamdAfter = fakes.pid('rspamd');
    expect(rspamdAfter, 'rspamd runs again').toBeDefined();
    expect(rspamdAfter, 'rspamd was stopped by the change and started again by the rollback').not.toBe(rspamdBefore);
    expect(box.masterPid(), 'Postfix still runs').toBeDefined();
    await waitFor('Postfix reloaded by the rollback', async () => ((await reloads()) > reloadsBefore ? true : undefined));

    expect((await d.cpcmd(['scope:get', 'mail.spam-filter'])).stdout.trim()).toBe('rspamd');
    expectExit(await d.cpcmd(['scope:check']), 'ok');
    await d.restart(); // a journal left behind would be recovered (and reported) at this start
    expect((await d.ok('daemon.status')).recovery).toBeUndefined();
  });
});
