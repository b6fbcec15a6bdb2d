/**
 * A bare `cpcmd scope:check` (every scope) that finds drift announces it with drift.detected,
 * as a named check and a get do: a subscriber watching for drift must not miss drift that was
 * found by the one command that checks everything.
 */
import { describe, expect, it } from 'vitest';
import { expectExit } from '../helpers/expect.js';
import { type WsClient, scoped } from '../helpers/scoped.js';

interface DriftEvent {
  unit: string;
  scope?: string;
  drift: { target: string; scope?: string }[];
}

/** The drift.detected events a connection heard. */
function driftEvents(ws: WsClient): DriftEvent[] {
  return ws.messages
    .map((m) => JSON.parse(m) as { method?: string; params?: { topic: string; data: DriftEvent } })
    .filter((m) => m.method === 'event' && m.params?.topic === 'drift.detected')
    .map((m) => m.params!.data);
}

describe('bare scope:check and drift.detected', { timeout: 60_000 }, () => {
  it('emits drift.detected for the drift it finds, with no named scope', async () => {
    await using d = await scoped({ postfix: true, files: { 'etc/hostname': 'before.example.test\n' } });
    await d.ok('scope.set', { name: 'net.hostname', value: 'mail.example.test' });
    await using ws = await d.ws();
    expect(await ws.call('events.subscribe', { topics: ['drift.*'] })).toMatchObject({ result: { subscription: expect.any(String) } });
    await d.write('etc/hostname', 'drifted.example.test\n');

    const r = await d.cpcmd(['scope:check']);
    expectExit(r, 'drift');
    expect(r.stdout + r.stderr).toContain('/etc/hostname');

    await ws.waitFor((m) => m.includes('"drift.detected"') && m.includes('/etc/hostname'), 10_000);
    const heard = driftEvents(ws).filter((e) => e.drift.some((i) => i.target === '/etc/hostname'));
    expect(heard).toHaveLength(1);
    expect(heard[0]).toMatchObject({
      unit: 'net/hostname',
      drift: expect.arrayContaining([expect.objectContaining({ target: '/etc/hostname', scope: 'net.hostname' })]),
    });
  });
});
