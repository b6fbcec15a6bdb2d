/**
 * Attacks on the Scope GUI's session table with plain HTTP and WebSocket clients:
 * - a reader's logins push the admin's session (and its open WebSocket) out of the 1,024 kept;
 * - a reader's gui.login calls push the admin's unused login code out of the 1,024 kept;
 * - a session mints a new one with gui.login, which outlives its logout and its TTL.
 */
import { type IncomingHttpHeaders, request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Scoped, WsClient, scoped, sleep } from '../helpers/scoped.js';

function http(
  port: number,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<{ status: number; headers: IncomingHttpHeaders; text: string }> {
  const h: Record<string, string | number> = { ...headers };
  if (body !== undefined) h['content-length'] = Buffer.byteLength(body);
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers: h, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('attack: the Scope GUI session table', () => {
  let d: Scoped;
  let origin: string;
  /** A session as the page holds it: the cookie, and the key it sends with it. */
  type Cred = { cookie: string; key: string };
  const login = async (credential: { code: string } | { token: string }): Promise<Cred> => {
    const r = await http(d.port!, 'POST', '/session', { origin, 'content-type': 'application/json' }, JSON.stringify(credential));
    expect(r.status, r.text).toBe(200);
    return { cookie: (r.headers['set-cookie'] as string[])[0]!.split(';')[0]!, key: (JSON.parse(r.text) as { key: string }).key };
  };
  const sess = (c: Cred) => ({ cookie: c.cookie, 'x-scoped-key': c.key });
  const pageWs = (c: Cred) => WsClient.open(d.port!, undefined, { headers: { cookie: c.cookie, origin }, protocols: [`scoped-key.${c.key}`] });
  const codeOf = (url: string) => url.slice(url.indexOf('#login=') + '#login='.length);
  const whoIs = async (c: Cred) => (await http(d.port!, 'GET', '/session', sess(c))).status;

  beforeAll(async () => {
    d = await scoped({ config: { guiSessionTtlMs: 4_000 } });
    origin = `http://127.0.0.1:${d.port}`;
  });
  afterAll(() => d?.close());

  it("a reader's logins do not end the admin's session", async () => {
    const admin = await login({ code: codeOf((await d.ok<{ url: string }>('gui.login')).url) });
    const ws = await pageWs(admin);
    const reader = await d.ok('token.create', { role: 'reader', name: 'flooder' });
    for (let i = 0; i < 1_030; i++) await login({ token: reader.token });
    const adminStatus = await whoIs(admin);
    const closed = ws.isClosed;
    ws.ws.close();
    expect({ adminStatus, closed }).toEqual({ adminStatus: 200, closed: false });
  }, 120_000);

  it("a reader's gui.login calls do not spoil the admin's pending login address", async () => {
    const code = codeOf((await d.ok<{ url: string }>('gui.login')).url);
    const reader = await d.ok('token.create', { role: 'reader', name: 'code-flooder' });
    const ws = await d.ws(reader.token);
    for (let i = 0; i < 1_030; i++) await ws.request(JSON.stringify({ jsonrpc: '2.0', id: i, method: 'gui.login', params: {} }));
    ws.ws.close();
    const r = await http(d.port!, 'POST', '/session', { origin, 'content-type': 'application/json' }, JSON.stringify({ code }));
    expect(r.status, r.text).toBe(200);
  }, 120_000);

  it('a session cannot outlive its logout or its TTL by minting another one with gui.login', async () => {
    const first = await login({ code: codeOf((await d.ok<{ url: string }>('gui.login')).url) });
    const ws = await pageWs(first);
    const minted = (await ws.request(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'gui.login', params: {} }))) as { result?: { url: string } };
    ws.ws.close();
    let second: Cred | undefined;
    if (minted.result) second = await login({ code: codeOf(minted.result.url) });
    // The user logs out of the first session.
    await http(d.port!, 'DELETE', '/session', { ...sess(first), origin });
    expect(await whoIs(first)).toBe(401);
    // The minted one should have ended with it (or never been made).
    const afterLogout = second === undefined ? 401 : await whoIs(second);
    expect(afterLogout).toBe(401);
  });

  it('a chain of minted sessions does not outlive guiSessionTtlMs', async () => {
    let cookie = await login({ code: codeOf((await d.ok<{ url: string }>('gui.login')).url) });
    const start = Date.now();
    // Each 2 s (half the TTL), the current session mints the next one; bounded to 4 rounds (8 s, twice the TTL).
    for (let round = 0; round < 4; round++) {
      await sleep(2_000);
      const ws = await pageWs(cookie).catch(() => null);
      if (ws === null) break;
      const minted = (await ws.request(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'gui.login', params: {} }))) as { result?: { url: string } };
      ws.ws.close();
      if (!minted.result) break;
      cookie = await login({ code: codeOf(minted.result.url) });
    }
    const alive = (await whoIs(cookie)) === 200;
    expect({ aliveAfterMs: alive ? Date.now() - start : null }).toEqual({ aliveAfterMs: null });
  }, 30_000);
});
