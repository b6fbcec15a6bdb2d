/**
 * Attack (issue 9, item 6): a reader grows the daemon's memory through event subscriptions.
 * It opens a WebSocket, asks for 1,000 subscriptions that each replay every kept event
 * (since 0), and never reads; then it holds 32 live subscriptions without reading while
 * changes keep coming. The daemon's RSS must stay bounded, the abuse is refused or closed with
 * the documented code (-32008; close 4008), and a subscriber closed for being too far behind
 * resumes with `since` and gets every event exactly once. Real scoped, real WebSockets.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeEvents as makeEventsOf, parsedMessages } from '../helpers/events.js';
import { ErrorCodes } from '../helpers/expect.js';
import { rssBytes, scoped, type Scoped, sleep, WsClient } from '../helpers/scoped.js';

const BUSY = ErrorCodes.Busy;
/** Events made before the attack: what each `since: 0` subscription would replay. */
const EVENTS = 500;
const SUBSCRIBES = 1_000;
/** The default maxSubscriptionsPerConnection. */
const MAX_SUBS = 32;
/**
 * How much the daemon's RSS may grow during an attack. The daemon keeps at most one page of
 * replayed events per subscription (32 pages of 100 small events) and closes a connection with
 * more than wsMaxBufferedBytes (1 MiB) unsent; the rest is the garbage collector's slack. The
 * code before the fix buffered every replay at once: 1,000 × 500 events × ~250 bytes, hundreds
 * of MiB.
 */
const RSS_GROWTH = 64 * 1024 * 1024;

describe('events.subscribe cannot grow the daemon without bound', { timeout: 120_000 }, () => {
  let d: Scoped;
  let reader: string;
  let changes = 0;

  /** `n` more changes of net.hostname (each makes events). */
  async function makeEvents(n: number): Promise<void> {
    await makeEventsOf(d, n, changes);
    changes += n;
  }

  /** Sample the daemon's RSS for `ms`; the largest seen. */
  async function peakRss(ms: number): Promise<number> {
    let peak = rssBytes(d.pid);
    for (const end = Date.now() + ms; Date.now() < end; ) {
      await sleep(100);
      peak = Math.max(peak, rssBytes(d.pid));
    }
    return peak;
  }

  beforeAll(async () => {
    d = await scoped();
    reader = (await d.ok<{ token: string }>('token.create', { role: 'reader', name: 'watcher' })).token;
    await makeEvents(EVENTS);
  });
  afterAll(() => d?.close(), 60_000);

  it(`${SUBSCRIBES} subscriptions with since 0 on a socket that never reads: refused beyond ${MAX_SUBS} with -32008, and the RSS stays bounded`, async () => {
    await sleep(500);
    const before = rssBytes(d.pid);
    const attacker = await WsClient.open(d.port!, reader);
    attacker.ws.pause();
    for (let i = 0; i < SUBSCRIBES; i++)
      attacker.send(JSON.stringify({ jsonrpc: '2.0', id: i, method: 'events.subscribe', params: { topics: ['*'], since: 0 } }));
    const peak = await peakRss(6_000);
    expect(peak - before, `RSS grew from ${before >> 20} MiB to ${peak >> 20} MiB`).toBeLessThan(RSS_GROWTH);

    // What the attacker got once it reads: at most 32 subscriptions, each replaying every event once; the rest refused.
    attacker.ws.resume();
    const answers = () => parsedMessages(attacker).filter((m) => m.id !== undefined);
    for (const end = Date.now() + 30_000; answers().length < SUBSCRIBES && !attacker.isClosed && Date.now() < end; ) await sleep(100);
    const accepted = answers().filter((m) => m.result);
    const refused = answers().filter((m) => m.error);
    expect(accepted.length).toBeLessThanOrEqual(MAX_SUBS);
    for (const r of refused) expect(r.error).toEqual({ code: BUSY, message: expect.stringMatching(/at most 32 subscriptions.*maxSubscriptionsPerConnection/) });
    if (attacker.isClosed) expect(await attacker.closed).toMatchObject({ code: 4008 });
    else expect(accepted.length + refused.length).toBe(SUBSCRIBES);
    for (const a of accepted) {
      const revisions = parsedMessages(attacker)
        .filter((m) => m.params?.subscription === a.result!.subscription)
        .map((m) => m.params!.revision);
      expect(revisions, `the replay of ${a.result!.subscription}`).toEqual(Array.from({ length: a.result!.revision }, (_, i) => i + 1));
    }
    attacker.terminate();
  });

  it('a subscriber that stops reading is closed with 4008 once too far behind, and resumes with since: every event exactly once', async () => {
    await sleep(500);
    const before = rssBytes(d.pid);
    const lagging = await WsClient.open(d.port!, reader);
    const subs: { subscription: string; revision: number }[] = [];
    for (let i = 0; i < MAX_SUBS; i++)
      subs.push(((await lagging.call('events.subscribe', { topics: ['*'] })) as { result: { subscription: string; revision: number } }).result);
    const from = subs[0]!.revision;
    lagging.ws.pause();
    // Every change now reaches the lagging socket 32 times; the kernel's buffers fill first, then the daemon's.
    const peak = Math.max(await (async () => (await makeEvents(800), rssBytes(d.pid)))(), await peakRss(1_000));
    expect(peak - before, `RSS grew from ${before >> 20} MiB to ${peak >> 20} MiB`).toBeLessThan(RSS_GROWTH);

    lagging.ws.resume();
    const closed = await Promise.race([lagging.closed, sleep(20_000).then(() => 'still open' as const)]);
    expect(closed).toEqual({ code: 4008, reason: expect.stringMatching(/too far behind.*since/) });
    // Everything sent before the close arrives in order; the subscriber resumes from the last event it got.
    const first = parsedMessages(lagging)
      .filter((m) => m.params?.subscription === subs[0]!.subscription)
      .map((m) => m.params!.revision);
    const last = first.at(-1) ?? from;

    const resumed = await WsClient.open(d.port!, reader);
    const sub = (await resumed.call('events.subscribe', { topics: ['*'], since: last })) as {
      result: { subscription: string; revision: number; gap: boolean };
    };
    expect(sub.result.gap).toBe(false);
    await makeEvents(5);
    // The bus's revision now, from one more subscription's answer.
    const end = ((await resumed.call('events.subscribe', { topics: ['*'] })) as { result: { revision: number } }).result.revision;
    for (const stop = Date.now() + 10_000; !parsedMessages(resumed).some((m) => m.params?.revision === end) && Date.now() < stop; ) await sleep(50);
    const second = parsedMessages(resumed)
      .filter((m) => m.params?.subscription === sub.result.subscription)
      .map((m) => m.params!.revision);
    expect([...first, ...second]).toEqual(Array.from({ length: end - from }, (_, i) => from + 1 + i));
    resumed.terminate();
  });
});
