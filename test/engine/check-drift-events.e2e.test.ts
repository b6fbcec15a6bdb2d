/**
 * A bare `cpcmd scope:check` (every scope) that finds drift announces it with drift.detected,
 * as a named check and a get do: a subscriber watching for drift must not miss drift that was
 * found by the one command that checks everything.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon, PostfixRoot, WsClient, cleanupAll } from '../helpers/sandbox.js';

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

afterAll(async () => {
  await cleanupAll();
}, 60_000);

describe('bare scope:check and drift.detected', { timeout: 60_000 }, () => {
  let box: PostfixRoot;
  let d: Daemon;

  beforeAll(async () => {
    box = await PostfixRoot.create();
    await writeFile(path.join(box.root, 'etc/hostname'), 'before.example.test\n');
    d = await Daemon.start(box.root);
    await d.ok('scope.set', { name: 'net.hostname', value: 'mail.example.test' });
  });
  afterAll(async () => {
    await d?.stop();
  });

  it('emits drift.detected for the drift it finds, with no named scope', async () => {
    const ws = await WsClient.open(d.port!, d.token());
    try {
      expect(await ws.call('events.subscribe', { topics: ['drift.*'] })).toMatchObject({ result: { subscription: expect.any(String) } });
      await writeFile(path.join(box.root, 'etc/hostname'), 'drifted.example.test\n');

      const r = await d.cpcmd(['scope:check']);
      expect(r.code).toBe(3);
      expect(r.stdout + r.stderr).toContain('/etc/hostname');

      await ws.waitFor((m) => m.includes('"drift.detected"') && m.includes('/etc/hostname'), 10_000);
      const heard = driftEvents(ws).filter((e) => e.drift.some((i) => i.target === '/etc/hostname'));
      expect(heard).toHaveLength(1);
      expect(heard[0]).toMatchObject({ unit: 'net/hostname', drift: expect.arrayContaining([expect.objectContaining({ target: '/etc/hostname', scope: 'net.hostname' })]) });
    } finally {
      ws.close();
    }
  });
});
