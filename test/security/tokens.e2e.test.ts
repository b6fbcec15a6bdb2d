/**
 * Security end to end, tokens and roles: token:create/list/revoke, what a reader, an operator
 * limited by scope globs and an admin may do (-32003 naming the missing permission), the unix
 * socket as admin, revoked and expired tokens. Real scoped and cpcmd on a Postfix config under
 * a temp root (Postfix itself is not started); each test has a daemon of its own.
 */
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { ErrorCodes, ExitCodes, expectExit, expectRefused } from '../helpers/expect.js';
import { type RunResult, type Scoped, WsClient, cpcmd, freshPeer, sleep } from '../helpers/scoped.js';
import { TOKEN_RE, http, idOf, makeTokens, rolesSandbox, secretOf, sha256, unix } from './shared.js';

describe('tokens and roles', { timeout: 60_000 }, () => {
  let d: Scoped;
  let box: Scoped['postfix'];
  const tok = { reader: '', operator: '', admin: '' };

  beforeEach(async () => {
    d = await rolesSandbox();
    box = d.postfix;
  });
  afterEach(() => d?.close(), 60_000);

  it('token:create prints the token once and stores only its hash; token:list shows role, scopes, expiry and last use, never a secret', async () => {
    const reader = await d.cpcmd(['token:create', '--role', 'reader', '--name', 'monitoring']);
    expectExit(reader, 'ok');
    // The token alone on stdout (T=$(cpcmd token:create ...) captures it); the note on stderr.
    const lines = reader.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(TOKEN_RE);
    expect(reader.stderr).toMatch(/^\(monitoring, reader; shown once/);
    tok.reader = lines[0]!;

    const op = await d.cpcmd(['token:create', '--role', 'operator', '--scopes', 'net.hostname', '--expires', '30d', '--name', 'ci', '-o', 'json']);
    expectExit(op, 'ok');
    const opInfo = JSON.parse(op.stdout);
    expect(opInfo).toMatchObject({
      name: 'ci',
      role: 'operator',
      scopes: ['net.hostname'],
      lastUsedAt: null,
      revoked: false,
      token: expect.stringMatching(TOKEN_RE),
    });
    expect(opInfo).not.toHaveProperty('hash');
    expect(opInfo.id).toBe(idOf(opInfo.token));
    expect(Math.abs(Date.parse(opInfo.expiresAt) - (Date.now() + 30 * 86_400_000))).toBeLessThan(120_000);
    tok.operator = opInfo.token;

    const adm = await d.cpcmd(['token:create', '--role', 'admin', '--name', 'root-ci', '-o', 'yaml']);
    expectExit(adm, 'ok');
    const admInfo = parseYaml(adm.stdout);
    expect(admInfo).toMatchObject({ name: 'root-ci', role: 'admin', scopes: [], expiresAt: null, token: expect.stringMatching(TOKEN_RE) });
    tok.admin = admInfo.token;
    expect(new Set(Object.values(tok)).size).toBe(3);

    const secrets = Object.values(tok).flatMap((t) => [t, secretOf(t)]);
    const listed: Record<string, RunResult> = {};
    for (const form of ['cli', 'json', 'yaml']) {
      listed[form] = await d.cpcmd(['token:list', '-o', form]);
      expectExit(listed[form]!, 'ok');
      for (const s of secrets) expect(listed[form]!.stdout + listed[form]!.stderr, `token:list -o ${form}`).not.toContain(s);
    }
    const list = JSON.parse(listed.json!.stdout) as Record<string, unknown>[];
    expect(list).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ id: idOf(tok.reader), name: 'monitoring', role: 'reader', scopes: [], expiresAt: null, lastUsedAt: null, revoked: false }),
        expect.objectContaining({
          id: idOf(tok.operator),
          name: 'ci',
          role: 'operator',
          scopes: ['net.hostname'],
          expiresAt: opInfo.expiresAt,
          lastUsedAt: null,
        }),
        expect.objectContaining({ id: idOf(tok.admin), name: 'root-ci', role: 'admin', expiresAt: null, lastUsedAt: null }),
      ]),
    );
    for (const t of list) {
      expect(t).not.toHaveProperty('token');
      expect(t).not.toHaveProperty('hash');
    }
    expect(listed.cli!.stdout).toMatch(/monitoring\s+reader\s+no expiry\s+last used never/);
    expect(listed.cli!.stdout).toMatch(/ci\s+operator \[net\.hostname\]\s+expires 20\d\d-/);

    // Only the hash is stored: the store files hold each secret's SHA-256, never the secret.
    const storeDir = path.dirname(d.storeFile);
    const stored = (await Promise.all((await readdir(storeDir)).map((n) => readFile(path.join(storeDir, n))))).map((b) => b.toString('latin1')).join('\n');
    for (const t of Object.values(tok)) {
      expect(stored).toContain(sha256(secretOf(t)));
      expect(stored).not.toContain(secretOf(t));
    }

    // Last use shows up once the token is used.
    const used = await http(d, tok.reader, 'scope.list');
    expect(used.status).toBe(200);
    const after = JSON.parse((await d.cpcmd(['token:list', '-o', 'json'])).stdout) as { name: string; lastUsedAt: string | null }[];
    const mon = after.find((t) => t.name === 'monitoring')!;
    expect(mon.lastUsedAt).not.toBeNull();
    expect(Date.now() - Date.parse(mon.lastUsedAt!)).toBeLessThan(60_000);
    expect(after.find((t) => t.name === 'ci')!.lastUsedAt).toBeNull();
    expect((await d.cpcmd(['token:list'])).stdout).toMatch(/monitoring\s+reader\s+no expiry\s+last used 20\d\d-/);
  });

  it('a reader may list, info, get, check, discover, read status and the audit trail, and nothing else: -32003 naming the missing permission', async () => {
    Object.assign(tok, await makeTokens(d));
    const reads: [string, Record<string, unknown>][] = [
      ['scope.list', {}],
      ['scope.info', { name: 'net.hostname' }],
      ['scope.get', { name: 'net.hostname' }],
      ['scope.check', {}],
      ['scope.check', { name: 'mail.smart-host' }],
      ['var.list', {}],
      ['unit.list', {}],
      ['daemon.status', {}],
      ['rpc.discover', {}],
      ['audit.list', {}],
    ];
    for (const [method, params] of reads) {
      const a = await http(d, tok.reader, method, params);
      expect(a.status, `${method}: ${a.text}`).toBe(200);
      expect(a.json, `${method}: ${a.text}`).toHaveProperty('result');
    }
    expect((await http(d, tok.reader, 'scope.get', { name: 'net.hostname' })).json.result.value).toBe('roles.example.test');

    const mainCfBefore = await readFile(box.mainCf, 'utf8');
    const writes: [string, Record<string, unknown>, RegExp][] = [
      ['scope.set', { name: 'net.hostname', value: 'evil.example.test' }, /operator role needed for scope\.set/],
      ['scope.reset', { name: 'net.hostname' }, /operator role needed for scope\.reset/],
      ['scope.adopt', { name: 'mail.smart-host' }, /operator role needed for scope\.adopt/],
      ['var.set', { name: 'system_hostname', value: 'evil.example.test' }, /operator role needed for var\.set/],
      ['unit.converge', {}, /operator role needed for unit\.converge/],
      ['token.create', { role: 'admin' }, /admin role needed for token\.create/],
      ['token.list', {}, /admin role needed for token\.list/],
      ['token.revoke', { id: 'ci' }, /admin role needed for token\.revoke/],
    ];
    for (const [method, params, why] of writes) {
      const a = await http(d, tok.reader, method, params);
      expect(a.json, method).toMatchObject({
        jsonrpc: '2.0',
        id: 1,
        error: { code: ErrorCodes.Forbidden, message: expect.stringMatching(why), data: { missing: expect.stringContaining(method) } },
      });
      expect(a.json.error.message).toMatch(/monitoring/);
      expect(a.json).not.toHaveProperty('result');
    }
    // The same over a WebSocket.
    const ws = await WsClient.open(d.port!, tok.reader);
    try {
      expect(await ws.call('daemon.status')).toHaveProperty('result');
      expect(await ws.call('scope.set', { name: 'net.hostname', value: 'evil.example.test' })).toMatchObject({
        error: { code: ErrorCodes.Forbidden, message: expect.stringMatching(/operator role needed for scope\.set/) },
      });
    } finally {
      ws.terminate();
    }
    // Nothing changed.
    expect(await readFile(path.join(box.root, 'etc/hostname'), 'utf8')).toBe('roles.example.test\n');
    expect(await readFile(box.mainCf, 'utf8')).toBe(mainCfBefore);
    expect((await unix(d, 'token.list')).json.result.tokens.find((t: { name: string }) => t.name === 'ci')).toMatchObject({ revoked: false });

    // cpcmd over TCP with the reader token: exit 5 and the missing permission; reads work.
    const conn = { url: d.url, token: tok.reader };
    expectRefused(
      await cpcmd(['scope:set', 'net.hostname', 'evil.example.test'], conn),
      'unauthorized',
      /forbidden: monitoring \(reader\) lacks the operator role needed for scope\.set/,
    );
    expectRefused(await cpcmd(['token:list'], conn), 'unauthorized', /lacks the admin role needed for token\.list/);
    expect(await cpcmd(['scope:get', 'net.hostname'], conn)).toMatchObject({ code: ExitCodes.ok, stdout: 'roles.example.test\n' });
    const audit = await cpcmd(['audit:list', '-o', 'json'], conn);
    expectExit(audit, 'ok');
    expect(Array.isArray(JSON.parse(audit.stdout))).toBe(true);
  });

  it('an operator sets, resets and converges only the scopes its globs match and the units they drive', async () => {
    Object.assign(tok, await makeTokens(d));
    const list = await http(d, tok.operator, 'scope.list');
    expect(list.json.result.scopes.map((s: { name: string }) => s.name)).toEqual(['net.hostname']);

    const set = await http(d, tok.operator, 'scope.set', { name: 'net.hostname', value: 'op.example.test' });
    expect(set.json, set.text).toMatchObject({ result: { status: 'applied', name: 'net.hostname', value: 'op.example.test' } });
    expect(await readFile(path.join(box.root, 'etc/hostname'), 'utf8')).toBe('op.example.test\n');
    // cpcmd over a WebSocket URL with the operator token.
    const viaWs = await cpcmd(['scope:set', 'net.hostname', 'op2.example.test'], { url: d.wsUrl, token: tok.operator });
    expectExit(viaWs, 'ok');
    expect(viaWs.stdout).toMatch(/^net\.hostname: applied \(revision \d+\)/);
    expect(await readFile(path.join(box.root, 'etc/hostname'), 'utf8')).toBe('op2.example.test\n');
    expect((await http(d, tok.operator, 'scope.reset', { name: 'net.hostname', dryRun: true })).json).toMatchObject({ result: { status: 'planned' } });
    // net.hostname drives net/hostname and, through myhostname, mail/configure-postfix.
    for (const unit of ['net/hostname', 'mail/configure-postfix']) {
      const a = await http(d, tok.operator, 'unit.converge', { units: [unit] });
      expect(a.json, `${unit}: ${a.text}`).toHaveProperty('result');
    }

    const mainCfBefore = await readFile(box.mainCf, 'utf8');
    const refusals: [string, Record<string, unknown>, RegExp][] = [
      ['scope.set', { name: 'mail.smart-host', value: false }, /lacks write access to scope mail\.smart-host/],
      ['scope.get', { name: 'mail.smart-host' }, /lacks read access to scope mail\.smart-host/],
      ['scope.reset', { name: 'mail.smart-host' }, /lacks write access to scope mail\.smart-host/],
      ['scope.adopt', { name: 'mail.smart-host' }, /lacks write access to scope mail\.smart-host/],
      ['scope.set', { name: 'cp.bootstrapper', value: { var: 'system_hostname', value: 'x.example.test' } }, /scope cp\.bootstrapper/],
      ['var.set', { name: 'postfix_relay_mynetworks', value: true }, /scope cp\.bootstrapper/],
      ['scope.check', {}, /every scope/],
      ['unit.converge', { units: ['mail/spam-filter'] }, /converge of unit mail\/spam-filter/],
      ['unit.converge', {}, /converge of unit/],
      ['token.list', {}, /admin role needed for token\.list/],
      ['token.create', { role: 'reader' }, /admin role needed for token\.create/],
    ];
    for (const [method, params, why] of refusals) {
      const a = await http(d, tok.operator, method, params);
      expect(a.json, `${method} ${JSON.stringify(params)}`).toMatchObject({
        error: { code: ErrorCodes.Forbidden, message: expect.stringMatching(why), data: { missing: expect.any(String) } },
      });
      expect(a.json.error.message).toMatch(/^forbidden: ci \(operator, scopes net\.hostname\)/);
    }
    expect(await readFile(box.mainCf, 'utf8')).toBe(mainCfBefore);
    expectRefused(
      await cpcmd(['scope:set', 'mail.smart-host', 'false'], { url: d.url, token: tok.operator }),
      'unauthorized',
      /write access to scope mail\.smart-host/,
    );

    // Its view of the audit trail is limited to its scopes too.
    const audit = await http(d, tok.operator, 'audit.list', {});
    const entries = audit.json.result.entries as { target: string; actor: string }[];
    expect(entries.length).toBeGreaterThan(0);
    for (const e of entries) expect(e.target).toBe('net.hostname');
    expect(entries.some((e) => e.actor === `ci (${idOf(tok.operator)})`)).toBe(true);
  });

  it('an admin token may do everything, tokens included; the unix socket is admin without a token', async () => {
    Object.assign(tok, await makeTokens(d));
    const created = await http(d, tok.admin, 'token.create', { role: 'reader', name: 'short-lived-by-admin' });
    expect(created.json.result).toMatchObject({ name: 'short-lived-by-admin', role: 'reader', token: expect.stringMatching(TOKEN_RE) });
    expect((await http(d, tok.admin, 'token.list')).json.result.tokens.map((t: { name: string }) => t.name)).toEqual(
      expect.arrayContaining(['monitoring', 'ci', 'root-ci', 'short-lived-by-admin']),
    );
    expect((await http(d, tok.admin, 'token.revoke', { id: 'short-lived-by-admin' })).json.result).toMatchObject({ revoked: true });
    expect((await http(d, tok.admin, 'unit.converge', {})).json).toHaveProperty('result');
    expect((await http(d, tok.admin, 'scope.set', { name: 'mail.smart-host', value: false })).json).toHaveProperty('result');
    // The admin token of --token-file.
    expect((await http(d, d.token(), 'token.list')).json).toHaveProperty('result');
    // The unix socket: no token at all.
    expect((await unix(d, 'token.list')).json.result.tokens.length).toBeGreaterThanOrEqual(4);
    const viaSocket = await d.cpcmd(['token:list']);
    expectExit(viaSocket, 'ok');
    expect(viaSocket.stdout).toMatch(/root-ci\s+admin/);
  });

  it('an expired token and a revoked token get -32001 at once', async () => {
    Object.assign(tok, await makeTokens(d));
    const short = JSON.parse((await d.cpcmd(['token:create', '--role', 'reader', '--name', 'one-second', '--expires', '1s', '-o', 'json'])).stdout);
    expect((await http(d, short.token, 'daemon.status', {}, freshPeer())).status).toBe(200);
    await sleep(Math.max(0, Date.parse(short.expiresAt) - Date.now()) + 100);
    const expired = await http(d, short.token, 'daemon.status', {}, freshPeer());
    expect(expired.status).toBe(401);
    expect(expired.json).toEqual({
      jsonrpc: '2.0',
      id: null,
      error: { code: ErrorCodes.Unauthorized, message: expect.stringMatching(/unknown, revoked or expired/) },
    });

    const made = JSON.parse((await d.cpcmd(['token:create', '--role', 'operator', '--scopes', 'net.hostname', '--name', 'temp-op', '-o', 'json'])).stdout);
    expect((await http(d, made.token, 'scope.get', { name: 'net.hostname' })).status).toBe(200);
    const revoke = await d.cpcmd(['token:revoke', 'temp-op']);
    expectExit(revoke, 'ok');
    expect(revoke.stdout).toBe(`revoked temp-op (${made.id})\n`);
    const after = await http(d, made.token, 'scope.set', { name: 'net.hostname', value: 'revoked.example.test' }, freshPeer());
    expect(after.status).toBe(401);
    expect(after.json).toMatchObject({ error: { code: ErrorCodes.Unauthorized } });
    await expect(WsClient.open(d.port!, made.token, { localAddress: freshPeer() })).rejects.toMatchObject({ status: 401 });
    const bad = await cpcmd(['scope:get', 'net.hostname'], { url: d.url, token: made.token });
    expectRefused(bad, 'unauthorized', /unauthorized/i);
    expect(await readFile(path.join(box.root, 'etc/hostname'), 'utf8')).toBe('roles.example.test\n');
    const listed = JSON.parse((await d.cpcmd(['token:list', '-o', 'json'])).stdout) as { name: string; revoked: boolean }[];
    expect(listed.find((t) => t.name === 'temp-op')).toMatchObject({ revoked: true });
    expectRefused(await d.cpcmd(['token:revoke', 'temp-op']), 'notFound', /no active token/);
  });

  it('a revoked token stops at once on a WebSocket opened before the revocation too', async () => {
    Object.assign(tok, await makeTokens(d));
    const made = JSON.parse((await d.cpcmd(['token:create', '--role', 'operator', '--scopes', 'net.hostname', '--name', 'ws-op', '-o', 'json'])).stdout);
    const ws = await WsClient.open(d.port!, made.token);
    try {
      expect(await ws.call('scope.get', { name: 'net.hostname' })).toHaveProperty('result');
      expectExit(await d.cpcmd(['token:revoke', 'ws-op']), 'ok');
      // "ends it at once": the open connection must not keep the revoked token's rights.
      const a = await ws.call('scope.set', { name: 'net.hostname', value: 'after-revoke.example.test' }).catch((err: Error) => ({ closed: err.message }));
      expect(a, 'a call on the open WebSocket after token:revoke').not.toHaveProperty('result');
      if ('error' in a) expect(a.error.code).toBe(ErrorCodes.Unauthorized);
    } finally {
      ws.terminate();
    }
    expect(await readFile(path.join(box.root, 'etc/hostname'), 'utf8')).toBe('roles.example.test\n');
  });
});
