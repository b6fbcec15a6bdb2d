/**
 * The Scope GUI's server side, with plain HTTP and WebSocket clients (the browser tests are
 * elsewhere): the page and its assets with their headers, the one-time login address of
 * `cpcmd gui`, the session cookie, the Origin checks, and a cookie-authenticated WebSocket
 * that is what its token is (role, scopes) and ends with it.
 */
import { request } from 'node:http';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCodes, expectExit, expectRefused } from '../helpers/expect.js';
import { type Scoped, WsClient, scoped, sleep, treeDigest } from '../helpers/scoped.js';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  text: string;
}

/** One HTTP request to the daemon's TCP listener, on a connection of its own. */
function http(port: number, method: string, path: string, opts: { headers?: Record<string, string>; body?: string } = {}): Promise<Answer> {
  const headers: Record<string, string | number> = { ...opts.headers };
  if (opts.body !== undefined) headers['content-length'] = Buffer.byteLength(opts.body);
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text: body.toString('utf8') });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** The login address cpcmd gui prints (over the unix socket, or over TCP with a token), and its code. */
async function guiAddress(d: Scoped, token?: string): Promise<{ url: string; code: string }> {
  const r = await d.cpcmd(['gui'], token ? { url: d.url, token } : {});
  expectExit(r, 'ok');
  const url = r.stdout.trim();
  expect(url).toMatch(new RegExp(`^http://127\\.0\\.0\\.1:${d.port}/#login=[\\w-]{43,}$`));
  expect(r.stderr).toMatch(/one-time login address: good once, until \d{4}-/);
  return { url, code: url.slice(url.indexOf('#login=') + '#login='.length) };
}

/** A GUI session as the page holds it. */
interface Cred {
  cookie: string;
  key: string;
}

describe('the Scope GUI: page, login and session (plain HTTP and WebSocket clients)', () => {
  let d: Scoped;
  let origin: string;
  /** POST /session as the page does it. */
  const login = (body: unknown, headers: Record<string, string> = {}) =>
    http(d.port!, 'POST', '/session', { headers: { origin, 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  /** The session a login made: its cookie as the browser sends it back, and the key the page keeps. */
  const cookieOf = (a: Answer): Cred => {
    expect(a.status, a.text).toBe(200);
    const set = a.headers['set-cookie']![0]!;
    return { cookie: set.split(';')[0]!, key: (JSON.parse(a.text) as { key: string }).key };
  };
  /** The headers the page sends with its session: the cookie and the key. */
  const sess = (c: Cred) => ({ cookie: c.cookie, 'x-scoped-key': c.key });
  /** A WebSocket to /rpc as the page opens it: the cookie, the key as its subprotocol, the page's Origin, no Authorization. */
  const pageWs = (c: Cred, from = origin) =>
    WsClient.open(d.port!, undefined, { headers: { cookie: c.cookie, origin: from }, protocols: [`scoped-key.${c.key}`] });
  const call = async (ws: WsClient, method: string, params: Record<string, unknown> = {}) =>
    (await ws.request(JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }))) as { result?: any; error?: { code: number; message: string } };

  beforeAll(async () => {
    d = await scoped();
    origin = `http://127.0.0.1:${d.port}`;
  });
  afterAll(() => d?.close());

  it('serves the page at / with a strict CSP and no inline script, its hashed assets immutable, gzip or brotli as asked', async () => {
    const page = await http(d.port!, 'GET', '/');
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.headers['content-security-policy']).toBe(CSP);
    expect(page.headers['x-content-type-options']).toBe('nosniff');
    expect(page.headers['referrer-policy']).toBe('no-referrer');
    expect(page.headers['cache-control']).toBe('no-store');
    expect(page.headers['content-encoding']).toBeUndefined();
    // Every script is a file of its own: the CSP allows no inline script, and the page needs none.
    const scripts = [...page.text.matchAll(/<script\b[^>]*>/g)].map((m) => m[0]);
    expect(scripts.length).toBeGreaterThan(0);
    for (const s of scripts) expect(s).toMatch(/\ssrc="\/assets\/[\w.-]+\.js"/);
    expect(page.text).not.toMatch(/<script\b[^>]*>\s*[^<\s]/);
    expect(page.text).not.toMatch(/\son[a-z]+=/i);

    const asset = /src="(\/assets\/[\w.-]+\.js)"/.exec(page.text)![1]!;
    const plain = await http(d.port!, 'GET', asset);
    expect(plain.status).toBe(200);
    expect(plain.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(plain.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect(plain.headers['content-security-policy']).toBe(CSP);
    expect(plain.headers['x-content-type-options']).toBe('nosniff');

    const gz = await http(d.port!, 'GET', asset, { headers: { 'accept-encoding': 'gzip, deflate' } });
    expect(gz.headers['content-encoding']).toBe('gzip');
    expect(gz.headers.vary).toBe('Accept-Encoding');
    expect(gunzipSync(gz.body).equals(plain.body)).toBe(true);
    const br = await http(d.port!, 'GET', asset, { headers: { 'accept-encoding': 'gzip, br' } });
    expect(br.headers['content-encoding']).toBe('br');
    expect(brotliDecompressSync(br.body).equals(plain.body)).toBe(true);
    const indexGz = await http(d.port!, 'GET', '/', { headers: { 'accept-encoding': 'gzip' } });
    expect(gunzipSync(indexGz.body).toString()).toBe(page.text);

    // Nothing outside the built assets: no directories, no dot files, no other paths.
    for (const path of ['/assets/..%2f..%2fpackage.json', '/assets/../package.json', '/assets/.vite', '/assets/nope.js']) {
      const r = await http(d.port!, 'GET', path);
      expect(r.status, path).toBe(404);
    }
    // Other paths are the JSON-RPC routes' as before: a token first, then 404.
    expect((await http(d.port!, 'GET', '/index.html')).status).toBe(401);
    const other = await http(d.port!, 'GET', '/index.html', { headers: { authorization: `Bearer ${d.token()}` } });
    expect(other.status).toBe(404);
    expect(other.text).toMatch(/JSON-RPC is served at POST \/rpc, the Scope GUI at \//);
    const post = await http(d.port!, 'POST', '/', { headers: { origin }, body: '' });
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe('GET, HEAD');
  });

  it('trades the code of cpcmd gui for an HttpOnly SameSite=Strict cookie of the caller, once; a reused code is refused', async () => {
    const { code } = await guiAddress(d);
    const first = await login({ code });
    expect(first.status, first.text).toBe(200);
    // The login answers who the session is and the scopes it may see: the page's first screen needs no other call.
    const answered = JSON.parse(first.text) as { name: string; role: string; scopes: string[]; scopeList: { name: string; summary: string }[] };
    expect(answered).toMatchObject({ name: 'unix-socket', role: 'admin', scopes: [] });
    expect(answered.scopeList.map((s) => s.name)).toEqual(expect.arrayContaining(['net.hostname', 'mail.smart-host', 'cp.bootstrapper']));
    const set = first.headers['set-cookie'] as string[];
    expect(set).toHaveLength(1);
    expect(set[0]).toMatch(/^scoped_session=[\w-]{43,}; HttpOnly; SameSite=Strict; Path=\/$/);
    expect(set[0]).not.toContain(code);
    expect(first.headers['content-security-policy']).toBe(CSP);
    const cookie = cookieOf(first);

    const who = await http(d.port!, 'GET', '/session', { headers: sess(cookie) });
    expect(who.status).toBe(200);
    expect(JSON.parse(who.text)).toMatchObject({ name: 'unix-socket', role: 'admin', scopes: [] });
    expect(JSON.parse(who.text).scopeList).toEqual(answered.scopeList);
    expect(who.headers['cache-control']).toBe('no-store');

    const again = await login({ code });
    expect(again.status).toBe(401);
    expect(again.headers['set-cookie']).toBeUndefined();
    expect(JSON.parse(again.text)).toEqual({ error: 'this login address was used or has expired; run cpcmd gui again' });

    const nobody = await http(d.port!, 'GET', '/session');
    expect(nobody.status).toBe(401);
    expect(JSON.parse(nobody.text).error).toMatch(/not logged in: open the address cpcmd gui prints, or paste a token/);
    const forged = await http(d.port!, 'GET', '/session', { headers: { cookie: 'scoped_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' } });
    expect(forged.status).toBe(401);

    // The code and the cookie are in no log line.
    expect(d.stderr()).not.toContain(code);
    expect(d.stderr()).not.toContain(cookie.cookie.split('=')[1]);
    expect(d.stderr()).not.toContain(cookie.key);
  });

  it('takes a pasted token instead of a code; a wrong one is refused without a cookie; bad bodies are refused', async () => {
    const reader = await d.ok('token.create', { role: 'reader', name: 'gui-paste' });
    const ok = await login({ token: reader.token });
    const who = await http(d.port!, 'GET', '/session', { headers: sess(cookieOf(ok)) });
    expect(JSON.parse(who.text)).toMatchObject({ name: 'gui-paste', role: 'reader', scopes: [] });

    const wrong = await login({ token: `${reader.token.slice(0, -4)}AAAA` });
    expect(wrong.status).toBe(401);
    expect(wrong.headers['set-cookie']).toBeUndefined();
    expect(JSON.parse(wrong.text)).toEqual({ error: 'the token is unknown, revoked or expired' });

    for (const body of [{}, { code: 1 }, { code: 'x', token: 'y' }, ['code'], { code: '' }]) {
      const r = await login(body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(JSON.parse(r.text).error).toBe('send {"code": CODE} (from cpcmd gui) or {"token": TOKEN}');
    }
    const form = await http(d.port!, 'POST', '/session', { headers: { origin, 'content-type': 'application/x-www-form-urlencoded' }, body: 'code=x' });
    expect(form.status).toBe(415);
    const huge = await login({ code: 'x'.repeat(5_000) });
    expect(huge.status).toBe(413);
    // The pasted token is in no log line.
    expect(d.stderr()).not.toContain(reader.token);
  });

  it('refuses a login, and a WebSocket, from another Origin (or a login with none); the refused code stays good', async () => {
    const { code } = await guiAddress(d);
    for (const headers of [{ origin: 'http://evil.example' }, { origin: `http://127.0.0.1:${d.port! + 1}` }, { origin: 'null' }]) {
      const r = await login({ code }, headers);
      expect(r.status, headers.origin).toBe(403);
      expect(r.headers['set-cookie']).toBeUndefined();
      expect(JSON.parse(r.text).error).toMatch(/log in from the Scope GUI itself/);
    }
    const bare = await http(d.port!, 'POST', '/session', { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code }) });
    expect(bare.status).toBe(403);
    // None of these used the code.
    const cookie = cookieOf(await login({ code }));

    // The page's socket: with the cookie and its own Origin it opens; from elsewhere it is refused, cookie or token.
    const ws = await pageWs(cookie);
    expect((await call(ws, 'daemon.status')).result.version).toBeTypeOf('string');
    ws.ws.close();
    const foreign = await pageWs(cookie, 'http://evil.example').catch((e: { status?: number; body?: string }) => e);
    expect(foreign).toMatchObject({ status: 403 });
    expect(JSON.parse((foreign as { body: string }).body).error.code).toBe(ErrorCodes.Forbidden);
    const withToken = await WsClient.open(d.port!, d.token(), { headers: { authorization: `Bearer ${d.token()}`, origin: 'http://evil.example' } }).catch(
      (e: { status?: number }) => e,
    );
    expect(withToken).toMatchObject({ status: 403 });
    // A browser page elsewhere cannot POST /rpc either, even holding a token.
    const rpc = await http(d.port!, 'POST', '/rpc', {
      headers: { origin: 'http://evil.example', authorization: `Bearer ${d.token()}`, 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'scope.list', params: {} }),
    });
    expect(rpc.status).toBe(403);
    // Without a cookie or a token the upgrade is refused as before.
    const none = await WsClient.open(d.port!, undefined, { headers: { origin } }).catch((e: { status?: number }) => e);
    expect(none).toMatchObject({ status: 401 });
    const stale = await pageWs({ cookie: 'scoped_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', key: cookie.key }).catch(
      (e: { status?: number; body?: string }) => e,
    );
    expect(stale).toMatchObject({ status: 401 });
    expect(JSON.parse((stale as { body: string }).body).error.message).toMatch(/session has ended; log in again \(cpcmd gui\)/);
  });

  it('the cookie alone is no session (browsers send 127.0.0.1 cookies to every port of it): the key the page keeps must go with it', async () => {
    const mine = cookieOf(await login({ code: (await guiAddress(d)).code }));
    const other = cookieOf(await login({ code: (await guiAddress(d)).code }));
    // The cookie, as another program on a loopback port would see it, without the key: nothing opens.
    expect((await http(d.port!, 'GET', '/session', { headers: { cookie: mine.cookie } })).status).toBe(401);
    const bare = await WsClient.open(d.port!, undefined, { headers: { cookie: mine.cookie, origin } }).catch((e: { status?: number }) => e);
    expect(bare).toMatchObject({ status: 401 });
    // Another session's key does not fit this cookie.
    expect((await http(d.port!, 'GET', '/session', { headers: sess({ cookie: mine.cookie, key: other.key }) })).status).toBe(401);
    expect(await pageWs({ cookie: mine.cookie, key: other.key }).catch((e: { status?: number }) => e)).toMatchObject({ status: 401 });
    // A cookie another port set beside the page's own does not shadow it: the one the key fits is taken.
    const both = { cookie: `${other.cookie}; ${mine.cookie}`, key: mine.key };
    expect((await http(d.port!, 'GET', '/session', { headers: sess(both) })).status).toBe(200);
    const ws = await pageWs(both);
    expect(
      (await (async () => (await ws.request(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'scope.list', params: {} }))) as { result?: unknown })()).result,
    ).toBeDefined();
    ws.ws.close();
    // Logging out takes the key too: the cookie alone ends nothing.
    expect((await http(d.port!, 'DELETE', '/session', { headers: { cookie: mine.cookie, origin } })).status).toBe(204);
    expect((await http(d.port!, 'GET', '/session', { headers: sess(mine) })).status).toBe(200);
  });

  it('a cookie-authenticated WebSocket is its token: a scope-limited operator sees and sets only its scopes, a reader sets nothing', async () => {
    const op = await d.ok('token.create', { role: 'operator', name: 'gui-op', scopes: ['mail.*'] });
    const rd = await d.ok('token.create', { role: 'reader', name: 'gui-reader' });
    const before = await treeDigest(`${d.root}/etc`);

    const opCookie = cookieOf(await login({ code: (await guiAddress(d, op.token)).code }));
    const who = await http(d.port!, 'GET', '/session', { headers: sess(opCookie) });
    const opSession = JSON.parse(who.text) as { scopeList: { name: string }[] };
    expect(opSession).toMatchObject({ name: 'gui-op', role: 'operator', scopes: ['mail.*'] });
    expect(opSession.scopeList.length).toBeGreaterThan(0);
    for (const s of opSession.scopeList) expect(s.name).toMatch(/^mail\./);
    const opWs = await pageWs(opCookie);
    const names = (await call(opWs, 'scope.list')).result.scopes.map((s: { name: string }) => s.name);
    expect(names.length).toBeGreaterThan(0);
    for (const n of names) expect(n).toMatch(/^mail\./);
    const refused = await call(opWs, 'scope.set', { name: 'net.hostname', value: 'gui.example.test' });
    expect(refused.error?.code).toBe(ErrorCodes.Forbidden);
    expect(refused.error?.message).toMatch(/gui-op \(operator, scopes mail\.\*\) lacks write access to scope net\.hostname/);
    // gui.login over that socket gives a code for the same token, not more.
    const minted = (await call(opWs, 'gui.login')).result as { url: string };
    const again = cookieOf(await login({ code: minted.url.split('#login=')[1] }));
    expect(JSON.parse((await http(d.port!, 'GET', '/session', { headers: sess(again) })).text).role).toBe('operator');

    const rdCookie = cookieOf(await login({ code: (await guiAddress(d, rd.token)).code }));
    const rdWs = await pageWs(rdCookie);
    expect((await call(rdWs, 'scope.get', { name: 'net.hostname' })).result).toBeDefined();
    const set = await call(rdWs, 'scope.set', { name: 'net.hostname', value: 'gui.example.test', dryRun: true });
    expect(set.error?.code).toBe(ErrorCodes.Forbidden);
    expect((await call(rdWs, 'token.list')).error?.code).toBe(ErrorCodes.Forbidden);
    expect(await treeDigest(`${d.root}/etc`)).toEqual(before);
    opWs.ws.close();
    rdWs.ws.close();
  });

  it('revoking the token ends its session at once: its WebSocket is closed and the cookie no longer works', async () => {
    const op = await d.ok('token.create', { role: 'operator', name: 'gui-revoked' });
    const cookie = cookieOf(await login({ code: (await guiAddress(d, op.token)).code }));
    const ws = await pageWs(cookie);
    expect((await call(ws, 'scope.list')).result).toBeDefined();
    const unused = await guiAddress(d, op.token);

    await d.ok('token.revoke', { id: 'gui-revoked' });
    const closed = await Promise.race([ws.closed, sleep(10_000).then(() => 'still open')]);
    expect(closed).toEqual({ code: 4401, reason: 'token revoked or expired' });
    expect((await http(d.port!, 'GET', '/session', { headers: sess(cookie) })).status).toBe(401);
    expect(await pageWs(cookie).catch((e: { status?: number }) => e)).toMatchObject({ status: 401 });
    // A code issued before the revocation is dead too.
    expect((await login({ code: unused.code })).status).toBe(401);
  });

  it('logging out (DELETE /session) clears the cookie, ends the session and closes its WebSockets', async () => {
    const cookie = cookieOf(await login({ code: (await guiAddress(d)).code }));
    const ws = await pageWs(cookie);
    const out = await http(d.port!, 'DELETE', '/session', { headers: { ...sess(cookie), origin } });
    expect(out.status).toBe(204);
    expect(out.headers['set-cookie']).toEqual(['scoped_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0']);
    const closed = await Promise.race([ws.closed, sleep(10_000).then(() => 'still open')]);
    expect(closed).toMatchObject({ code: 4401 });
    expect((await http(d.port!, 'GET', '/session', { headers: sess(cookie) })).status).toBe(401);
    // A page elsewhere cannot log the user out.
    const other = cookieOf(await login({ code: (await guiAddress(d)).code }));
    expect((await http(d.port!, 'DELETE', '/session', { headers: { ...sess(other), origin: 'http://evil.example' } })).status).toBe(403);
    expect((await http(d.port!, 'GET', '/session', { headers: sess(other) })).status).toBe(200);
  });

  it('no GET changes anything: a code in a GET is not redeemed, and the files, the audit trail and the session stay as they were', async () => {
    const { code } = await guiAddress(d);
    const files = await treeDigest(`${d.root}/etc`);
    const audit = await d.ok('audit.list', {});
    const refused = await d.ok('audit.list', { refused: true });
    for (const path of ['/', `/?code=${code}`, `/session?code=${code}`, `/session?token=${d.token()}`, '/assets/x.js', '/rpc', '/session']) {
      for (const method of ['GET', 'HEAD']) {
        const r = await http(d.port!, method, path, { headers: { origin } });
        expect(r.headers['set-cookie'], `${method} ${path}`).toBeUndefined();
      }
    }
    expect(await treeDigest(`${d.root}/etc`)).toEqual(files);
    expect(await d.ok('audit.list', {})).toEqual(audit);
    expect(await d.ok('audit.list', { refused: true })).toEqual(refused);
    // The code is still good: no GET used it.
    expect((await login({ code })).status).toBe(200);
  });
});

describe('the Scope GUI: expiry and a daemon without TCP', () => {
  it('a login address expires after guiLoginTtlMs; an unused one is good until then', async () => {
    await using d = await scoped({ args: ['--gui-login-ttl-ms', '300'] });
    const origin = `http://127.0.0.1:${d.port}`;
    const post = (code: string) =>
      http(d.port!, 'POST', '/session', { headers: { origin, 'content-type': 'application/json' }, body: JSON.stringify({ code }) });
    const late = await guiAddress(d);
    const soon = await guiAddress(d);
    expect((await post(soon.code)).status).toBe(200);
    await sleep(600);
    const r = await post(late.code);
    expect(r.status).toBe(401);
    expect(JSON.parse(r.text)).toEqual({ error: 'this login address was used or has expired; run cpcmd gui again' });
  });

  it('cpcmd gui against a daemon with --listen none says to start it with --listen', async () => {
    await using d = await scoped({ listen: 'none' });
    expectRefused(await d.cpcmd(['gui']), 'notFound', /no TCP listener \(--listen none\); start scoped with --listen 127\.0\.0\.1:8740/);
  });
});
