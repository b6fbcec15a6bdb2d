/**
 * Attack: drift.detected carried every drift item of a unit, so a token limited to net.*
 * heard about relayhost drift (mail.smart-host's), including the hand-set relay.
 *
 * From the attacker's side, with a real scoped on a Postfix config: a reader limited to net.*
 * subscribes to drift.detected over a WebSocket while someone hand-edits main.cf's relayhost
 * and the hostname. Reads by an admin and by the limited token make the daemon notice the
 * drift. The limited token must hear the hostname's items only, and its own reads of net.*
 * must not report relayhost either; an admin subscriber hears both (so the drift did happen).
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Postfix, type Scoped, type WsClient, scoped, tcpCall, waitFor } from '../helpers/scoped.js';

interface DriftItem {
  unit: string;
  target: string;
  scope?: string;
  var?: string;
  expected: string | null;
  actual: string | null;
}

/** Every drift item the drift.detected events on a connection carried. */
function driftHeard(ws: WsClient): DriftItem[] {
  return ws.messages
    .map((m) => JSON.parse(m) as { method?: string; params?: { topic: string; data: { drift: DriftItem[] } } })
    .filter((m) => m.method === 'event' && m.params?.topic === 'drift.detected')
    .flatMap((m) => m.params!.data.drift);
}

describe('attack: hearing about other scopes through drift events', { timeout: 60_000 }, () => {
  let box: Postfix;
  let d: Scoped;

  beforeAll(async () => {
    d = await scoped({ postfix: true, files: { 'etc/hostname': 'before.example.test\n' } });
    box = d.postfix;
    await d.ok('scope.set', { name: 'net.hostname', value: 'mail.example.test' });
    await d.ok('scope.set', { name: 'mail.smart-host', value: { host: '[relay.example.test]:587', username: '', password: '' } });
  });
  afterAll(() => d?.close(), 60_000);

  it('a net.* token hears only net items of a drift that also moved relayhost', async () => {
    const netToken = (await d.ok('token.create', { role: 'reader', name: 'net-watch', scopes: ['net.*'] })).token;
    const adminToken = (await d.ok('token.create', { role: 'admin', name: 'admin-watch' })).token;
    const limited = await d.ws(netToken);
    const admin = await d.ws(adminToken);
    try {
      expect(await limited.call('events.subscribe', { topics: ['drift.*'] })).toMatchObject({ result: { subscription: expect.any(String) } });
      expect(await admin.call('events.subscribe', { topics: ['drift.*'] })).toMatchObject({ result: { subscription: expect.any(String) } });

      // The hand edits: relayhost to a secret relay, myhostname and /etc/hostname to another name.
      await box.postconf(['-e', 'relayhost=[hand-set-relay.internal]:2525', 'myhostname=drifted.example.test']);
      box.backdateMainCf();
      await writeFile(path.join(d.root, 'etc/hostname'), 'drifted.example.test\n');

      // Reads that notice it: the limited token's own, and the admin's.
      const own = await tcpCall(d.port!, netToken, 'scope.get', { name: 'net.hostname' });
      const check = await tcpCall(d.port!, netToken, 'scope.check', { name: 'net.hostname' });
      await d.ok('scope.check', {});
      await d.ok('scope.get', { name: 'mail.smart-host' });

      await waitFor(
        'the admin to hear the relayhost drift',
        () => (driftHeard(admin).some((i) => i.target === 'main.cf:relayhost') ? true : undefined),
        10_000,
      );
      await waitFor(
        'the limited token to hear the hostname drift',
        () => (driftHeard(limited).some((i) => i.target === '/etc/hostname') ? true : undefined),
        10_000,
      );
      // Anything still in flight arrives before the verdict.
      await admin.call('daemon.status');
      await limited.call('daemon.status');

      const heard = driftHeard(limited);
      expect(heard.map((i) => i.target)).toEqual(expect.arrayContaining(['/etc/hostname', 'main.cf:myhostname']));
      for (const item of heard) expect(item.scope, JSON.stringify(item)).toMatch(/^net\./);
      expect(JSON.stringify(limited.messages)).not.toContain('hand-set-relay');
      // The limited token's own reads report its scope's drift, nothing of mail.smart-host.
      for (const answer of [own, check]) {
        const text = JSON.stringify(answer);
        expect(text).toContain('drifted.example.test');
        expect(text).not.toContain('hand-set-relay');
        expect(text).not.toContain('relayhost');
      }
    } finally {
      limited.terminate();
      admin.terminate();
    }
  });
});
