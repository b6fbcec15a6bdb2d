/**
 * Change events over WebSocket against a real scoped: a subscriber that goes away, misses
 * changes and comes back with `since` gets exactly what it missed and then live events, by
 * hand (raw JSON-RPC) and through the client's built-in reconnect and resume.
 */
import { Client, HttpTransport, WsTransport } from '@scoped/client';
import type { EventMessage } from '@scoped/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Scoped, WsClient, scoped } from './helpers/scoped.js';

const hostnames = (events: readonly EventMessage[]) => events.map((e) => (e.data as { value?: unknown }).value);

/** The event notifications a raw connection received, in order. */
function eventsOn(conn: WsClient): EventMessage[] {
  return conn.messages
    .map((m) => JSON.parse(m) as { method?: string; params?: EventMessage })
    .filter((m) => m.method === 'event')
    .map((m) => m.params!);
}

async function until(what: string, ok: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('events over WebSocket', () => {
  let d: Scoped;
  let token: string;
  let local: Client;
  const set = (name: string) => local.call('scope.set', { name: 'net.hostname', value: name });

  beforeAll(async () => {
    d = await scoped({ config: { eventKeep: 50 } });
    token = d.token();
    local = new Client(new HttpTransport({ socket: d.socket }));
  });
  afterAll(async () => {
    await local?.close();
    await d?.close();
  });

  it('answers subscribe over HTTP with a clear error: events need a WebSocket', async () => {
    await expect(local.call('events.subscribe', { topics: ['scope.changed'] })).rejects.toMatchObject({
      code: -32600,
      message: expect.stringMatching(/WebSocket/),
    });
  });

  it('replays exactly the three changes a subscriber missed, then live ones, with no duplicate', async () => {
    const first = await WsClient.open(d.port!, token);
    const sub = (await first.request(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'events.subscribe', params: { topics: ['scope.changed'] } }))) as {
      result: { subscription: string; revision: number; gap: boolean };
    };
    expect(sub.result).toMatchObject({ subscription: expect.any(String), gap: false });

    expect((await d.cpcmd(['scope:set', 'net.hostname', 'one.example.com'])).code).toBe(0);
    await until('the first event', () => eventsOn(first).length === 1);
    const seen = eventsOn(first)[0]!;
    expect(seen).toMatchObject({
      subscription: sub.result.subscription,
      topic: 'scope.changed',
      data: { scope: 'net.hostname', value: 'one.example.com', action: 'scope.set' },
    });
    expect(seen.revision).toBeGreaterThan(sub.result.revision);
    await first.close();

    // Missed while away: three changes (and other topics that this subscriber does not want).
    for (const name of ['two.example.com', 'three.example.com', 'four.example.com']) expect((await d.cpcmd(['scope:set', 'net.hostname', name])).code).toBe(0);

    const again = await WsClient.open(d.port!, token);
    try {
      again.ws.send(JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'events.subscribe', params: { topics: ['scope.*'], since: seen.revision } }));
      await again.waitForCount(4);
      const messages = again.messages.map((m) => JSON.parse(m) as { id?: number; result?: { subscription: string; gap: boolean } });
      // The missed events come first, then the answer, all on the new subscription.
      const answer = messages.find((m) => m.id === 2)!;
      expect(answer.result).toMatchObject({ gap: false });
      const missed = eventsOn(again);
      expect(hostnames(missed)).toEqual(['two.example.com', 'three.example.com', 'four.example.com']);
      expect(missed.every((e) => e.subscription === answer.result!.subscription && e.topic === 'scope.changed')).toBe(true);

      // Then live ones, each once, revisions rising.
      await set('five.example.com');
      await until('the live event', () => eventsOn(again).length === 4);
      const all = eventsOn(again);
      expect(hostnames(all)).toEqual(['two.example.com', 'three.example.com', 'four.example.com', 'five.example.com']);
      const revisions = all.map((e) => e.revision);
      expect(revisions).toEqual([...revisions].sort((a, b) => a - b));
      expect(new Set(revisions).size).toBe(4);
      expect(revisions[0]).toBeGreaterThan(seen.revision);
    } finally {
      await again.close();
    }
  });

  it('keeps events across a restart, and says gap when the ones asked for were rotated out', async () => {
    // 30 sets make 60 events (scope.changed and unit.converged each) with 50 kept.
    for (let i = 0; i < 30; i++) await set(`churn-${i % 2}.example.com`);
    await local.close();
    expect((await d.signal('SIGTERM')).code).toBe(0);
    await d.start();
    local = new Client(new HttpTransport({ socket: d.socket }));

    const conn = await WsClient.open(d.port!, token);
    try {
      conn.ws.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'events.subscribe', params: { topics: ['*'], since: 1 } }));
      await conn.waitForCount(51);
      const answer = conn.messages.map((m) => JSON.parse(m) as { id?: number; result?: { gap: boolean; revision: number } }).find((m) => m.id === 1);
      expect(answer?.result).toMatchObject({ gap: true });
      const kept = eventsOn(conn);
      expect(kept).toHaveLength(50);
      expect(kept.at(-1)!.revision).toBe(answer!.result!.revision);
      expect(hostnames(kept.filter((e) => e.topic === 'scope.changed')).at(-1)).toBe('churn-1.example.com');
    } finally {
      await conn.close();
    }
  });

  it('the client reconnects by itself and resumes from the last event it delivered', async () => {
    const client = new Client(new WsTransport(`ws://127.0.0.1:${d.port}/rpc`, token, { minDelayMs: 1_500 }));
    const got: EventMessage[] = [];
    const resumed: number[] = [];
    const sub = await client.subscribe(['scope.changed'], (e) => got.push(e), { onResume: (rev) => resumed.push(rev) });
    try {
      await set('before.example.com');
      await until('the event before the drop', () => got.length === 1);

      // The network drops; three changes happen before the client is back (it waits 1.5 s).
      (client as unknown as { transport: WsTransport }).transport.drop();
      for (const name of ['missed-a.example.com', 'missed-b.example.com', 'missed-c.example.com']) await set(name);
      expect(got).toHaveLength(1);

      await until('the three missed events', () => got.length === 4);
      expect(resumed).toHaveLength(1);
      await set('after.example.com');
      await until('the live event after the resume', () => got.length === 5);
      expect(hostnames(got)).toEqual(['before.example.com', 'missed-a.example.com', 'missed-b.example.com', 'missed-c.example.com', 'after.example.com']);
      expect(new Set(got.map((e) => e.revision)).size).toBe(5);
      expect(sub.revision).toBe(got.at(-1)!.revision);
    } finally {
      await sub.close();
      await client.close();
    }
  });

  it('a token limited to some scopes hears only about those and its own jobs, and cannot end or read what is not its own', async () => {
    const limited = await local.call('token.create', { role: 'operator', scopes: ['net.*'], name: 'net-only' });
    const mine = new Client(new WsTransport(`ws://127.0.0.1:${d.port}/rpc`, limited.token));
    const admin = new Client(new WsTransport(`ws://127.0.0.1:${d.port}/rpc`, token));
    const heard: EventMessage[] = [];
    const adminHeard: EventMessage[] = [];
    const adminSub = await admin.subscribe(['scope.changed'], (e) => adminHeard.push(e));
    const sub = await mine.subscribe(['*'], (e) => heard.push(e));
    try {
      // Not net.*: a mail var through cp.bootstrapper, and a job of the admin's.
      await local.call('var.set', { name: 'postfix_add_sasl_auth_header', value: true, converge: false });
      const adminJob = await local.call('scope.set', { name: 'net.hostname', value: 'admin-job.example.com', async: true });
      expect(adminJob).toMatchObject({ status: 'queued' });
      await until('the hostname change', () => heard.some((e) => e.topic === 'scope.changed'));
      // Its own job: progress and done reach it.
      const own = await mine.call('scope.set', { name: 'net.hostname', value: 'own-job.example.com', async: true });
      await until('its own job to end', () => heard.some((e) => e.topic === 'job.done'));
      const scopes = heard.filter((e) => e.topic === 'scope.changed').map((e) => (e.data as { scope: string }).scope);
      expect(new Set(scopes)).toEqual(new Set(['net.hostname']));
      const jobs = heard.filter((e) => e.topic.startsWith('job.')).map((e) => (e.data as { job: string }).job);
      expect(new Set(jobs)).toEqual(new Set([(own as { job: string }).job]));
      await expect(mine.call('job.get', { id: (adminJob as { job: string }).job })).rejects.toMatchObject({ code: -32009 });
      await expect(mine.call('job.cancel', { id: (adminJob as { job: string }).job })).rejects.toMatchObject({ code: -32009 });
      // Someone else's subscription is not its to end.
      expect(await mine.call('events.unsubscribe', { subscription: adminSub.id })).toEqual({ ok: false });
      const before = adminHeard.length;
      await set('after-unsubscribe.example.com');
      await until('the admin to still hear changes', () => adminHeard.length > before);
    } finally {
      await sub.close();
      await adminSub.close();
      await mine.close();
      await admin.close();
    }
  });

  it('refuses a subscription to a topic that is not a glob, and an unauthenticated one', async () => {
    const conn = await WsClient.open(d.port!, token);
    try {
      const bad = (await conn.request(
        JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'events.subscribe', params: { topics: ['scope changed\n'] } }),
      )) as object;
      expect(bad).toMatchObject({ id: 1, error: { code: -32602 } });
    } finally {
      await conn.close();
    }
    await expect(WsClient.open(d.port!, 'not-the-token')).rejects.toMatchObject({ status: 401 });
  });
});
