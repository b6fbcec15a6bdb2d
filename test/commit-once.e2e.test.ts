/**
 * An applied change is stored as one commit: its new state, its entry in the history of
 * changes, the events announcing it and the end of its converge journal. scoped is killed
 * (SCOPED_CRASH_AT=N, SIGKILL) at each crash point of `scope.set net.hostname` in turn and
 * started again; whatever the point, the history holds exactly one entry for the set and the
 * event log at most one scope.changed for it, and they agree with what scope.get reads. (Were
 * these separate commits, a kill after the history entry but before the journal's end would
 * make the restart finish the set again and record it twice.)
 */
import { cp, mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { scoped } from './helpers/scoped.js';

const OLD = 'before.example.test';
const NEW = 'after.example.test';

interface Listed {
  action: string;
  target: string;
  outcome: string;
  reason?: string;
}

describe('one commit per applied change', () => {
  test('a kill at any crash point of a set leaves one history entry and at most one event for it', async () => {
    await using d = await scoped({ listen: 'none' });
    const root = d.root;
    const store = path.join(root, 'var/lib/scoped');
    const pristine = path.join(root, 'pristine');
    const etc = path.join(root, 'etc');
    // The starting point: the old hostname applied, the store and /etc kept while no daemon runs.
    expect((await d.ok('scope.set', { name: 'net.hostname', value: OLD })).status).toBe('applied');
    await d.stop();
    await mkdir(pristine, { recursive: true });
    await cp(store, path.join(pristine, 'store'), { recursive: true, preserveTimestamps: true });
    await cp(etc, path.join(pristine, 'etc'), { recursive: true, preserveTimestamps: true });

    const outcomes: string[] = [];
    for (let n = 1; ; n++) {
      expect(n, 'the set never got past its crash points').toBeLessThan(40);
      for (const [from, to] of [
        ['store', store],
        ['etc', etc],
      ] as const) {
        await rm(to, { recursive: true, force: true });
        await cp(path.join(pristine, from), to, { recursive: true, preserveTimestamps: true });
      }
      await d.start({ listen: 'none', env: { SCOPED_CRASH_AT: String(n) } });
      const answer = await d.call('scope.set', { name: 'net.hostname', value: NEW }).catch(() => undefined);
      const killed = !(answer !== undefined && d.running);
      if (killed) expect((await d.waitExit()).signal, `N=${n}: scoped killed itself`).toBe('SIGKILL');
      else await d.stop();

      await d.start({ listen: '127.0.0.1:0' });
      try {
        const value = (await d.ok<{ value: string }>('scope.get', { name: 'net.hostname' })).value;
        expect([OLD, NEW], `N=${n}: the hostname is the old or the new one`).toContain(value);
        const history = (await d.ok<{ entries: Listed[] }>('audit.list', { scope: 'net.hostname' })).entries.filter((e) => e.action === 'scope.set');
        // The first set (to OLD) and this one.
        expect(history, `N=${n}: ${JSON.stringify(history)}`).toHaveLength(2);
        const entry = history[1]!;
        expect(entry.outcome, `N=${n}: the entry agrees with scope.get`).toBe(value === NEW ? 'applied' : 'rolled-back');

        const ws = await d.ws();
        try {
          const sub = await ws.call('events.subscribe', { topics: ['scope.changed'], since: 0 });
          expect('result' in sub, JSON.stringify(sub)).toBe(true);
          const changed = ws.messages
            .map((m) => JSON.parse(m) as { method?: string; params?: { topic?: string; data?: { scope?: string; value?: unknown } } })
            .filter((m) => m.method !== undefined && m.params?.topic === 'scope.changed' && m.params.data?.scope === 'net.hostname')
            .map((m) => m.params!.data!.value);
          expect(changed, `N=${n}: scope.changed events for net.hostname`).toEqual(value === NEW ? [OLD, NEW] : [OLD]);
        } finally {
          await ws.close();
        }
        outcomes.push(killed ? `${n}:${value === NEW ? 'B' : 'A'}` : `${n}:done`);
      } catch (err) {
        (err as Error).message += `\n--- daemon log after the restart ---\n${d.stderr()}`;
        throw err;
      } finally {
        await d.stop();
      }
      if (!killed) break;
    }
    // The kill points before the apply, inside it, and after its one commit.
    expect(outcomes.length, outcomes.join(' ')).toBeGreaterThanOrEqual(4);
  }, 240_000);
});
