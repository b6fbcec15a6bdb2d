/**
 * Security end to end, abuse limits from a YAML --config: 429 / -32008 after authFailureLimit
 * wrong tokens, the cap on connections, WebSocket peers that stop answering pings (the body,
 * batch and payload limits are in jsonrpc.e2e.test.ts). Each test has a daemon of its own, so
 * no test inherits another's failed logins or open connections.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCodes, ExitCodes, expectRefused } from '../helpers/expect.js';
import { type Scoped, WsClient, cpcmd, freshPeer, httpPost, scoped, sleep, waitFor } from '../helpers/scoped.js';
import { body } from './shared.js';

describe('abuse limits from a YAML --config', { timeout: 60_000 }, () => {
  let lim: Scoped;
  let admin: string;
  const LIMIT = 3;
  const CAP = 4;
  const PING_MS = 250;

  beforeEach(async () => {
    lim = await scoped({ config: { authFailureLimit: LIMIT, authFailureWindowMs: 60_000, maxConnections: CAP, wsPingIntervalMs: PING_MS } });
    admin = lim.token();
  });
  afterEach(() => lim?.close(), 60_000);

  it(`answers 429 with -32008 after ${LIMIT} wrong tokens from one peer, over HTTP and WebSocket; a valid token and other peers still get in`, async () => {
    const peer = freshPeer();
    const call = body('scope.list');
    for (let i = 0; i < LIMIT; i++) {
      const r = await httpPost({ port: lim.port! }, call, { token: `wrong-token-${i}-xxxxxxxxxxxxxxxx`, localAddress: peer });
      expect(r.status, `attempt ${i + 1}`).toBe(401);
      expect(JSON.parse(r.text)).toMatchObject({ error: { code: ErrorCodes.Unauthorized } });
    }
    for (const auth of [{ token: 'wrong-token-again-xxxxxxxxxxxxxxxx' }, {}]) {
      const r = await httpPost({ port: lim.port! }, call, { ...auth, localAddress: peer });
      expect(r.status).toBe(429);
      expect(JSON.parse(r.text)).toEqual({
        jsonrpc: '2.0',
        id: null,
        error: { code: ErrorCodes.Busy, message: expect.stringMatching(/^Too many failed logins from .*: try again in \d+ s$/) },
      });
    }
    await expect(WsClient.open(lim.port!, 'wrong-token-ws-xxxxxxxxxxxxxxxx', { localAddress: peer })).rejects.toMatchObject({ status: 429 });

    // A valid token from the same address is never locked out.
    const ok = await httpPost({ port: lim.port! }, call, { token: admin, localAddress: peer });
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.text)).toHaveProperty('result');
    const ws = await WsClient.open(lim.port!, admin, { localAddress: peer });
    await ws.close();
    // The limit is per peer address.
    const other = await httpPost({ port: lim.port! }, call, { token: 'wrong-token-other-xxxxxxxxxxxxxxxx', localAddress: freshPeer() });
    expect(other.status).toBe(401);
  });

  it("cpcmd reports the login limit as busy (exit 10) with the daemon's message, over http:// and ws://", async () => {
    // cpcmd connects from 127.0.0.1: use that address's budget up first.
    for (let i = 0; i < LIMIT; i++) await httpPost({ port: lim.port! }, body('scope.list'), { token: `wrong-${i}-xxxxxxxxxxxxxxxxxxxxxx` });
    for (const url of [lim.url, lim.wsUrl]) {
      const r = await cpcmd(['scope:list'], { url, token: 'wrong-token-cpcmd-xxxxxxxxxxxxxxxx' });
      expectRefused(r, 'busy', /Too many failed logins/);
      expect(await cpcmd(['scope:get', 'net.hostname'], { url, token: admin }), url).toMatchObject({ code: ExitCodes.ok });
    }
  });

  it(`caps TCP connections at maxConnections (${CAP}) with a clear refusal, and serves again once one closes`, async () => {
    const open: WsClient[] = [];
    try {
      for (let i = 0; i < CAP; i++) open.push(await WsClient.open(lim.port!, admin));
      for (const c of open) expect(await c.call('daemon.status')).toHaveProperty('result');

      const ws = await WsClient.open(lim.port!, admin).then(
        (c) => (open.push(c), { opened: true }),
        (err: { status?: number; code?: string; message: string }) => ({ status: err.status, error: err.code ?? err.message }),
      );
      expect.soft(ws, 'a WebSocket beyond the cap').toMatchObject({ status: 503 });

      const h = await httpPost({ port: lim.port! }, body('daemon.status'), { token: admin, timeoutMs: 5_000 }).catch((err: NodeJS.ErrnoException) => ({
        status: 0,
        text: '',
        error: err.code ?? err.message,
      }));
      expect
        .soft(h.status === 503 ? JSON.parse(h.text) : h, 'an HTTP request beyond the cap')
        .toMatchObject({ jsonrpc: '2.0', id: null, error: { code: ErrorCodes.Busy, message: expect.stringMatching(/connections/i) } });
      expect.soft(h.status, 'HTTP status beyond the cap').toBe(503);

      const c = await cpcmd(['daemon:status'], { url: lim.url, token: admin });
      expect.soft(c.code, `cpcmd beyond the cap: ${c.stderr}`).toBe(ExitCodes.busy);
      expect.soft(c.stderr).toMatch(/^cpcmd: .*connections/i);
    } finally {
      for (const c of open.splice(0)) c.terminate();
    }
    // Once they are closed, the daemon serves again.
    await waitFor(
      'a connection to be accepted again',
      async () => {
        const r = await httpPost({ port: lim.port! }, body('daemon.status'), { token: admin, timeoutMs: 2_000 }).catch(() => undefined);
        return r?.status === 200 ? r : undefined;
      },
      5_000,
    );
    const again = await WsClient.open(lim.port!, admin);
    expect(await again.call('daemon.status')).toHaveProperty('result');
    again.terminate();
  });

  it(`drops a WebSocket peer that never answers pings (wsPingIntervalMs ${PING_MS}) and keeps one that does`, async () => {
    const polite = await WsClient.open(lim.port!, admin);
    const silent = await WsClient.open(lim.port!, admin, { autoPong: false });
    const opened = Date.now();
    expect(await silent.call('daemon.status')).toHaveProperty('result');
    const closed = await Promise.race([silent.closed, sleep(5_000).then(() => 'still open' as const)]);
    const after = Date.now() - opened;
    expect(closed).toMatchObject({ code: 1006 });
    expect(after).toBeGreaterThanOrEqual(PING_MS);
    expect(after).toBeLessThan(4 * PING_MS + 500);
    // The peer that answers stays, well past several intervals, and is served.
    await sleep(Math.max(0, 6 * PING_MS - (Date.now() - opened)));
    expect(polite.isClosed).toBe(false);
    expect(await polite.call('daemon.status')).toHaveProperty('result');
    // The dropped peer's connection is freed: the cap can be filled again.
    const more: WsClient[] = [];
    try {
      for (let i = 1; i < CAP; i++) more.push(await WsClient.open(lim.port!, admin));
      expect(await more.at(-1)!.call('daemon.status')).toHaveProperty('result');
    } finally {
      for (const c of more) c.terminate();
      polite.terminate();
    }
  });
});
