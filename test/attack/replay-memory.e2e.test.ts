/**
 * Attack (issue 9, second pass, finding A): readers hold the daemon's memory through replays
 * that never finish. Three reader tokens open 32 WebSockets each (from three addresses), ask on
 * every one for 32 subscriptions that replay every kept event (since 0), and stop reading.
 * Each replay used to hold a page of events while it waited for its reader, 96 × 32 pages at
 * once, and kept them as long as the sockets stayed open. The daemon's RSS must stay bounded,
 * the stalled connections are closed with 4008 (resume with since), an admin's call is
 * answered meanwhile, and a reader that does read still gets every event exactly once. Real
 * scoped on its default limits, real WebSockets.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EventMessage, makeEvents, parsedMessages } from '../helpers/events.js';
import { freshPeer, httpPost, rssBytes, scoped, type Scoped, sleep, WsClient } from '../helpers/scoped.js';

/** Changes made before the attack; each makes a few events, all of which a `since: 0` subscription replays. */
const CHANGES = 2_000;
const TOKENS = 3;
/** WebSockets per token (the default maxConnectionsPerToken) and subscriptions per WebSocket (maxSubscriptionsPerConnection). */
const SOCKETS = 32;
const SUBS = 32;
/** The default wsStallTimeoutMs: a connection whose reader makes no progress for this long is closed. */
const STALL_MS = 10_000;
/**
 * How much the daemon's RSS may grow during the attack. The daemon replays at most 8
 * subscriptions at once (maxReplays), each holding one page (at most 100 events and 256 KiB of
 * them), and one replay per connection sends only while less than a quarter of
 * maxWsBufferedBytes (256 KiB) waits unsent: about 8 × 256 KiB of pages plus 96 × 256 KiB of
 * send buffers, some 26 MiB, and the rest is the garbage collector's slack. The code before the
 * fix held a page for every subscription: 96 × 32 × 100 events, hundreds of MiB.
 */
const RSS_GROWTH = 96 * 1024 * 1024;

describe('replays a reader never reads cannot hold the daemon’s memory', { timeout: 150_000 }, () => {
  let d: Scoped;
  const readers: string[] = [];
  let honest: string;

  beforeAll(async () => {
    d = await scoped();
    for (let t = 0; t < TOKENS; t++) readers.push((await d.ok<{ token: string }>('token.create', { role: 'reader', name: `replayer-${t}` })).token);
    honest = (await d.ok<{ token: string }>('token.create', { role: 'reader', name: 'honest' })).token;
    await makeEvents(d, CHANGES);
  }, 120_000);

  it(`${TOKENS * SOCKETS} paused WebSockets × ${SUBS} subscriptions since 0: RSS bounded, stalled ones closed with 4008, an admin answered, a reading subscriber gets every event once`, async () => {
    await sleep(500);
    const before = rssBytes(d.pid);
    const attackers: WsClient[] = [];
    for (const token of readers) {
      const peer = freshPeer();
      for (let i = 0; i < SOCKETS; i++) {
        const c = await WsClient.open(d.port!, token, { localAddress: peer });
        for (let s = 0; s < SUBS; s++) c.send(JSON.stringify({ jsonrpc: '2.0', id: s, method: 'events.subscribe', params: { topics: ['*'], since: 0 } }));
        c.ws.pause();
        attackers.push(c);
      }
    }
    try {
      // The peak while the attack runs, with an admin calling now and then (answered within a few seconds each time).
      let peak = rssBytes(d.pid);
      const started = Date.now();
      let admin = 0;
      while (Date.now() - started < STALL_MS + 5_000) {
        await sleep(250);
        peak = Math.max(peak, rssBytes(d.pid));
        if (Date.now() - started > admin * 3_000) {
          admin++;
          const r = await httpPost({ port: d.port! }, JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'daemon.status', params: {} }), {
            token: d.token(),
            timeoutMs: 5_000,
          });
          expect(r.status, r.text).toBe(200);
        }
      }
      expect(peak - before, `RSS grew from ${before >> 20} MiB to ${peak >> 20} MiB`).toBeLessThan(RSS_GROWTH);

      // A reader that reads, subscribing while the attack goes on, gets every kept event once, then live ones.
      const reading = await WsClient.open(d.port!, honest);
      reading.send(JSON.stringify({ jsonrpc: '2.0', id: 'honest', method: 'events.subscribe', params: { topics: ['*'], since: 0 } }));
      // Its replay may wait its turn behind the stalled ones, each closed within wsStallTimeoutMs.
      const sub = JSON.parse(await reading.waitFor((m) => (JSON.parse(m) as EventMessage).id === 'honest', 3 * STALL_MS)) as {
        result: { subscription: string; revision: number; gap: boolean };
      };
      const got = parsedMessages(reading)
        .filter((m) => m.params?.subscription === sub.result!.subscription)
        .map((m) => m.params!.revision);
      expect(got).toEqual(Array.from({ length: sub.result!.revision }, (_, i) => i + 1));
      reading.terminate();

      // The attacker reads at last: what was sent arrives, then the close of every connection that stalled.
      for (const c of attackers) c.ws.resume();
      await sleep(3_000);
      const closed = attackers.filter((c) => c.isClosed);
      expect(closed.length, 'connections closed for making no progress').toBeGreaterThanOrEqual(8);
      for (const c of closed) expect(await c.closed).toEqual({ code: 4008, reason: expect.stringMatching(/resubscribe with since/) });
    } finally {
      for (const c of attackers) c.terminate();
    }
  });
  afterAll(() => d?.close(), 60_000);
});
