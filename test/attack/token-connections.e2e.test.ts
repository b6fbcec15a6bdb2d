/**
 * Attack (issue 9, second pass, finding B): token holders fill the TCP connection cap. A reader
 * opens 300 authenticated WebSockets spread over three addresses, so that no per-address limit
 * stops it, answers pings and keeps them open; then several non-admin tokens together try to
 * take every slot. Meanwhile an admin calls over HTTP, over a WebSocket and through cpcmd --url.
 * Real scoped on its default limits, real sockets.
 */
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCodes, expectExit } from '../helpers/expect.js';
import { cpcmd, freshPeer, httpPost, scoped, type Scoped, sleep, WsClient } from '../helpers/scoped.js';

const BUSY = ErrorCodes.Busy;
/** The default maxConnections, maxConnectionsPerToken and adminReservedConnections. */
const MAX_CONNECTIONS = 256;
const PER_TOKEN = 32;
const ADMIN_RESERVE = 32;

/** Open `n` WebSockets with a token, round robin over `peers`; the ones let in and the refusals. */
async function flood(port: number, token: string, n: number, peers: readonly string[]) {
  const held: WsClient[] = [];
  const refused: { status?: number; body?: string }[] = [];
  for (let i = 0; i < n; i++) {
    await WsClient.open(port, token, { localAddress: peers[i % peers.length]!, handshakeTimeout: 5_000 }).then(
      (c) => void held.push(c),
      (err: { status?: number; body?: string }) => void refused.push(err),
    );
  }
  return { held, refused };
}

describe('token holders cannot fill the connection cap', { timeout: 120_000 }, () => {
  let d: Scoped;
  let admin: string;
  const peers = [freshPeer(), freshPeer(), freshPeer()];

  beforeAll(async () => {
    d = await scoped();
    admin = d.token();
  });
  afterAll(() => d?.close(), 60_000);

  /** The admin's three ways in, each answered while the flood holds its connections. */
  async function adminGetsIn(): Promise<void> {
    const r = await httpPost({ port: d.port! }, JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'daemon.status', params: {} }), {
      token: admin,
      timeoutMs: 5_000,
    });
    expect(r.status, r.text).toBe(200);
    expect(JSON.parse(r.text)).toHaveProperty('result.pid', d.pid);
    const ws = await WsClient.open(d.port!, admin, { handshakeTimeout: 5_000 }).catch((err: { status?: number; body?: string }) => err);
    expect(ws, `the admin's WebSocket: ${JSON.stringify(ws)}`).toBeInstanceOf(WsClient);
    expect(await (ws as WsClient).call('scope.get', { name: 'net.hostname' })).toHaveProperty('result');
    (ws as WsClient).terminate();
    const c = await cpcmd(['daemon:status'], { url: d.url, token: admin });
    expectExit(c, 'ok');
  }

  it(`a reader's 300 WebSockets over three addresses: at most ${PER_TOKEN} let in, the rest refused 503 naming maxConnectionsPerToken; the admin gets in`, async () => {
    const reader = (await d.ok<{ token: string }>('token.create', { role: 'reader', name: 'hoarder' })).token;
    const { held, refused } = await flood(d.port!, reader, 300, peers);
    try {
      expect(held.length).toBeLessThanOrEqual(PER_TOKEN);
      expect(refused.length).toBeGreaterThanOrEqual(300 - PER_TOKEN);
      for (const r of refused) {
        expect(r.status).toBe(503);
        expect(JSON.parse(r.body!)).toMatchObject({ error: { code: BUSY, message: expect.stringMatching(/at most 32 .*one token.*maxConnectionsPerToken/) } });
      }
      await adminGetsIn();
      // The reader's own connections still work.
      expect(await held[0]!.call('daemon.status')).toHaveProperty('result');
    } finally {
      for (const c of held) c.terminate();
    }
  });

  it(`four reader tokens × ${PER_TOKEN} WebSockets from 127.0.0.1 itself: the admin on 127.0.0.1 still gets in (the per-address limit counts only connections not yet authenticated)`, async () => {
    const held: WsClient[] = [];
    try {
      for (let t = 0; t < 4; t++) {
        const token = (await d.ok<{ token: string }>('token.create', { role: 'reader', name: `local-${t}` })).token;
        const r = await flood(d.port!, token, PER_TOKEN, ['127.0.0.1']);
        expect(r.refused).toEqual([]);
        held.push(...r.held);
      }
      // 128 authenticated connections from 127.0.0.1: as many as maxConnectionsPerPeer.
      expect(held.length).toBe(4 * PER_TOKEN);
      await adminGetsIn();
    } finally {
      for (const c of held) c.terminate();
    }
  });

  it(`several non-admin tokens together: at most ${MAX_CONNECTIONS - ADMIN_RESERVE} let in, the last ${ADMIN_RESERVE} slots kept for admins`, async () => {
    const tokens: string[] = [];
    for (let t = 0; t < MAX_CONNECTIONS / PER_TOKEN; t++)
      tokens.push((await d.ok<{ token: string }>('token.create', { role: t % 2 ? 'operator' : 'reader', name: `crowd-${t}` })).token);
    const held: WsClient[] = [];
    const refused: { status?: number; body?: string }[] = [];
    try {
      for (const token of tokens) {
        const r = await flood(d.port!, token, PER_TOKEN, peers);
        held.push(...r.held);
        refused.push(...r.refused);
      }
      expect(held.length).toBeLessThanOrEqual(MAX_CONNECTIONS - ADMIN_RESERVE);
      expect(refused.length).toBeGreaterThan(0);
      for (const r of refused) {
        expect(r.status).toBe(503);
        expect(JSON.parse(r.body!)).toMatchObject({ error: { code: BUSY, message: expect.stringMatching(/adminReservedConnections/) } });
      }
      await adminGetsIn();
    } finally {
      for (const c of held) c.terminate();
    }
  });
});

describe('a socket refused at the cap cannot be kept by trickling', { timeout: 30_000 }, () => {
  it('with the cap full, a socket that sends a byte every 300 ms is closed within about a second, not kept while it trickles', async () => {
    await using d = await scoped({ args: ['--max-connections', '4'] });
    const held: WsClient[] = [];
    for (let i = 0; i < 4; i++) held.push(await WsClient.open(d.port!, d.token()));
    const socket = connect(d.port!, '127.0.0.1');
    try {
      await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
      const opened = Date.now();
      const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now() - opened)));
      socket.on('error', () => {});
      const request = 'POST /rpc HTTP/1.1\r\nhost: x\r\n';
      let sent = 0;
      const trickle = setInterval(() => {
        if (!socket.destroyed) socket.write(request[sent++ % request.length]!);
      }, 300);
      const ms = await Promise.race([closed, sleep(8_000).then(() => Infinity)]);
      clearInterval(trickle);
      expect(ms, 'how long the refused socket stayed open while trickling').toBeLessThan(3_000);
    } finally {
      socket.destroy();
      for (const c of held) c.terminate();
      await d.stop();
    }
  });
});
