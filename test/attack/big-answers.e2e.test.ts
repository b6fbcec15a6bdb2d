/**
 * Attack (second pass): a reader batched 100 copies of audit.list {limit: 10000} into one
 * 7 KB request; the daemon built a 361 MB answer (RSS 85 MB -> 2.1 GB), and twelve such requests
 * at once killed it. One answer, a whole batch's, is now bounded by maxResponseBytes: the calls
 * of a batch are answered one after another, and a call whose answer does not fit answers
 * too-large (-32010) in its place. Real scoped over real HTTP; the limit is lowered to its
 * minimum so a small history shows it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCodes } from '../helpers/expect.js';
import { type Scoped, WsClient, httpPost, rssBytes, scoped, sleep } from '../helpers/scoped.js';

const TOO_LARGE = ErrorCodes.TooLarge;
const MAX = 65_536;

describe('answers are bounded in bytes, however the calls are batched', { timeout: 90_000 }, () => {
  let d: Scoped;
  let reader = '';

  beforeAll(async () => {
    d = await scoped({ args: ['--max-response-bytes', String(MAX)] });
    reader = (await d.ok<{ token: string }>('token.create', { role: 'reader' })).token;
    // A history of a few hundred applied changes: one audit.list of it is a few tens of KB.
    const sets = Array.from({ length: 300 }, (_, i) => ({
      jsonrpc: '2.0',
      id: i,
      method: 'scope.set',
      params: { name: 'net.hostname', value: `host-${i}.example.test` },
    }));
    for (let i = 0; i < sets.length; i += 100) await httpPost({ socket: d.socket }, JSON.stringify(sets.slice(i, i + 100)));
  });
  afterAll(() => d?.close(), 60_000);

  it('a batch of 100 audit.list answers at most maxResponseBytes; the calls past it answer too-large, naming the limit', async () => {
    const rssBefore = rssBytes(d.pid);
    const batch = Array.from({ length: 100 }, (_, i) => ({ jsonrpc: '2.0', id: i, method: 'audit.list', params: { limit: 100 } }));
    const r = await httpPost({ port: d.port! }, JSON.stringify(batch), { token: reader });
    expect(r.status).toBe(200);
    expect(Buffer.byteLength(r.text)).toBeLessThanOrEqual(MAX + 100 * 300);
    const answers = JSON.parse(r.text) as { id: number; result?: { entries: unknown[] }; error?: { code: number; message: string } }[];
    expect(answers.map((a) => a.id)).toEqual(batch.map((b) => b.id));
    const full = answers.filter((a) => a.result);
    const refused = answers.filter((a) => a.error);
    expect(full.length, 'at least one answer fits').toBeGreaterThan(0);
    expect(full[0]!.result!.entries).toHaveLength(100);
    expect(refused.length).toBeGreaterThan(90);
    for (const a of refused) expect(a.error).toEqual({ code: TOO_LARGE, message: expect.stringMatching(/maxResponseBytes \(65536 bytes\)/) });
    // Nothing near the old growth: the daemon held one call's answer at a time.
    expect(rssBytes(d.pid) - rssBefore).toBeLessThan(64 * 1024 * 1024);
    // The daemon still answers.
    expect(await d.ok('daemon.status')).toMatchObject({ revision: expect.any(Number) });
  });

  it("once a batch's answer is full, the calls after it are not run: no change is made and then answered too-large", async () => {
    const before = (await d.ok<{ value: string }>('scope.get', { name: 'net.hostname' })).value;
    const batch = [
      { jsonrpc: '2.0', id: 1, method: 'audit.list', params: { limit: 1000 } },
      { jsonrpc: '2.0', id: 2, method: 'scope.set', params: { name: 'net.hostname', value: 'not-run.example.test' } },
    ];
    const answers = JSON.parse((await httpPost({ socket: d.socket }, JSON.stringify(batch))).text) as {
      id: number;
      error?: { code: number; message: string };
    }[];
    expect(answers.map((a) => [a.id, a.error?.code])).toEqual([
      [1, TOO_LARGE],
      [2, TOO_LARGE],
    ]);
    expect(answers[1]!.error!.message).toMatch(/^Not run: this batch's answer already reached maxResponseBytes/);
    expect((await d.ok<{ value: string }>('scope.get', { name: 'net.hostname' })).value).toBe(before);
  });

  it('a single answer over the limit is refused too-large; a smaller limit gets through', async () => {
    const big = await httpPost({ port: d.port! }, JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'audit.list', params: { limit: 1000 } }), { token: reader });
    const small = await httpPost({ port: d.port! }, JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'audit.list', params: { limit: 10 } }), { token: reader });
    const bigAnswer = JSON.parse(big.text) as { result?: { entries: unknown[] }; error?: { code: number } };
    // 300 entries of a few hundred bytes each: over 64 KiB.
    expect(bigAnswer.error?.code ?? `${Buffer.byteLength(big.text)} bytes`).toBe(TOO_LARGE);
    expect(JSON.parse(small.text)).toMatchObject({ id: 2, result: { entries: expect.any(Array) } });
  });
});

describe('a large answer reaches a WebSocket peer that reads', { timeout: 90_000 }, () => {
  /**
   * Twelve times the default maxWsBufferedBytes (1 MiB): more than loopback's kernel buffers
   * take in while the reader looks away (a 3 MiB answer fitted in them), so the rest waits on
   * the daemon's side. maxResponseBytes and maxBatch are raised so that one answer is this large.
   */
  const LARGE = 12 * 1024 * 1024;

  it('a reader gets a 12 MiB answer over its WebSocket without being closed for being too far behind', async () => {
    // A batch of rpc.discover makes the answer; maxBatch is raised so that enough fit in one.
    await using d = await scoped({ args: ['--max-batch', '1000', '--max-response-bytes', String(2 * LARGE)] });
    const reader = (await d.ok<{ token: string }>('token.create', { role: 'reader' })).token;
    const ws = await WsClient.open(d.port!, reader);
    try {
      const one = Buffer.byteLength(JSON.stringify(await ws.call('rpc.discover')));
      const n = Math.ceil(LARGE / one) + 2;
      expect(n, `one rpc.discover is ${one} bytes`).toBeLessThanOrEqual(1000);
      const from = ws.messages.length;
      // The reader looks away for a moment as the answer is sent (a scheduling hiccup, a slow
      // start): more than maxWsBufferedBytes waits on the daemon's side, though nothing was
      // waiting when the answer was sent.
      ws.ws.pause();
      ws.send(JSON.stringify(Array.from({ length: n }, (_, i) => ({ jsonrpc: '2.0', id: i, method: 'rpc.discover', params: {} }))));
      await sleep(1_000);
      ws.ws.resume();
      const text = await ws.waitFor(() => true, 30_000, from);
      expect(Buffer.byteLength(text)).toBeGreaterThanOrEqual(LARGE);
      const answers = JSON.parse(text) as { result?: unknown }[];
      expect(answers).toHaveLength(n);
      expect(answers.every((a) => a.result)).toBe(true);
      expect(ws.isClosed).toBe(false);
      expect(await ws.call('daemon.status')).toHaveProperty('result');
    } finally {
      ws.terminate();
    }
  });
});
