/**
 * Attack (issue 9, attack pass on the connection cap): a revoked token keeps its connections.
 * A reader opens 32 WebSockets and 5 HTTP keep-alive sockets and stays idle (pings are answered
 * by the WebSocket library by itself), so nothing it does would make scoped look at its token
 * again. The admin revokes it with cpcmd token:revoke: every one of those connections must end
 * at once, and their slots must be free for others. Real scoped with a small connection cap
 * (80, of which the last 32 are kept for admins; 37 per token), real sockets.
 */
import { type Socket, connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectExit } from '../helpers/expect.js';
import { scoped, type Scoped, sleep, WsClient } from '../helpers/scoped.js';

const PER_TOKEN = 32;
const KEEP_ALIVE = 5;
/** Room for one token's 32 WebSockets and 5 keep-alives, but not for a second token's 32 beside them. */
const MAX_CONNECTIONS = 80;
/** How long the revoked token's connections may outlive token:revoke. */
const WITHIN_MS = 2_000;

/** An HTTP keep-alive socket that made one authenticated call and then stays open, idle. */
async function keepAlive(port: number, token: string): Promise<{ socket: Socket; closed: Promise<void> }> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'daemon.status', params: {} });
  socket.write(
    `POST /rpc HTTP/1.1\r\nhost: scoped\r\nconnection: keep-alive\r\nauthorization: Bearer ${token}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
  let answer = '';
  await new Promise<void>((resolve, reject) => {
    socket.on('data', (chunk: Buffer) => {
      answer += chunk.toString();
      if (answer.includes('"result"')) resolve();
    });
    socket.once('close', () => reject(new Error(`the keep-alive socket closed before its answer: ${answer}`)));
  });
  expect(answer).toMatch(/^HTTP\/1\.1 200/);
  return { socket, closed };
}

/** Whether `p` settles within `ms`. */
const within = (p: Promise<unknown>, ms: number): Promise<boolean> => Promise.race([p.then(() => true), sleep(ms).then(() => false)]);

describe('a revoked token loses its open connections at once', { timeout: 90_000 }, () => {
  let d: Scoped;

  beforeAll(async () => {
    const perToken = String(PER_TOKEN + KEEP_ALIVE);
    d = await scoped({ args: ['--max-connections', String(MAX_CONNECTIONS), '--max-connections-per-token', perToken] });
  });
  afterAll(() => d?.close(), 60_000);

  it(`a reader's ${PER_TOKEN} idle WebSockets are closed 4401 and its ${KEEP_ALIVE} keep-alive sockets ended within ${WITHIN_MS} ms of token:revoke; the slots are free again`, async () => {
    const reader = (await d.ok<{ token: string }>('token.create', { role: 'reader', name: 'revoked-hoarder' })).token;
    const sockets: WsClient[] = [];
    const http: { socket: Socket; closed: Promise<void> }[] = [];
    const others: WsClient[] = [];
    try {
      for (let i = 0; i < PER_TOKEN; i++) sockets.push(await WsClient.open(d.port!, reader, { handshakeTimeout: 5_000 }));
      for (let i = 0; i < KEEP_ALIVE; i++) http.push(await keepAlive(d.port!, reader));

      const revoke = await d.cpcmd(['token:revoke', 'revoked-hoarder']);
      expectExit(revoke, 'ok');

      const [wsClosed, httpClosed] = await Promise.all([
        within(Promise.all(sockets.map((s) => s.closed)), WITHIN_MS),
        within(Promise.all(http.map((h) => h.closed)), WITHIN_MS),
      ]);
      expect(sockets.filter((s) => !s.isClosed).length, `WebSockets still open ${WITHIN_MS} ms after token:revoke`).toBe(0);
      expect(wsClosed).toBe(true);
      for (const s of sockets) {
        expect(await s.closed).toEqual({ code: 4401, reason: 'token revoked or expired' });
        // It was told why, in JSON-RPC, before the close.
        expect(s.messages.map((m) => JSON.parse(m))).toContainEqual({
          jsonrpc: '2.0',
          id: null,
          error: { code: -32001, message: expect.stringMatching(/revoked or has expired/) },
        });
      }
      expect(http.filter((h) => !h.socket.destroyed).length, `keep-alive sockets still open ${WITHIN_MS} ms after token:revoke`).toBe(0);
      expect(httpClosed).toBe(true);

      // The slots are free: with 80 connections of which 32 are kept for admins, another token's
      // 32 fit only if the revoked token's 37 are gone (the daemon sees them close a moment after the peer).
      await sleep(200);
      const next = (await d.ok<{ token: string }>('token.create', { role: 'reader', name: 'next-reader' })).token;
      for (let i = 0; i < PER_TOKEN; i++) others.push(await WsClient.open(d.port!, next, { handshakeTimeout: 5_000 }));
      expect(await others[0]!.call('daemon.status')).toHaveProperty('result');
    } finally {
      for (const s of [...sockets, ...others]) s.terminate();
      for (const h of http) h.socket.destroy();
    }
  });

  it('an idle WebSocket of a token that expires is closed 4401 at the next ping tick (wsPingIntervalMs 250), not kept', async () => {
    await using e = await scoped({ args: ['--ws-ping-interval-ms', '250'] });
    try {
      const brief = (await e.ok<{ token: string }>('token.create', { role: 'reader', name: 'brief', expires: '1s' })).token;
      const ws = await WsClient.open(e.port!, brief);
      try {
        expect(await within(ws.closed, 3_000), 'the WebSocket closed within 3 s of opening with a token that expires after 1 s').toBe(true);
        expect(await ws.closed).toEqual({ code: 4401, reason: 'token revoked or expired' });
      } finally {
        ws.terminate();
      }
    } finally {
      await e.stop();
    }
  });
});
