/**
 * JSON-RPC 2.0 over the real TCP transports of a running scoped: the examples of section 7
 * of the specification adapted to our methods, over both HTTP POST /rpc and WebSocket /rpc;
 * authentication on TCP; and the size limits.
 */
import { stat } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { responseProblems } from './helpers/expect.js';
import { type Scoped, WsClient, cpcmd, freshPeer, httpPost, scoped } from './helpers/scoped.js';

const NONE = Symbol('no answer');
type Answer = unknown;

/**
 * One way of sending a JSON-RPC text: `call` when an answer is due (it returns the answer),
 * `notify` when none is (it returns NONE, or whatever came back when something did).
 */
interface Channel {
  call(text: string): Promise<Answer>;
  notify(text: string): Promise<Answer | typeof NONE>;
  close(): Promise<void>;
}

async function httpChannel(d: Scoped): Promise<Channel> {
  const token = d.token();
  const post = async (text: string) => {
    const r = await httpPost({ port: d.port! }, text, { token });
    if (r.status === 204) {
      // Nothing to answer: no body at all.
      expect(r.text).toBe('');
      return NONE;
    }
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/^application\/json/);
    return JSON.parse(r.text) as Answer;
  };
  return {
    async call(text) {
      const a = await post(text);
      expect(a, 'an answer was due').not.toBe(NONE);
      return a;
    },
    notify: post,
    async close() {},
  };
}

let sentinelId = 0;

async function wsChannel(d: Scoped): Promise<Channel> {
  const conn = await WsClient.open(d.port!, d.token());
  return {
    async call(text) {
      return conn.request(text);
    },
    /**
     * "Nothing comes back" is proven by sending the text, then a call, and checking that the
     * only message received, up to the call's answer and a settle time after it, is that answer.
     */
    async notify(text) {
      const start = conn.messages.length;
      const id = `sentinel-${++sentinelId}`;
      conn.ws.send(text);
      conn.ws.send(JSON.stringify({ jsonrpc: '2.0', id, method: 'scope.list', params: { glob: 'net.*' } }));
      const isSentinel = (m: string) => (JSON.parse(m) as { id?: unknown }).id === id;
      const deadline = Date.now() + 10_000;
      while (!conn.messages.slice(start).some(isSentinel)) {
        if (Date.now() > deadline) throw new Error(`no answer to the call after the notification; got ${JSON.stringify(conn.messages.slice(start))}`);
        await conn.waitForCount(conn.messages.length + 1, deadline - Date.now());
      }
      await new Promise((r) => setTimeout(r, 300));
      const received = conn.messages.slice(start);
      const sentinel = received.filter(isSentinel);
      expect(sentinel).toHaveLength(1);
      expect(JSON.parse(sentinel[0]!)).toEqual({ jsonrpc: '2.0', id, result: { scopes: [{ name: 'net.hostname', summary: expect.any(String) }] } });
      const others = received.filter((m) => !isSentinel(m)).map((m) => JSON.parse(m) as Answer);
      if (others.length === 0) return NONE;
      return others.length === 1 ? others[0] : others;
    },
    close: () => conn.close(),
  };
}

const transports = [
  ['HTTP', httpChannel],
  ['WebSocket', wsChannel],
] as const;

describe.each(transports)('JSON-RPC 2.0 section 7 examples over %s', (_name, open) => {
  let daemon: Scoped;
  let rpc: Channel;
  /** Every answer of this block, checked against the spec's response rules at the end. */
  const answers: unknown[] = [];
  const send = async (text: string) => {
    const a = await rpc.call(text);
    answers.push(a);
    return a;
  };
  const notify = async (text: string) => {
    const a = await rpc.notify(text);
    if (a !== NONE) answers.push(a);
    return a;
  };

  beforeAll(async () => {
    daemon = await scoped({ files: { 'etc/hostname': 'rpc.example.net\n' } });
    rpc = await open(daemon);
  });
  afterAll(async () => {
    await rpc?.close();
    await daemon?.close();
  });

  it('answers a call with named params', async () => {
    const a = await send('{"jsonrpc":"2.0","method":"scope.get","params":{"name":"net.hostname"},"id":1}');
    expect(a).toMatchObject({ jsonrpc: '2.0', id: 1, result: { name: 'net.hostname', value: 'rpc.example.net' } });
    expect(a).not.toHaveProperty('error');
  });

  it('refuses positional params with -32602 and the id', async () => {
    const a = await send('{"jsonrpc":"2.0","method":"scope.get","params":["net.hostname"],"id":2}');
    expect(a).toMatchObject({ jsonrpc: '2.0', id: 2, error: { code: -32602, message: expect.stringMatching(/by name/) } });
    expect(a).not.toHaveProperty('result');
  });

  it('sends nothing back for a notification', async () => {
    expect(await notify('{"jsonrpc":"2.0","method":"scope.get","params":{"name":"net.hostname"}}')).toBe(NONE);
    expect(await notify('{"jsonrpc":"2.0","method":"scope.list","params":{}}')).toBe(NONE);
  });

  it('sends nothing back for a notification even when it fails (unknown method, positional params)', async () => {
    expect(await notify('{"jsonrpc":"2.0","method":"foobar"}')).toBe(NONE);
    expect(await notify('{"jsonrpc":"2.0","method":"scope.get","params":["net.hostname"]}')).toBe(NONE);
  });

  it('answers a non-existent method with -32601 and the id', async () => {
    const a = await send('{"jsonrpc":"2.0","method":"foobar","id":"1"}');
    expect(a).toEqual({ jsonrpc: '2.0', id: '1', error: { code: -32601, message: expect.stringContaining('foobar') } });
  });

  it('answers invalid JSON with -32700 and id null', async () => {
    const a = await send('{"jsonrpc":"2.0","method":"foobar,"params":"bar","baz]');
    expect(a).toEqual({ jsonrpc: '2.0', id: null, error: { code: -32700, message: expect.any(String) } });
  });

  it('answers an invalid Request object with -32600 and id null', async () => {
    const a = await send('{"jsonrpc":"2.0","method":1,"params":"bar"}');
    expect(a).toEqual({ jsonrpc: '2.0', id: null, error: { code: -32600, message: expect.any(String) } });
  });

  it('answers a batch that is invalid JSON with one -32700 object', async () => {
    const a = await send('[\n  {"jsonrpc":"2.0","method":"scope.get","params":{"name":"net.hostname"},"id":"1"},\n  {"jsonrpc":"2.0","method"\n]');
    expect(Array.isArray(a)).toBe(false);
    expect(a).toEqual({ jsonrpc: '2.0', id: null, error: { code: -32700, message: expect.any(String) } });
  });

  it('answers an empty array with one -32600 object, not an array', async () => {
    const a = await send('[]');
    expect(Array.isArray(a)).toBe(false);
    expect(a).toEqual({ jsonrpc: '2.0', id: null, error: { code: -32600, message: expect.any(String) } });
  });

  it('answers [1] with an array of one -32600', async () => {
    const a = await send('[1]');
    expect(a).toEqual([{ jsonrpc: '2.0', id: null, error: { code: -32600, message: expect.any(String) } }]);
  });

  it('answers [1,2,3] with an array of three -32600', async () => {
    const a = await send('[1,2,3]');
    const e = { jsonrpc: '2.0', id: null, error: { code: -32600, message: expect.any(String) } };
    expect(a).toEqual([e, e, e]);
  });

  it('answers a mixed batch with the answers due, matched by id, and nothing for the notification', async () => {
    const a = await send(
      JSON.stringify([
        { jsonrpc: '2.0', method: 'scope.get', params: { name: 'net.hostname' }, id: '1' },
        { jsonrpc: '2.0', method: 'scope.list', params: { glob: 'net.*' } },
        { jsonrpc: '2.0', method: 'scope.info', params: { name: 'net.hostname' }, id: '2' },
        { foo: 'boo' },
        { jsonrpc: '2.0', method: 'foo.get', params: { name: 'myself' }, id: '5' },
        { jsonrpc: '2.0', method: 'daemon.status', params: {}, id: '9' },
      ]),
    );
    expect(Array.isArray(a)).toBe(true);
    const list = a as { id: unknown; result?: unknown; error?: { code: number } }[];
    expect(list).toHaveLength(5);
    expect(list.map((r) => r.id).sort((x, y) => String(x).localeCompare(String(y)))).toEqual(
      ['1', '2', '5', '9', null].sort((x, y) => String(x).localeCompare(String(y))),
    );
    const byId = new Map(list.map((r) => [r.id, r]));
    expect(byId.get('1')).toMatchObject({ result: { name: 'net.hostname', value: 'rpc.example.net' } });
    expect(byId.get('2')).toMatchObject({ result: { name: 'net.hostname', usage: expect.any(String) } });
    expect(byId.get(null)).toMatchObject({ error: { code: -32600 } });
    expect(byId.get('5')).toMatchObject({ error: { code: -32601 } });
    expect(byId.get('9')).toMatchObject({ result: { version: expect.any(String), pid: daemon.pid } });
  });

  it('sends nothing back for a batch of notifications only', async () => {
    const a = await notify(
      JSON.stringify([
        { jsonrpc: '2.0', method: 'scope.list', params: {} },
        { jsonrpc: '2.0', method: 'scope.get', params: { name: 'net.hostname' } },
      ]),
    );
    expect(a).toBe(NONE);
  });

  it('keeps domain errors in -32000..-32099 and validation errors at -32602 with the issues', async () => {
    const notFound = await send('{"jsonrpc":"2.0","method":"scope.get","params":{"name":"no.such-scope"},"id":10}');
    expect(notFound).toMatchObject({ id: 10, error: { code: -32002, message: expect.stringContaining('no.such-scope') } });
    const badValue = await send('{"jsonrpc":"2.0","method":"scope.set","params":{"name":"net.hostname","value":"mail"},"id":11}');
    expect(badValue).toMatchObject({ id: 11, error: { code: -32602, data: { issues: expect.any(Array) } } });
    const badParams = await send('{"jsonrpc":"2.0","method":"scope.get","params":{},"id":12}');
    expect(badParams).toMatchObject({ id: 12, error: { code: -32602, data: { issues: [{ path: ['name'] }] } } });
    const unknownUnit = await send('{"jsonrpc":"2.0","method":"unit.converge","params":{"units":["no/such-unit"]},"id":13}');
    expect(unknownUnit).toMatchObject({ id: 13, error: { code: -32002, message: expect.stringContaining('no/such-unit') } });
    // Nothing was written by the refused set.
    expect(await daemon.file('etc/hostname')).toBe('rpc.example.net\n');
  });

  it('answers a scope.list glob that is not a valid pattern with -32602, not an internal error', async () => {
    const a = await send('{"jsonrpc":"2.0","method":"scope.list","params":{"glob":"mail.["},"id":14}');
    expect(a).toMatchObject({ id: 14, error: { code: -32602 } });
  });

  it('never answers with error code 0 or a code outside the spec and -32000..-32099', () => {
    expect(answers.length).toBeGreaterThan(10);
    expect(answers.flatMap(responseProblems)).toEqual([]);
  });
});

describe('authentication on TCP', () => {
  let daemon: Scoped;
  let token: string;
  const call = '{"jsonrpc":"2.0","method":"scope.get","params":{"name":"net.hostname"},"id":1}';

  beforeAll(async () => {
    daemon = await scoped({ files: { 'etc/hostname': 'auth.example.net\n' } });
    token = daemon.token();
  });
  afterAll(async () => {
    await daemon?.close();
  });

  it('keeps the token in a 0600 file of at least 16 characters', async () => {
    const st = await stat(`${daemon.root}/etc/scoped/admin.token`);
    expect(st.mode & 0o777).toBe(0o600);
    expect(token.length).toBeGreaterThanOrEqual(16);
  });

  const refusals: [string, { token?: string; authorization?: string }][] = [
    ['no token', {}],
    ['a wrong token', { token: 'wrong-token-wrong-token-wrong-token' }],
    ['an empty bearer', { authorization: 'Bearer ' }],
    ['another scheme', { authorization: 'Basic YWRtaW46YWRtaW4=' }],
  ];

  it.each(refusals)('answers HTTP POST /rpc with %s with 401 and -32001, and no result', async (_what, auth) => {
    const r = await httpPost({ port: daemon.port! }, call, { ...auth, localAddress: freshPeer() });
    expect(r.status).toBe(401);
    expect(r.headers['www-authenticate']).toMatch(/^Bearer/);
    const body = JSON.parse(r.text);
    expect(body).toEqual({ jsonrpc: '2.0', id: null, error: { code: -32001, message: expect.stringMatching(/Unauthorized/i) } });
    expect(r.text).not.toContain('auth.example.net');
  });

  it('gives an unauthenticated client nothing but 401: not the routes, not the parser, not a batch', async () => {
    for (const [body, opts] of [
      ['{not json', {}],
      ['[1,2,3]', {}],
      [call, { path: '/other' }],
      ['', { method: 'GET' }],
    ] as const) {
      const r = await httpPost({ port: daemon.port! }, body, { ...opts, localAddress: freshPeer() });
      expect(r.status, `${JSON.stringify(opts)} ${body}`).toBe(401);
      expect(JSON.parse(r.text)).toMatchObject({ error: { code: -32001 } });
    }
  });

  it('does not let an unauthenticated scope.set change anything', async () => {
    const r = await httpPost(
      { port: daemon.port! },
      '{"jsonrpc":"2.0","method":"scope.set","params":{"name":"net.hostname","value":"evil.example.org"},"id":1}',
      { token: 'nope-nope-nope-nope-nope', localAddress: freshPeer() },
    );
    expect(r.status).toBe(401);
    expect(await daemon.file('etc/hostname')).toBe('auth.example.net\n');
  });

  it.each([
    ['no token', undefined],
    ['a wrong token', 'wrong-token-wrong-token-wrong-token'],
  ])('refuses a WebSocket upgrade with %s: HTTP 401, never open', async (_what, bad) => {
    await expect(WsClient.open(daemon.port!, bad, { localAddress: freshPeer() })).rejects.toMatchObject({ status: 401, opened: false });
  });

  it('serves the same calls over HTTP and WebSocket with the right token', async () => {
    const r = await httpPost({ port: daemon.port! }, call, { token });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.text)).toMatchObject({ id: 1, result: { value: 'auth.example.net' } });
    const ws = await WsClient.open(daemon.port!, token);
    try {
      expect(await ws.request(call)).toMatchObject({ id: 1, result: { value: 'auth.example.net' } });
    } finally {
      await ws.close();
    }
  });

  it('lets cpcmd reach the daemon by --url with SCOPED_TOKEN, and exits 5 with a wrong token', async () => {
    for (const url of [`http://127.0.0.1:${daemon.port}/rpc`, `ws://127.0.0.1:${daemon.port}/rpc`]) {
      const ok = await cpcmd(['scope:get', 'net.hostname', '--url', url], { env: { SCOPED_TOKEN: token } });
      expect(ok, url).toMatchObject({ code: 0, stdout: 'auth.example.net\n' });
      const bad = await cpcmd(['scope:get', 'net.hostname', '--url', url], { env: { SCOPED_TOKEN: 'wrong-token-wrong-token-wrong' } });
      expect(bad.code, url).toBe(5);
      expect(bad.stdout).toBe('');
      expect(bad.stderr).toMatch(/^cpcmd: .*unauthorized/i);
    }
  });

  it('does not lock the right token out after wrong ones from the same local address', async () => {
    // TCP is loopback only, so every local process shares one peer address: if wrong tokens
    // from there lock out the right one, any local user can deny the admin's access.
    const shared = freshPeer();
    for (let i = 0; i < 12; i++) {
      const r = await httpPost({ port: daemon.port! }, call, { token: `wrong-token-number-${i}-xxxxxxxx`, localAddress: shared });
      expect([401, 429]).toContain(r.status);
      expect(r.text).not.toContain('auth.example.net');
    }
    const r = await httpPost({ port: daemon.port! }, call, { token, localAddress: shared });
    expect(r.status, r.text).toBe(200);
    expect(JSON.parse(r.text)).toMatchObject({ id: 1, result: { value: 'auth.example.net' } });
  });
});

describe('limits from a YAML --config file', () => {
  let daemon: Scoped;
  let token: string;
  const call = JSON.stringify({ jsonrpc: '2.0', method: 'scope.list', params: { glob: 'net.*' }, id: 7 });
  const batch = (n: number) =>
    JSON.stringify(Array.from({ length: n }, (_, i) => ({ jsonrpc: '2.0', method: 'scope.list', params: { glob: 'net.*' }, id: i + 1 })));

  beforeAll(async () => {
    daemon = await scoped({ config: { maxBodyBytes: 2048, maxBatch: 3, maxWsPayloadBytes: 2048 } });
    token = daemon.token();
  });
  afterAll(async () => {
    await daemon?.close();
  });

  it('accepts a body just under the limit', async () => {
    const body = call + ' '.repeat(2000 - call.length);
    const r = await httpPost({ port: daemon.port! }, body, { token });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.text)).toMatchObject({ id: 7, result: { scopes: [{ name: 'net.hostname' }] } });
  });

  it.each([4096, 1024 * 1024])('answers a %i-byte body with HTTP 413 and a JSON-RPC error naming the limit', async (size) => {
    const body = call + ' '.repeat(size - call.length);
    const r = await httpPost({ port: daemon.port! }, body, { token });
    expect(r.status).toBe(413);
    const answer = JSON.parse(r.text);
    expect(responseProblems(answer)).toEqual([]);
    expect(answer).toMatchObject({ jsonrpc: '2.0', id: null, error: { message: expect.stringContaining('2048') } });
    expect(answer).not.toHaveProperty('result');
    // and the daemon still serves
    const again = await httpPost({ port: daemon.port! }, call, { token });
    expect(again.status).toBe(200);
  });

  it('answers a batch of 3 and refuses a batch of 4 with one -32600 naming the limit (HTTP)', async () => {
    const ok = JSON.parse((await httpPost({ port: daemon.port! }, batch(3), { token })).text);
    expect(ok).toHaveLength(3);
    const r = await httpPost({ port: daemon.port! }, batch(4), { token });
    expect(r.status).toBe(200);
    const a = JSON.parse(r.text);
    expect(Array.isArray(a)).toBe(false);
    expect(a).toEqual({ jsonrpc: '2.0', id: null, error: { code: -32600, message: expect.stringMatching(/\b3\b/) } });
  });

  it('refuses a batch of 4 over WebSocket the same way', async () => {
    const ws = await WsClient.open(daemon.port!, token);
    try {
      const a = await ws.request(batch(4));
      expect(a).toEqual({ jsonrpc: '2.0', id: null, error: { code: -32600, message: expect.stringMatching(/\b3\b/) } });
    } finally {
      await ws.close();
    }
  });

  it('closes a WebSocket with 1009 on a message over the limit, and serves one under it', async () => {
    const ws = await WsClient.open(daemon.port!, token);
    try {
      expect(await ws.request(call + ' '.repeat(2000 - call.length))).toMatchObject({ id: 7, result: expect.any(Object) });
      ws.ws.send(call + ' '.repeat(4096));
      const closed = await Promise.race([ws.closed, new Promise((r) => setTimeout(() => r('still open'), 5_000))]);
      expect(closed).toMatchObject({ code: 1009 });
      expect(ws.messages).toHaveLength(1);
    } finally {
      await ws.close();
    }
  });

  it('still closes with 1009, not a reset (1006), when the peer keeps sending after its message over the limit', async () => {
    const codes: unknown[] = [];
    for (let i = 0; i < 10; i++) {
      const ws = await WsClient.open(daemon.port!, token);
      try {
        ws.ws.send(call + ' '.repeat(1_500_000));
        // The peer is still writing when the daemon refuses the first message.
        for (let j = 0; j < 20; j++) ws.ws.send(' '.repeat(100_000), () => undefined);
        const closed = await Promise.race([ws.closed, new Promise((r) => setTimeout(() => r('still open'), 5_000))]);
        codes.push((closed as { code?: unknown }).code ?? closed);
      } finally {
        await ws.close();
      }
    }
    expect(codes).toEqual(Array(10).fill(1009));
  });
});
