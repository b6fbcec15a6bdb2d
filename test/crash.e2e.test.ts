/**
 * Crash safety, proven by killing the daemon at every crash point of several
 * `scope.set mail.smart-host` runs against a real Postfix config with Postfix running.
 *
 * For each scenario A -> B: a reference run without crashes records A's and B's files; then for
 * N = 1, 2, 3, ... the sandbox and the store go back to A, scoped starts with SCOPED_CRASH_AT=N
 * (it SIGKILLs itself at the N-th crash point), the set is sent, the process dies, scoped starts
 * again without the switch (it finishes or rolls back the interrupted converge before serving)
 * and the result must be A or B as a whole, with the store agreeing. The loop ends with the
 * first N the set survives.
 */
import { cp, mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type Postfix, type Scoped, httpPost, pidsMentioning, readOrNull, run, scoped } from './helpers/scoped.js';

const HOST = '[127.0.0.1]:2525';

interface FilesState {
  mainCf: string;
  auth: string | null;
  db: boolean;
}

interface Scenario {
  name: string;
  value: unknown;
}

/** The chain of scenarios: each starts from the state the previous one left. */
const scenarios: Scenario[] = [
  { name: '(a) none -> host with credentials', value: { host: HOST, username: 'alice', password: 's3cret' } },
  { name: '(b) -> another host and password', value: { host: '[127.0.0.2]:2526', username: 'bob', password: 'n3w-Secret' } },
  { name: '(c) -> false', value: false },
  { name: '(d) false -> host without credentials', value: { host: HOST } },
];

const relayhostOf = (mainCf: string): string | false => {
  // The last assignment wins, as in Postfix; continuation lines are not used for relayhost here.
  let v: string | false = false;
  for (const line of mainCf.split('\n')) {
    const m = /^relayhost\s*=\s*(.*?)\s*$/.exec(line);
    if (m) v = m[1] === '' ? false : m[1]!;
  }
  return v;
};

describe('crash safety of scope.set mail.smart-host', () => {
  /** The root, its running Postfix, and the scoped process restarted on it again and again. */
  let fx: Scoped;
  let box: Postfix;
  const pristineDir = () => path.join(fx.root, 'pristine');
  const storeDir = () => path.join(fx.root, 'var/lib/scoped');
  const confDir = () => box.dir;

  beforeAll(async () => {
    fx = await scoped({ postfix: { running: true }, start: false });
    box = fx.postfix;
  }, 60_000);

  afterAll(async () => {
    const root = fx?.root;
    await fx?.close();
    // Nothing of ours is left behind.
    if (root) expect(pidsMentioning(root)).toEqual([]);
  }, 60_000);

  async function files(): Promise<FilesState> {
    return {
      mainCf: (await readOrNull(box.mainCf))!.toString('utf8'),
      auth: (await readOrNull(box.authMap))?.toString('utf8') ?? null,
      db: (await readOrNull(box.authDb)) !== null,
    };
  }

  /** Keep a copy of the Postfix config dir and the store, taken while no daemon runs. */
  async function savePristine(): Promise<void> {
    await rm(pristineDir(), { recursive: true, force: true });
    await mkdir(pristineDir(), { recursive: true });
    await cp(confDir(), path.join(pristineDir(), 'postfix'), { recursive: true, preserveTimestamps: true });
    await cp(storeDir(), path.join(pristineDir(), 'store'), { recursive: true, preserveTimestamps: true });
  }

  /** Put the config dir and the store (a hot journal of a killed SQLite included) back as saved. */
  async function restorePristine(): Promise<void> {
    await rm(confDir(), { recursive: true, force: true });
    await cp(path.join(pristineDir(), 'postfix'), confDir(), { recursive: true, preserveTimestamps: true });
    await rm(storeDir(), { recursive: true, force: true });
    await cp(path.join(pristineDir(), 'store'), storeDir(), { recursive: true, preserveTimestamps: true });
  }

  const setBody = (value: unknown) => JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'scope.set', params: { name: 'mail.smart-host', value } });

  /** Every check that must hold after any crash and restart; returns whether the files are A or B. */
  async function checkConsistent(d: Scoped, A: FilesState, B: FilesState, where: string): Promise<'A' | 'B'> {
    const postconf = await run('postconf', ['-c', confDir(), '-n']);
    expect(postconf.code, `${where}: postconf -n fails: ${postconf.stderr}`).toBe(0);

    const now = await files();
    const isA = now.mainCf === A.mainCf && now.auth === A.auth && now.db === A.db;
    const isB = now.mainCf === B.mainCf && now.auth === B.auth && now.db === B.db;
    expect(isA || isB, `${where}: the files are neither A nor B as a whole:\n${JSON.stringify({ now, A, B }, null, 2)}`).toBe(true);

    expect(now.db, `${where}: the .db exists iff the credentials file does`).toBe(now.auth !== null);
    if (now.auth !== null) {
      const [key, creds] = now.auth.trim().split(/\s+/, 2);
      const q = await run('postmap', ['-c', confDir(), '-q', key!, `hash:${box.authMap}`]);
      expect(q.code, `${where}: postmap -q ${key}: ${q.stderr}`).toBe(0);
      expect(q.stdout.trim(), `${where}: the .db disagrees with the credentials file`).toBe(creds);
      const q2 = await run('postmap', ['-c', confDir(), '-q', HOST, `hash:${box.authMap}`]);
      if (key === HOST) expect(q2.stdout.trim()).toBe(creds);
      else expect(q2.code, `${where}: the .db still has an entry for ${HOST}`).toBe(1);
    }

    const stray = (await readdir(confDir())).filter((n) => n.startsWith('.') && n.endsWith('.tmp'));
    expect(stray, `${where}: temp files left in etc/postfix`).toEqual([]);

    const check = await d.call('scope.check', {});
    // toMatchObject: defaults the first start left as Postfix had them are listed as pending, which is no drift.
    expect('result' in check ? check.result : check, `${where}: scope.check`).toMatchObject({ ok: true, drift: [] });
    const get = await d.ok<{ value: false | { host: string } }>('scope.get', { name: 'mail.smart-host' });
    const host = get.value === false ? false : get.value.host;
    expect(host, `${where}: scope.get disagrees with main.cf`).toBe(relayhostOf(now.mainCf));
    // The stored var (what a converge would write) names the same host.
    const v = await d.ok<{ value: false | { host: string } }>('var.get', { name: 'postfix_smarthost' });
    expect(v.value === false ? false : v.value.host, `${where}: the stored var disagrees with main.cf`).toBe(relayhostOf(now.mainCf));
    return isA ? 'A' : 'B';
  }

  test('a kill at any crash point leaves the old or the new state whole, and the store agreeing', async () => {
    // First start: creates the store and the admin token, so later starts pass no crash point.
    // Converge once, so the starting point (no smart host) is a state without drift: the first start took what Postfix
    // has as the vars' starting values, so there is nothing to apply.
    let d = await fx.start();
    const converged = await d.ok<{ status: string }>('unit.converge', {});
    expect(converged.status).toBe('unchanged');
    expect(await d.ok('scope.check', {})).toMatchObject({ ok: true, drift: [] });
    await d.stop();

    let killPoints = 0;
    const summary: string[] = [];
    for (const sc of scenarios) {
      // The reference run: A before, B after.
      await savePristine();
      const A = await files();
      d = await fx.start();
      const ref = JSON.parse((await httpPost({ socket: d.socket }, setBody(sc.value))).text);
      expect(ref.result?.status, `${sc.name}: reference run: ${JSON.stringify(ref)}`).toBe('applied');
      const B = await files();
      await checkConsistent(d, B, B, `${sc.name} reference`);
      await d.stop();
      expect(B).not.toEqual(A);

      const outcomes: string[] = [];
      for (let n = 1; ; n++) {
        expect(n, `${sc.name}: the set never completed`).toBeLessThan(100);
        await restorePristine();
        const crashing = await fx.start({ env: { SCOPED_CRASH_AT: String(n) } });
        let answer: string | undefined;
        try {
          answer = (await httpPost({ socket: crashing.socket }, setBody(sc.value))).text;
        } catch {
          // reset by the kill
        }
        if (answer !== undefined && crashing.running) {
          // Past the last crash point: the set completed normally.
          expect(JSON.parse(answer).result?.status, `${sc.name} N=${n}`).toBe('applied');
          await checkConsistent(crashing, A, B, `${sc.name} N=${n} (no crash)`);
          await crashing.stop();
          outcomes.push('done');
          break;
        }
        const exit = await crashing.waitExit(15_000);
        expect(exit.signal, `${sc.name} N=${n}: the daemon should have killed itself`).toBe('SIGKILL');
        expect(answer, `${sc.name} N=${n}: an answer came before the kill`).toBeUndefined();
        killPoints++;

        const again = await fx.start();
        try {
          outcomes.push(await checkConsistent(again, A, B, `${sc.name} N=${n}`));
        } catch (err) {
          (err as Error).message += `\n--- daemon log after the restart ---\n${again.stderr()}`;
          throw err;
        } finally {
          await again.stop();
        }
      }
      summary.push(`${sc.name}: ${outcomes.length - 1} kill points, outcomes ${outcomes.join(' ')}`);
      // Leave B in place (the completed run) for the next scenario.
      await rm(pristineDir(), { recursive: true, force: true });
    }
    console.log(`crash e2e: ${killPoints} kill points across ${scenarios.length} scenarios\n  ${summary.join('\n  ')}`);
    expect(killPoints).toBeGreaterThanOrEqual(50);
  }, 300_000);
});
