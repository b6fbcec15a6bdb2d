/**
 * Attack (issue 9, transports review, item 1): a reader floods one WebSocket with requests and
 * never reads. maxResponseBytes bounds one answer, but the WebSocket used to dispatch every
 * message at once: 500 messages, each a batch of 100 audit.list, built 500 answers of up to
 * maxResponseBytes side by side. Now a WebSocket has at most maxWsRequestsInFlight requests
 * answered at once (the socket is not read meanwhile), and the answers held daemon-wide take
 * their bytes from maxAnswerBytesInFlight, or answer busy. Real scoped, real sockets; the
 * limits are lowered by flag so that a history of a few hundred entries shows it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpPost, rssBytes, scoped, type Scoped, sleep, WsClient } from '../helpers/scoped.js';

/** maxResponseBytes: one batch answer of 100 audit.list over the history below is cut at 1 MiB. */
const MAX_RESPONSE = 1024 * 1024;
/** maxAnswerBytesInFlight: a few answers' worth. */
const POOL = 4 * 1024 * 1024;
const MESSAGES = 500;
/**
 * How much the daemon's RSS may grow while the attacker's messages wait. The daemon now builds
 * at most maxWsRequestsInFlight (8) answers at once, each cut at 1 MiB and all within the 4 MiB
 * pool, and sends the peer at most one answer past the 1 MiB it may leave unread. But each
 * batch still reads and stringifies every one of its 100 audit.list (about 100 × 90 KB) before
 * the cut, and V8 collects that garbage lazily: about 100 MiB of growth measured. Before, all
 * 500 batches were built at once: over 1 GiB measured.
 */
const RSS_GROWTH = 192 * 1024 * 1024;

describe('one WebSocket cannot make the daemon build many answers at once', { timeout: 180_000 }, () => {
  let d: Scoped;
  let admin: string;
  let reader: string;

  beforeAll(async () => {
    d = await scoped({ args: ['--max-response-bytes', String(MAX_RESPONSE), '--max-answer-bytes-in-flight', String(POOL)] });
    admin = d.token();
    reader = (await d.ok<{ token: string }>('token.create', { role: 'reader', name: 'flooder' })).token;
    // A history of a few hundred applied changes: one audit.list of it is tens of KB.
    const sets = Array.from({ length: 300 }, (_, i) => ({
      jsonrpc: '2.0',
      id: i,
      method: 'scope.set',
      params: { name: 'net.hostname', value: `host-${i}.example.test` },
    }));
    for (let i = 0; i < sets.length; i += 50) await httpPost({ socket: d.socket }, JSON.stringify(sets.slice(i, i + 50)));
  });
  afterAll(() => d?.close(), 60_000);

  it(`${MESSAGES} batches of 100 audit.list on a WebSocket that does not read: the RSS stays bounded, the admin is answered, the daemon answers after`, async () => {
    await sleep(500);
    const before = rssBytes(d.pid);
    const attacker = await WsClient.open(d.port!, reader);
    attacker.ws.pause();
    const batch = (m: number) =>
      JSON.stringify(Array.from({ length: 100 }, (_, i) => ({ jsonrpc: '2.0', id: m * 100 + i, method: 'audit.list', params: { limit: 1000 } })));
    for (let m = 0; m < MESSAGES; m++) attacker.send(batch(m));

    let peak = before;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        peak = Math.max(peak, rssBytes(d.pid));
        await sleep(100);
      }
    })();
    try {
      await sleep(1_000);
      // The admin is answered while the flood is on.
      const t0 = Date.now();
      const r = await httpPost({ port: d.port! }, JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'daemon.status', params: {} }), {
        token: admin,
        timeoutMs: 5_000,
      });
      expect(Date.now() - t0).toBeLessThan(5_000);
      expect(JSON.parse(r.text)).toHaveProperty('result.pid', d.pid);
      await sleep(5_000);
    } finally {
      sampling = false;
      await sampler;
      attacker.terminate();
    }
    expect(peak - before, `RSS grew from ${before >> 20} MiB to ${peak >> 20} MiB`).toBeLessThan(RSS_GROWTH);

    // Afterwards the daemon answers normally, the reader included.
    await sleep(500);
    const again = await WsClient.open(d.port!, reader);
    try {
      const a = await again.call('audit.list', { limit: 10 });
      expect(a).toMatchObject({ result: { entries: expect.any(Array) } });
    } finally {
      again.terminate();
    }
    expect(await d.ok('daemon.status')).toMatchObject({ pid: d.pid });
  });

  it('requests beyond the in-flight limit are answered in turn, none lost, on a WebSocket that reads', async () => {
    const ws = await WsClient.open(d.port!, reader);
    try {
      const n = 100;
      for (let i = 0; i < n; i++) ws.send(JSON.stringify({ jsonrpc: '2.0', id: i, method: 'scope.get', params: { name: 'net.hostname' } }));
      const ids = new Set<number>();
      await ws.waitFor(() => {
        for (const m of ws.messages) ids.add((JSON.parse(m) as { id: number }).id);
        return ids.size === n;
      }, 15_000);
      expect(ws.messages.map((m) => JSON.parse(m) as { result?: unknown }).every((m) => m.result)).toBe(true);
    } finally {
      ws.terminate();
    }
  });
});
