/**
 * Security end to end, against the real scoped and cpcmd binaries on a real Postfix config
 * (Postfix itself is not started: nothing here needs mail to flow, and a reload per set would
 * only cost time):
 *
 * - tokens and roles: token:create/list/revoke, what a reader, an operator limited by scope
 *   globs and an admin may do (-32003 naming the missing permission), the unix socket as
 *   admin, revoked and expired tokens;
 * - abuse limits: 429 / -32008 after authFailureLimit wrong tokens, the cap on connections,
 *   WebSocket peers that stop answering pings (the body, batch and payload limits are in
 *   jsonrpc.e2e.test.ts);
 * - the audit trail: every kind of mutation and outcome, refusals apart with counts (audit:list
 *   --refused), the filters of audit:list, durability across kill -9, rotation at auditKeep;
 * - secrets: a known password and known tokens are searched for in everything a user, a log
 *   reader or a subscriber can see; files holding secrets are 0600 from their first byte;
 * - concurrency: 50 clients setting one scope at once, and --if-revision.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { WsConn, freshPeer, httpPost as httpPostFrom } from './helpers/daemon.js';
import { RELAY_USER, RelaySink } from './helpers/relay.js';
import {
  Daemon,
  PostfixRoot,
  type RunResult,
  WsClient,
  cleanupAll,
  cpcmd,
  hashTree,
  httpPost,
  makeRoot,
  mustRun,
  pidsMentioning,
  run,
  sleep,
  waitFor,
} from './helpers/sandbox.js';

const EXIT = { ok: 0, drift: 3, unreachable: 4, unauthorized: 5, invalid: 6, notFound: 7, conflict: 8, convergeFailed: 9, busy: 10 } as const;
const CODE = { unauthorized: -32001, forbidden: -32003, conflict: -32004, busy: -32008, invalidParams: -32602 } as const;
const REDACTED = '[redacted]';
const TOKEN_RE = /^scoped_[0-9a-f]{8}_[\w-]{16,}$/;

/** The parts of a token made by token:create: scoped_ID_SECRET. */
const idOf = (token: string) => token.slice('scoped_'.length, 'scoped_'.length + 8);
const secretOf = (token: string) => token.slice('scoped_'.length + 9);
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

const body = (method: string, params: Record<string, unknown> = {}, id: number | string = 1) => JSON.stringify({ jsonrpc: '2.0', id, method, params });

interface Answer {
  status: number;
  text: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  json: any;
}

/** One JSON-RPC call over TCP HTTP, optionally from a loopback address of its own; the raw text kept. */
async function http(d: Daemon, token: string | undefined, method: string, params: Record<string, unknown> = {}, peer?: string): Promise<Answer> {
  const r = await httpPostFrom({ port: d.port! }, body(method, params), { ...(token !== undefined ? { token } : {}), ...(peer ? { localAddress: peer } : {}) });
  return { status: r.status, text: r.text, json: JSON.parse(r.text) };
}

/** One JSON-RPC call over the unix socket, without a token; the raw text kept. */
async function unix(d: Daemon, method: string, params: Record<string, unknown> = {}): Promise<Answer> {
  const r = await httpPost({ socket: d.socket }, body(method, params));
  return { status: r.status, text: r.text, json: JSON.parse(r.text) };
}

function expectExit(r: RunResult, code: number): void {
  expect(r.code, `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(code);
}

/** A refusal as cpcmd prints it: the exit code and one line "cpcmd: …" (plus an optional hint). */
function expectRefused(r: RunResult, code: number, why: RegExp): void {
  expectExit(r, code);
  expect(r.stdout).toBe('');
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines[0]).toMatch(/^cpcmd: \S/);
  expect(lines[0]).toMatch(why);
  expect(lines.length, r.stderr).toBeLessThanOrEqual(2);
}

const relayhostOf = async (box: PostfixRoot) => (await mustRun('postconf', ['-c', box.dir, '-h', 'relayhost'])).trim();

/**
 * A separate process that polls the modes of every file in some directories in a tight loop
 * (readdir + lstat, tens of thousands of times a second) until told to stop, recording each
 * mode it ever saw per file. Temp files (.NAME.HEX.tmp) are grouped under one name.
 */
const WATCHER = `
const fs = require('fs'), path = require('path');
const [dirs, stopFile, readyFile] = [JSON.parse(process.argv[1]), process.argv[2], process.argv[3]];
const seen = {};
let loops = 0;
fs.writeFileSync(readyFile, '');
while (!fs.existsSync(stopFile)) {
  loops++;
  for (const dir of dirs) {
    let names;
    try { names = fs.readdirSync(dir); } catch { continue; }
    for (const n of names) {
      let st;
      try { st = fs.lstatSync(path.join(dir, n)); } catch { continue; }
      if (!st.isFile()) continue;
      const key = path.join(dir, n.replace(/\\.[0-9a-f]{8,}\\.tmp$/, '.HEX.tmp'));
      const mode = (st.mode & 0o7777).toString(8);
      (seen[key] ??= {})[mode] = (seen[key][mode] ?? 0) + 1;
    }
  }
}
process.stdout.write(JSON.stringify({ loops, seen }));
`;

async function watchModes(dirs: string[], scratch: string): Promise<{ stop: () => Promise<{ loops: number; seen: Record<string, Record<string, number>> }> }> {
  await mkdir(scratch, { recursive: true });
  const stopFile = path.join(scratch, `stop-${randomBytes(4).toString('hex')}`);
  const readyFile = path.join(scratch, `ready-${randomBytes(4).toString('hex')}`);
  const done = run(process.execPath, ['-e', WATCHER, JSON.stringify(dirs), stopFile, readyFile], { timeoutMs: 60_000 });
  await waitFor('the mode watcher to start', async () => ((await stat(readyFile).catch(() => null)) ? true : undefined), 10_000, 10);
  return {
    async stop() {
      await writeFile(stopFile, '');
      const r = await done;
      if (r.code !== 0) throw new Error(`the watcher failed: ${r.stderr}`);
      return JSON.parse(r.stdout);
    },
  };
}

afterAll(async () => {
  await cleanupAll();
}, 60_000);

describe('security', { timeout: 60_000 }, () => {
  /** The daemon most blocks share: a Postfix config under its root, and the tokens made below. */
  let box: PostfixRoot;
  let d: Daemon;
  const tok = { reader: '', operator: '', admin: '' };

  beforeAll(async () => {
    box = await PostfixRoot.create();
    await writeFile(path.join(box.root, 'etc/hostname'), 'roles.example.test\n');
    d = await Daemon.start(box.root);
  });

  afterAll(async () => {
    const root = box?.root;
    await cleanupAll();
    if (root) expect(pidsMentioning(root)).toEqual([]);
  }, 60_000);

  // -------------------------------------------------------------------------------------------
  describe('tokens and roles', () => {
    it('token:create prints the token once and stores only its hash; token:list shows role, scopes, expiry and last use, never a secret', async () => {
      const reader = await d.cpcmd(['token:create', '--role', 'reader', '--name', 'monitoring']);
      expectExit(reader, EXIT.ok);
      // The token alone on stdout (T=$(cpcmd token:create ...) captures it); the note on stderr.
      const lines = reader.stdout.trimEnd().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(TOKEN_RE);
      expect(reader.stderr).toMatch(/^\(monitoring, reader; shown once/);
      tok.reader = lines[0]!;

      const op = await d.cpcmd(['token:create', '--role', 'operator', '--scopes', 'net.hostname', '--expires', '30d', '--name', 'ci', '-o', 'json']);
      expectExit(op, EXIT.ok);
      const opInfo = JSON.parse(op.stdout);
      expect(opInfo).toMatchObject({ name: 'ci', role: 'operator', scopes: ['net.hostname'], lastUsedAt: null, revoked: false, token: expect.stringMatching(TOKEN_RE) });
      expect(opInfo).not.toHaveProperty('hash');
      expect(opInfo.id).toBe(idOf(opInfo.token));
      expect(Math.abs(Date.parse(opInfo.expiresAt) - (Date.now() + 30 * 86_400_000))).toBeLessThan(120_000);
      tok.operator = opInfo.token;

      const adm = await d.cpcmd(['token:create', '--role', 'admin', '--name', 'root-ci', '-o', 'yaml']);
      expectExit(adm, EXIT.ok);
      const admInfo = parseYaml(adm.stdout);
      expect(admInfo).toMatchObject({ name: 'root-ci', role: 'admin', scopes: [], expiresAt: null, token: expect.stringMatching(TOKEN_RE) });
      tok.admin = admInfo.token;
      expect(new Set(Object.values(tok)).size).toBe(3);

      const secrets = Object.values(tok).flatMap((t) => [t, secretOf(t)]);
      const listed: Record<string, RunResult> = {};
      for (const form of ['cli', 'json', 'yaml']) {
        listed[form] = await d.cpcmd(['token:list', '-o', form]);
        expectExit(listed[form]!, EXIT.ok);
        for (const s of secrets) expect(listed[form]!.stdout + listed[form]!.stderr, `token:list -o ${form}`).not.toContain(s);
      }
      const list = JSON.parse(listed.json!.stdout) as Record<string, unknown>[];
      expect(list).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ id: idOf(tok.reader), name: 'monitoring', role: 'reader', scopes: [], expiresAt: null, lastUsedAt: null, revoked: false }),
          expect.objectContaining({ id: idOf(tok.operator), name: 'ci', role: 'operator', scopes: ['net.hostname'], expiresAt: opInfo.expiresAt, lastUsedAt: null }),
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
      const storeDir = path.dirname(box.storeFile);
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
        expect(a.json, method).toMatchObject({ jsonrpc: '2.0', id: 1, error: { code: CODE.forbidden, message: expect.stringMatching(why), data: { missing: expect.stringContaining(method) } } });
        expect(a.json.error.message).toMatch(/monitoring/);
        expect(a.json).not.toHaveProperty('result');
      }
      // The same over a WebSocket.
      const ws = await WsClient.open(d.port!, tok.reader);
      try {
        expect(await ws.call('daemon.status')).toHaveProperty('result');
        expect(await ws.call('scope.set', { name: 'net.hostname', value: 'evil.example.test' })).toMatchObject({ error: { code: CODE.forbidden, message: expect.stringMatching(/operator role needed for scope\.set/) } });
      } finally {
        ws.close();
      }
      // Nothing changed.
      expect(await readFile(path.join(box.root, 'etc/hostname'), 'utf8')).toBe('roles.example.test\n');
      expect(await readFile(box.mainCf, 'utf8')).toBe(mainCfBefore);
      expect((await unix(d, 'token.list')).json.result.tokens.find((t: { name: string }) => t.name === 'ci')).toMatchObject({ revoked: false });

      // cpcmd over TCP with the reader token: exit 5 and the missing permission; reads work.
      const conn = { url: d.url, token: tok.reader };
      expectRefused(await cpcmd(['scope:set', 'net.hostname', 'evil.example.test'], conn), EXIT.unauthorized, /forbidden: monitoring \(reader\) lacks the operator role needed for scope\.set/);
      expectRefused(await cpcmd(['token:list'], conn), EXIT.unauthorized, /lacks the admin role needed for token\.list/);
      expect(await cpcmd(['scope:get', 'net.hostname'], conn)).toMatchObject({ code: EXIT.ok, stdout: 'roles.example.test\n' });
      const audit = await cpcmd(['audit:list', '-o', 'json'], conn);
      expectExit(audit, EXIT.ok);
      expect(Array.isArray(JSON.parse(audit.stdout))).toBe(true);
    });

    it('an operator sets, resets and converges only the scopes its globs match and the units they drive', async () => {
      const list = await http(d, tok.operator, 'scope.list');
      expect(list.json.result.scopes.map((s: { name: string }) => s.name)).toEqual(['net.hostname']);

      const set = await http(d, tok.operator, 'scope.set', { name: 'net.hostname', value: 'op.example.test' });
      expect(set.json, set.text).toMatchObject({ result: { status: 'applied', name: 'net.hostname', value: 'op.example.test' } });
      expect(await readFile(path.join(box.root, 'etc/hostname'), 'utf8')).toBe('op.example.test\n');
      // cpcmd over a WebSocket URL with the operator token.
      const viaWs = await cpcmd(['scope:set', 'net.hostname', 'op2.example.test'], { url: d.wsUrl, token: tok.operator });
      expectExit(viaWs, EXIT.ok);
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
        expect(a.json, `${method} ${JSON.stringify(params)}`).toMatchObject({ error: { code: CODE.forbidden, message: expect.stringMatching(why), data: { missing: expect.any(String) } } });
        expect(a.json.error.message).toMatch(/^forbidden: ci \(operator, scopes net\.hostname\)/);
      }
      expect(await readFile(box.mainCf, 'utf8')).toBe(mainCfBefore);
      expectRefused(await cpcmd(['scope:set', 'mail.smart-host', 'false'], { url: d.url, token: tok.operator }), EXIT.unauthorized, /write access to scope mail\.smart-host/);

      // Its view of the audit trail is limited to its scopes too.
      const audit = await http(d, tok.operator, 'audit.list', {});
      const entries = audit.json.result.entries as { target: string; actor: string }[];
      expect(entries.length).toBeGreaterThan(0);
      for (const e of entries) expect(e.target).toBe('net.hostname');
      expect(entries.some((e) => e.actor === `ci (${idOf(tok.operator)})`)).toBe(true);
    });

    it('an admin token may do everything, tokens included; the unix socket is admin without a token', async () => {
      const created = await http(d, tok.admin, 'token.create', { role: 'reader', name: 'short-lived-by-admin' });
      expect(created.json.result).toMatchObject({ name: 'short-lived-by-admin', role: 'reader', token: expect.stringMatching(TOKEN_RE) });
      expect((await http(d, tok.admin, 'token.list')).json.result.tokens.map((t: { name: string }) => t.name)).toEqual(expect.arrayContaining(['monitoring', 'ci', 'root-ci', 'short-lived-by-admin']));
      expect((await http(d, tok.admin, 'token.revoke', { id: 'short-lived-by-admin' })).json.result).toMatchObject({ revoked: true });
      expect((await http(d, tok.admin, 'unit.converge', {})).json).toHaveProperty('result');
      expect((await http(d, tok.admin, 'scope.set', { name: 'mail.smart-host', value: false })).json).toHaveProperty('result');
      // The admin token of --token-file.
      expect((await http(d, d.token(), 'token.list')).json).toHaveProperty('result');
      // The unix socket: no token at all.
      expect((await unix(d, 'token.list')).json.result.tokens.length).toBeGreaterThanOrEqual(4);
      const viaSocket = await d.cpcmd(['token:list']);
      expectExit(viaSocket, EXIT.ok);
      expect(viaSocket.stdout).toMatch(/root-ci\s+admin/);
    });

    it('an expired token and a revoked token get -32001 at once', async () => {
      const short = JSON.parse((await d.cpcmd(['token:create', '--role', 'reader', '--name', 'one-second', '--expires', '1s', '-o', 'json'])).stdout);
      expect((await http(d, short.token, 'daemon.status', {}, freshPeer())).status).toBe(200);
      await sleep(Math.max(0, Date.parse(short.expiresAt) - Date.now()) + 100);
      const expired = await http(d, short.token, 'daemon.status', {}, freshPeer());
      expect(expired.status).toBe(401);
      expect(expired.json).toEqual({ jsonrpc: '2.0', id: null, error: { code: CODE.unauthorized, message: expect.stringMatching(/unknown, revoked or expired/) } });

      const made = JSON.parse((await d.cpcmd(['token:create', '--role', 'operator', '--scopes', 'net.hostname', '--name', 'temp-op', '-o', 'json'])).stdout);
      expect((await http(d, made.token, 'scope.get', { name: 'net.hostname' })).status).toBe(200);
      const revoke = await d.cpcmd(['token:revoke', 'temp-op']);
      expectExit(revoke, EXIT.ok);
      expect(revoke.stdout).toBe(`revoked temp-op (${made.id})\n`);
      const after = await http(d, made.token, 'scope.set', { name: 'net.hostname', value: 'revoked.example.test' }, freshPeer());
      expect(after.status).toBe(401);
      expect(after.json).toMatchObject({ error: { code: CODE.unauthorized } });
      await expect(WsConn.open(d.port!, made.token, { localAddress: freshPeer() })).rejects.toMatchObject({ status: 401 });
      const bad = await cpcmd(['scope:get', 'net.hostname'], { url: d.url, token: made.token });
      expectRefused(bad, EXIT.unauthorized, /unauthorized/i);
      expect(await readFile(path.join(box.root, 'etc/hostname'), 'utf8')).toBe('op2.example.test\n');
      const listed = JSON.parse((await d.cpcmd(['token:list', '-o', 'json'])).stdout) as { name: string; revoked: boolean }[];
      expect(listed.find((t) => t.name === 'temp-op')).toMatchObject({ revoked: true });
      expectRefused(await d.cpcmd(['token:revoke', 'temp-op']), EXIT.notFound, /no active token/);
    });

    it('a revoked token stops at once on a WebSocket opened before the revocation too', async () => {
      const made = JSON.parse((await d.cpcmd(['token:create', '--role', 'operator', '--scopes', 'net.hostname', '--name', 'ws-op', '-o', 'json'])).stdout);
      const ws = await WsClient.open(d.port!, made.token);
      try {
        expect(await ws.call('scope.get', { name: 'net.hostname' })).toHaveProperty('result');
        expectExit(await d.cpcmd(['token:revoke', 'ws-op']), EXIT.ok);
        // "ends it at once": the open connection must not keep the revoked token's rights.
        const a = await ws.call('scope.set', { name: 'net.hostname', value: 'after-revoke.example.test' }).catch((err: Error) => ({ closed: err.message }));
        expect(a, 'a call on the open WebSocket after token:revoke').not.toHaveProperty('result');
        if ('error' in a) expect(a.error.code).toBe(CODE.unauthorized);
      } finally {
        ws.close();
      }
      expect(await readFile(path.join(box.root, 'etc/hostname'), 'utf8')).toBe('op2.example.test\n');
    });
  });

  // -------------------------------------------------------------------------------------------
  describe('abuse limits from a YAML --config', () => {
    let lim: Daemon;
    let admin: string;
    const LIMIT = 3;
    const CAP = 4;
    const PING_MS = 250;

    beforeAll(async () => {
      lim = await Daemon.start(await makeRoot(), { config: { authFailureLimit: LIMIT, authFailureWindowMs: 60_000, maxConnections: CAP, wsPingIntervalMs: PING_MS } });
      admin = lim.token();
    });
    afterAll(async () => {
      await lim?.stop();
    });

    it(`answers 429 with -32008 after ${LIMIT} wrong tokens from one peer, over HTTP and WebSocket; a valid token and other peers still get in`, async () => {
      const peer = freshPeer();
      const call = body('scope.list');
      for (let i = 0; i < LIMIT; i++) {
        const r = await httpPostFrom({ port: lim.port! }, call, { token: `wrong-token-${i}-xxxxxxxxxxxxxxxx`, localAddress: peer });
        expect(r.status, `attempt ${i + 1}`).toBe(401);
        expect(JSON.parse(r.text)).toMatchObject({ error: { code: CODE.unauthorized } });
      }
      for (const auth of [{ token: 'wrong-token-again-xxxxxxxxxxxxxxxx' }, {}]) {
        const r = await httpPostFrom({ port: lim.port! }, call, { ...auth, localAddress: peer });
        expect(r.status).toBe(429);
        expect(JSON.parse(r.text)).toEqual({ jsonrpc: '2.0', id: null, error: { code: CODE.busy, message: expect.stringMatching(/^Too many failed logins from .*: try again in \d+ s$/) } });
      }
      await expect(WsConn.open(lim.port!, 'wrong-token-ws-xxxxxxxxxxxxxxxx', { localAddress: peer })).rejects.toMatchObject({ status: 429 });

      // A valid token from the same address is never locked out.
      const ok = await httpPostFrom({ port: lim.port! }, call, { token: admin, localAddress: peer });
      expect(ok.status).toBe(200);
      expect(JSON.parse(ok.text)).toHaveProperty('result');
      const ws = await WsConn.open(lim.port!, admin, { localAddress: peer });
      await ws.close();
      // The limit is per peer address.
      const other = await httpPostFrom({ port: lim.port! }, call, { token: 'wrong-token-other-xxxxxxxxxxxxxxxx', localAddress: freshPeer() });
      expect(other.status).toBe(401);
    });

    it('cpcmd reports the login limit as busy (exit 10) with the daemon\'s message, over http:// and ws://', async () => {
      // cpcmd connects from 127.0.0.1: use that address's budget up first.
      for (let i = 0; i < LIMIT; i++) await httpPost({ port: lim.port! }, body('scope.list'), { token: `wrong-${i}-xxxxxxxxxxxxxxxxxxxxxx` });
      for (const url of [lim.url, lim.wsUrl]) {
        const r = await cpcmd(['scope:list'], { url, token: 'wrong-token-cpcmd-xxxxxxxxxxxxxxxx' });
        expectRefused(r, EXIT.busy, /Too many failed logins/);
        expect(await cpcmd(['scope:get', 'net.hostname'], { url, token: admin }), url).toMatchObject({ code: EXIT.ok });
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

        const h = await httpPost({ port: lim.port! }, body('daemon.status'), { token: admin, timeoutMs: 5_000 }).catch((err: NodeJS.ErrnoException) => ({ status: 0, text: '', error: err.code ?? err.message }));
        expect.soft(h.status === 503 ? JSON.parse(h.text) : h, 'an HTTP request beyond the cap').toMatchObject({ jsonrpc: '2.0', id: null, error: { code: CODE.busy, message: expect.stringMatching(/connections/i) } });
        expect.soft(h.status, 'HTTP status beyond the cap').toBe(503);

        const c = await cpcmd(['daemon:status'], { url: lim.url, token: admin });
        expect.soft(c.code, `cpcmd beyond the cap: ${c.stderr}`).toBe(EXIT.busy);
        expect.soft(c.stderr).toMatch(/^cpcmd: .*connections/i);
      } finally {
        for (const c of open.splice(0)) c.close();
      }
      // Once they are closed, the daemon serves again.
      await waitFor('a connection to be accepted again', async () => {
        const r = await httpPost({ port: lim.port! }, body('daemon.status'), { token: admin, timeoutMs: 2_000 }).catch(() => undefined);
        return r?.status === 200 ? r : undefined;
      }, 5_000);
      const again = await WsClient.open(lim.port!, admin);
      expect(await again.call('daemon.status')).toHaveProperty('result');
      again.close();
    });

    it(`drops a WebSocket peer that never answers pings (wsPingIntervalMs ${PING_MS}) and keeps one that does`, async () => {
      await sleep(300); // the connections of the previous test are gone
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
        for (const c of more) c.close();
        polite.close();
      }
    });
  });

  // -------------------------------------------------------------------------------------------
  describe('audit trail', () => {
    let since = '';
    let entries: Record<string, any>[] = [];

    let refusals: Record<string, any>[] = [];

    it('records every mutation with time, actor, transport and peer, target, old and new values, the plan and the outcome; refusals apart, with counts', async () => {
      since = new Date().toISOString();
      const hostname = path.join(box.root, 'etc/hostname');
      const before = (await d.cpcmd(['scope:get', 'net.hostname'])).stdout.trim();
      expect(before).toMatch(/\.example\.test$/);

      // set: applied, then unchanged, then refused (invalid value)
      expectExit(await d.cpcmd(['scope:set', 'net.hostname', 'audit-a.example.test']), EXIT.ok);
      expect((await d.cpcmd(['scope:set', 'net.hostname', 'audit-a.example.test'])).stdout).toMatch(/unchanged/);
      expectExit(await d.cpcmd(['scope:set', 'net.hostname', 'not_a_hostname']), EXIT.invalid);
      // refused: forbidden to a reader over HTTP
      expect((await http(d, tok.reader, 'scope.set', { name: 'net.hostname', value: 'evil.example.test' })).json).toMatchObject({ error: { code: CODE.forbidden } });
      // converge after a hand edit
      await writeFile(hostname, 'drifted.example.test\n');
      expectExit(await d.cpcmd(['converge', 'net/hostname']), EXIT.ok);
      expect(await readFile(hostname, 'utf8')).toBe('audit-a.example.test\n');
      // var.set over HTTP with an admin token
      expect((await http(d, tok.admin, 'var.set', { name: 'postfix_relay_mynetworks', value: true })).json).toMatchObject({ result: { status: 'applied' } });
      // adopt a hand edit of relayhost
      await box.postconf(['-e', 'relayhost=[adopted.example.test]:2525']);
      box.backdateMainCf();
      expectExit(await d.cpcmd(['scope:check', '--adopt', 'mail.smart-host']), EXIT.ok);
      // reset
      expectExit(await d.cpcmd(['scope:reset', 'mail.smart-host']), EXIT.ok);
      expect(await relayhostOf(box)).toBe('');
      // token create and revoke over a WebSocket
      const ws = await WsClient.open(d.port!, tok.admin);
      let auditedId = '';
      try {
        const c = await ws.call('token.create', { role: 'reader', name: 'audited' });
        auditedId = (c as { result: { id: string } }).result.id;
        expect(await ws.call('token.revoke', { id: 'audited' })).toHaveProperty('result');
      } finally {
        ws.close();
      }
      // rolled back: postmap cannot write the database where a directory stands
      const db = box.authDb;
      await mkdir(db);
      const mainCf = await readFile(box.mainCf, 'utf8');
      const failed = await d.cpcmd(['scope:set', 'mail.smart-host', "'[rb.example.test]:587'", 'bob', 'pw-rollback-1']);
      await rm(db, { recursive: true });
      expectRefused(failed, EXIT.convergeFailed, /rolled back/);
      expect(await readFile(box.mainCf, 'utf8')).toBe(mainCf);

      const listed = await d.cpcmd(['audit:list', '--since', since, '-o', 'json']);
      expectExit(listed, EXIT.ok);
      entries = JSON.parse(listed.stdout);
      const now = Date.now();
      for (const e of entries) {
        expect(e.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
        expect(Date.parse(e.time)).toBeGreaterThanOrEqual(Date.parse(since));
        expect(Date.parse(e.time)).toBeLessThanOrEqual(now);
        expect(Array.isArray(e.plan)).toBe(true);
        expect(typeof e.revision).toBe('number');
      }
      expect(entries.map((e) => e.seq)).toEqual([...entries.map((e) => e.seq)].sort((a, b) => a - b));
      // Refusals are kept apart, one row per caller, action and target with a count; never in the history.
      expect(entries.filter((e) => e.outcome === 'refused')).toEqual([]);
      const refusedList = await d.cpcmd(['audit:list', '--refused', '--since', since, '-o', 'json']);
      expectExit(refusedList, EXIT.ok);
      refusals = JSON.parse(refusedList.stdout);
      const find = (what: Record<string, unknown>, among = entries) => {
        const hit = among.find((e) => expect.objectContaining(what).asymmetricMatch(e));
        expect(hit, `no audit entry like ${JSON.stringify(what)} in\n${JSON.stringify(among, null, 1)}`).toBeDefined();
        return hit!;
      };
      const unixActor = { actor: 'unix-socket', transport: 'unix' };
      const applied = find({ ...unixActor, action: 'scope.set', target: 'net.hostname', outcome: 'applied', old: before, new: 'audit-a.example.test' });
      expect(applied.plan).toEqual(expect.arrayContaining([expect.stringContaining('/etc/hostname')]));
      // No-ops are kept apart too, one row per caller, action and target with a count and the last value.
      expect(entries.filter((e) => e.outcome === 'unchanged')).toEqual([]);
      const noops = JSON.parse((await d.cpcmd(['audit:list', '--unchanged', '--since', since, '-o', 'json'])).stdout) as Record<string, any>[];
      expect(find({ ...unixActor, action: 'scope.set', target: 'net.hostname', value: 'audit-a.example.test' }, noops).count).toBeGreaterThanOrEqual(1);
      expect(find({ ...unixActor, action: 'scope.set', target: 'net.hostname', count: expect.any(Number) }, refusals).reason).toMatch(/not_a_hostname|hostname|label/);
      const forbidden = find({ actor: `monitoring (${idOf(tok.reader)})`, transport: 'http 127.0.0.1', action: 'scope.set', target: 'net.hostname' }, refusals);
      expect(forbidden.reason).toMatch(/lacks the operator role needed for scope\.set/);
      expect(forbidden.count).toBeGreaterThanOrEqual(1);
      expect(Date.parse(forbidden.first)).toBeLessThanOrEqual(Date.parse(forbidden.last));
      expect(find({ ...unixActor, action: 'unit.converge', target: 'net/hostname', outcome: 'applied' }).plan).toEqual(expect.arrayContaining([expect.stringContaining('/etc/hostname')]));
      find({ actor: `root-ci (${idOf(tok.admin)})`, transport: 'http 127.0.0.1', action: 'var.set', target: 'postfix_relay_mynetworks', old: false, new: true, outcome: 'applied' });
      find({ ...unixActor, action: 'scope.adopt', target: 'mail.smart-host', outcome: 'applied', new: { postfix_smarthost: expect.objectContaining({ host: '[adopted.example.test]:2525' }) } });
      find({ ...unixActor, action: 'scope.reset', target: 'mail.smart-host', outcome: 'applied' });
      find({ actor: `root-ci (${idOf(tok.admin)})`, transport: 'ws 127.0.0.1', action: 'token.create', target: `audited (${auditedId})`, new: { role: 'reader', scopes: [], expiresAt: null }, outcome: 'applied' });
      find({ actor: `root-ci (${idOf(tok.admin)})`, transport: 'ws 127.0.0.1', action: 'token.revoke', target: `audited (${auditedId})`, outcome: 'applied' });
      const rolledBack = find({ ...unixActor, action: 'scope.set', target: 'mail.smart-host', outcome: 'rolled-back', new: { host: '[rb.example.test]:587', username: 'bob', password: REDACTED } });
      expect(rolledBack.reason).toEqual(expect.any(String));
      expect(rolledBack.plan.length).toBeGreaterThan(0);
      expect(listed.stdout).not.toContain('pw-rollback-1');
    });

    it('audit:list filters by --scope, --since and --limit, in cli and json', async () => {
      const json = async (...args: string[]) => {
        const r = await d.cpcmd(['audit:list', ...args, '-o', 'json']);
        expectExit(r, EXIT.ok);
        return JSON.parse(r.stdout) as Record<string, any>[];
      };
      const mail = await json('--scope', 'mail.*', '--since', since);
      expect(mail.map((e) => e.action)).toEqual(expect.arrayContaining(['scope.adopt', 'scope.reset', 'scope.set']));
      for (const e of mail) expect(e.target).toMatch(/^mail\./);

      const varSet = entries.find((e) => e.action === 'var.set')!;
      const fromVarSet = await json('--since', varSet.time);
      expect(fromVarSet.map((e) => e.seq)).toContain(varSet.seq);
      for (const e of fromVarSet) expect(Date.parse(e.time)).toBeGreaterThanOrEqual(Date.parse(varSet.time));
      expect(fromVarSet.some((e) => e.action === 'scope.set' && e.target === 'net.hostname' && e.outcome === 'applied')).toBe(false);
      expect((await json('--since', '1h')).length).toBeGreaterThanOrEqual(entries.length);
      expect(await json('--since', new Date(Date.now() + 3_600_000).toISOString())).toEqual([]);
      const last2 = await json('--limit', '2');
      expect(last2).toHaveLength(2);
      expect(last2.map((e) => e.seq)).toEqual(entries.slice(-2).map((e) => e.seq));

      const cli = await d.cpcmd(['audit:list', '--since', since]);
      expectExit(cli, EXIT.ok);
      expect(cli.stdout).toMatch(/^\S+Z {2}unix-socket via unix {2}scope\.set net\.hostname {2}applied {2}-> "audit-a\.example\.test"$/m);
      expect(cli.stdout).not.toMatch(/ refused/);
      expect(cli.stdout).toMatch(/scope\.set mail\.smart-host {2}rolled-back: /);
      const refusedCli = await d.cpcmd(['audit:list', '--refused', '--since', since]);
      expectExit(refusedCli, EXIT.ok);
      expect(refusedCli.stdout).toMatch(new RegExp(`^\\S+Z {2}monitoring \\(${idOf(tok.reader)}\\) via http 127\\.0\\.0\\.1 {2}scope\\.set net\\.hostname {2}refused \\d+ times? since \\S+Z: forbidden`, 'm'));
      const mailRefusals = JSON.parse((await d.cpcmd(['audit:list', '--refused', '--scope', 'mail.*', '-o', 'json'])).stdout) as Record<string, any>[];
      for (const r of mailRefusals) expect(r.target).toMatch(/^mail\./);
      expect(refusals.length).toBeGreaterThan(0);
      expect((await d.cpcmd(['audit:list', '--since', new Date(Date.now() + 3_600_000).toISOString()])).stdout).toBe('no entries\n');
      expectRefused(await d.cpcmd(['audit:list', '--since', 'yesterday']), EXIT.invalid, /--since/);
    });

    it('records an entry durably before answering: kill -9 right after the answer, and the trail survives the restart', async () => {
      const count = (await unix(d, 'audit.list', { limit: 1_000 })).json.result.entries.length;
      const set = await unix(d, 'scope.set', { name: 'net.hostname', value: 'durable.example.test' });
      expect(set.json).toMatchObject({ result: { status: 'applied' } });
      process.kill(d.pid, 'SIGKILL');
      await d.exited;
      d = await Daemon.start(box.root);
      const after = (await unix(d, 'audit.list', { limit: 1_000 })).json.result.entries;
      expect(after).toHaveLength(count + 1);
      expect(after.at(-1)).toMatchObject({ action: 'scope.set', target: 'net.hostname', new: 'durable.example.test', outcome: 'applied', actor: 'unix-socket' });
      const viaCli = await d.cpcmd(['audit:list', '--since', since, '-o', 'json']);
      expect(JSON.parse(viaCli.stdout).map((e: { seq: number }) => e.seq)).toEqual([...entries.map((e) => e.seq), after.at(-1).seq]);
      // Tokens survive too.
      expect((await http(d, tok.reader, 'daemon.status')).status).toBe(200);
    });

    describe('rotation at auditKeep', () => {
      let root: string;
      let rot: Daemon;
      const sets = async (from: number, to: number) => {
        for (let i = from; i <= to; i++) expect((await unix(rot, 'scope.set', { name: 'net.hostname', value: `rot${i}.example.test` })).json).toHaveProperty('result');
      };
      const trail = async () => (await unix(rot, 'audit.list', { limit: 1_000 })).json.result.entries.map((e: { new: string }) => e.new);

      beforeAll(async () => {
        root = await makeRoot();
        rot = await Daemon.start(root, { listen: 'none', config: { auditKeep: 5 } });
      });

      it('keeps only the newest auditKeep entries, also across a restart', async () => {
        await sets(1, 8);
        const names = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => `rot${a + i}.example.test`);
        expect(await trail()).toEqual(names(4, 8));
        const cli = await rot.cpcmd(['audit:list', '-o', 'json']);
        expect(JSON.parse(cli.stdout)).toHaveLength(5);
        await rot.stop();
        rot = await Daemon.start(root, { listen: 'none', config: { auditKeep: 5 } });
        expect(await trail()).toEqual(names(4, 8));
        await sets(9, 9);
        expect(await trail()).toEqual(names(5, 9));
      });

      it('trims the trail to a lowered auditKeep after a restart', async () => {
        await rot.stop();
        rot = await Daemon.start(root, { listen: 'none', config: { auditKeep: 3 } });
        await sets(10, 10);
        expect(await trail()).toEqual(['rot8.example.test', 'rot9.example.test', 'rot10.example.test']);
      });
    });
  });

  // -------------------------------------------------------------------------------------------
  describe('secrets never leak', () => {
    let sbox: PostfixRoot;
    let sd: Daemon;
    let relay: RelaySink;

    beforeAll(async () => {
      sbox = await PostfixRoot.create();
      [sd, relay] = await Promise.all([Daemon.start(sbox.root), RelaySink.start()]);
    });
    afterAll(async () => {
      await sd?.stop();
      await relay?.close();
    });

    it('a known password and known tokens appear nowhere: cpcmd in every output form, RPC results, dry-run plans, errors, logs, audit entries, events', async () => {
      const hex = randomBytes(5).toString('hex');
      const PW = {
        applied: `Pw1-${hex}-applied`,
        second: `Pw2-${hex}-second`,
        dry: `Pw3-${hex}-dryrun`,
        bad: `Pw4-${hex}-refused`,
        rollback: `Pw5-${hex}-rolledback`,
        hand: `Pw6-${hex}-handedit`,
        verify: `Pw7-${hex}-verify`,
        rpc: `Pw8-${hex}-rpcjob`,
      };
      const HOST = "'[relay.example.test]:587'";
      const HOSTVAL = '[relay.example.test]:587';
      const seen: { where: string; text: string }[] = [];
      const note = (where: string, text: string) => seen.push({ where, text });
      const adminFile = sd.token();

      // Everything published, from the start.
      const events = await WsClient.open(sd.port!, adminFile);
      expect(await events.call('events.subscribe', { topics: ['*'] })).toMatchObject({ result: { subscription: expect.any(String) } });

      // The known tokens: printed once by token:create, which is the only place they may appear.
      const opMade = await sd.cpcmd(['token:create', '--role', 'operator', '--scopes', 'mail.*,cp.bootstrapper', '--name', 'leak-op', '-o', 'json']);
      const OP = JSON.parse(opMade.stdout).token as string;
      const rdMade = await sd.cpcmd(['token:create', '--role', 'reader', '--name', 'leak-reader']);
      const RD = rdMade.stdout.split('\n')[0]!;
      expect(OP).toMatch(TOKEN_RE);
      expect(RD).toMatch(TOKEN_RE);

      const conns = {
        socket: { socket: sd.socket },
        http: { url: sd.url, token: OP },
        ws: { url: sd.wsUrl, token: OP },
        reader: { url: sd.url, token: RD },
      } as const;
      type Conn = keyof typeof conns;
      const cp = async (conn: Conn, args: string[], expected: number) => {
        const r = await cpcmd(args, conns[conn]);
        note(`cpcmd(${conn}) ${args.join(' ')}`, `${r.stdout}\n${r.stderr}`);
        expectExit(r, expected);
        return r;
      };
      const forms = ['cli', 'json', 'yaml'] as const;

      // Sets in every output form and over every transport, and dry runs with a password never applied.
      await cp('http', ['scope:set', 'mail.smart-host', HOST, 'alice', PW.applied], EXIT.ok);
      await cp('ws', ['scope:set', 'mail.smart-host', HOST, 'alice', PW.second, '-o', 'json'], EXIT.ok);
      await cp('socket', ['scope:set', 'mail.smart-host', HOST, 'alice', PW.applied, '-o', 'yaml'], EXIT.ok);
      for (const form of forms) {
        const dry = await cp('http', ['scope:set', 'mail.smart-host', HOST, 'alice', PW.dry, '--dry-run', '-o', form], EXIT.ok);
        expect(dry.stdout).toMatch(/smarthost-auth/);
        expect(dry.stdout).toMatch(/redacted/);
      }
      await cp('http', ['scope:set', 'cp.bootstrapper', 'postfix_smarthost', `[host:relay.example.test,username:alice,password:${PW.dry}]`, '--dry-run', '-o', 'json'], EXIT.ok);
      await cp('http', ['scope:set', 'cp.bootstrapper', 'postfix_smarthost', `[host:relay.example.test,username:alice,password:${PW.dry}]`, '--dry-run'], EXIT.ok);

      // Reads, in every form, over the socket, with the operator and with a reader.
      const reads = [
        ['scope:get', 'mail.smart-host'],
        ['scope:get', 'cp.bootstrapper'],
        ['scope:get', 'cp.bootstrapper', 'postfix_smarthost'],
        ['var:list'],
        ['scope:check', 'mail.smart-host'],
        ['audit:list'],
        ['scope:info', 'mail.smart-host'],
        ['daemon:status'],
      ];
      for (const form of forms) {
        for (const args of reads) await cp('socket', [...args, '-o', form], EXIT.ok);
        await cp('socket', ['token:list', '-o', form], EXIT.ok);
        await cp('reader', ['audit:list', '-o', form], EXIT.ok);
        await cp('http', ['scope:get', 'mail.smart-host', '-o', form], EXIT.ok);
      }
      const got = await cp('socket', ['scope:get', 'mail.smart-host', '-o', 'json'], EXIT.ok);
      expect(JSON.parse(got.stdout)).toEqual({ host: HOSTVAL, username: 'alice', password: REDACTED });

      // Errors: refused values that carry a password, in every form.
      for (const form of forms) {
        await cp('http', ['scope:set', 'mail.smart-host', "'bad host!'", 'alice', PW.bad, '-o', form], EXIT.invalid);
        await cp('http', ['scope:set', 'mail.smart-host', HOST, 'alice', `${PW.bad} `, '-o', form], EXIT.invalid);
        await cp('http', ['scope:set', 'cp.bootstrapper', 'postfix_smarthost', `[host:relay.example.test,username:alice,password:${PW.bad},port:25]`, '-o', form], EXIT.invalid);
        await cp('http', ['scope:set', 'mail.smart-host', HOST, 'alice', PW.bad, 'extra', '-o', form], EXIT.invalid);
      }
      // Refused inside the converge: credentials with TLS level none.
      await cp('socket', ['scope:set', 'cp.bootstrapper', 'postfix_smtp_tls_security_level', 'none'], EXIT.invalid);
      await cp('socket', ['scope:set', 'mail.smart-host', 'false'], EXIT.ok);
      await cp('socket', ['scope:set', 'cp.bootstrapper', 'postfix_smtp_tls_security_level', 'none'], EXIT.ok);
      await cp('http', ['scope:set', 'mail.smart-host', HOST, 'alice', PW.bad, '-o', 'json'], EXIT.invalid);
      await cp('socket', ['scope:set', 'cp.bootstrapper', 'postfix_smtp_tls_security_level', "''"], EXIT.ok);
      // Forbidden, and a wrong token that contains the real one.
      await cp('http', ['scope:set', 'net.hostname', 'x.example.test'], EXIT.unauthorized);
      const wrong = await cpcmd(['scope:list'], { url: sd.url, token: `${OP}x` });
      note('cpcmd with a wrong token', `${wrong.stdout}\n${wrong.stderr}`);
      expectExit(wrong, EXIT.unauthorized);
      // Rolled back: postmap cannot write its database where a directory stands.
      await rm(sbox.authDb, { force: true });
      await mkdir(sbox.authDb);
      for (const form of ['cli', 'json'] as const) await cp('http', ['scope:set', 'mail.smart-host', HOST, 'alice', PW.rollback, '-o', form], EXIT.convergeFailed);
      await rm(sbox.authDb, { recursive: true });
      // --verify against a relay that refuses the login: the relay's answer is shown, never the password.
      for (const form of forms) {
        const v = await cp('http', ['scope:set', 'mail.smart-host', relay.relayhostWord, RELAY_USER, PW.verify, '--verify', '-o', form], EXIT.invalid);
        expect(v.stderr).toMatch(/535/);
      }
      expect(relay.auths.map((a) => a.password)).toContain(PW.verify);

      // Back to the applied password, then a hand edit of the credentials: drift, then adopt.
      await cp('socket', ['scope:set', 'mail.smart-host', HOST, 'alice', PW.applied], EXIT.ok);
      await writeFile(sbox.authMap, `${HOSTVAL} alice:${PW.hand}\n`, { mode: 0o600 });
      for (const form of forms) {
        const drift = await cp('socket', ['scope:check', 'mail.smart-host', '-o', form], EXIT.drift);
        expect(drift.stdout).toMatch(/smarthost-auth/);
      }
      await cp('http', ['scope:get', 'mail.smart-host'], EXIT.ok);
      await cp('http', ['scope:check', '--adopt', 'mail.smart-host', '--dry-run', '-o', 'json'], EXIT.ok);
      await cp('http', ['scope:check', '--adopt', 'mail.smart-host', '-o', 'yaml'], EXIT.ok);

      // Raw RPC over HTTP, the unix socket and a WebSocket: reads, a dry run, and a set as a job.
      const rpc: [string, Record<string, unknown>][] = [
        ['scope.get', { name: 'mail.smart-host' }],
        ['scope.get', { name: 'cp.bootstrapper', args: ['postfix_smarthost'] }],
        ['var.get', { name: 'postfix_smarthost' }],
        ['var.list', {}],
        ['scope.check', { name: 'mail.smart-host' }],
        ['audit.list', { limit: 1_000 }],
        ['scope.set', { name: 'mail.smart-host', value: { host: HOSTVAL, username: 'alice', password: PW.dry }, dryRun: true }],
        ['var.set', { name: 'postfix_smarthost', value: { host: HOSTVAL, username: 'alice', password: PW.dry }, dryRun: true }],
        ['var.set', { name: 'postfix_smarthost', value: { host: HOSTVAL, username: 'alice', password: `${PW.bad}\nrelayhost = [evil.example.test]` } }],
        ['scope.set', { name: 'mail.smart-host', value: { host: 'bad host', username: 'alice', password: PW.bad } }],
        ['scope.set', { name: 'mail.smart-host', args: [HOSTVAL, 'alice'] }],
        // The refusals just made, with their reasons.
        ['audit.list', { limit: 1_000, refused: true }],
      ];
      for (const [method, params] of rpc) note(`http ${method}`, (await http(sd, OP, method, params)).text);
      for (const [method, params] of rpc.slice(0, 6)) note(`unix ${method}`, (await unix(sd, method, params)).text);
      const queued = await http(sd, OP, 'scope.set', { name: 'mail.smart-host', value: { host: HOSTVAL, username: 'alice', password: PW.rpc }, async: true });
      note('http scope.set async', queued.text);
      const job = queued.json.result.job as string;
      const done = await waitFor('the job to end', async () => {
        const a = await http(sd, OP, 'job.get', { id: job });
        return a.json.result.state === 'done' || a.json.result.state === 'failed' ? a : undefined;
      });
      note('http job.get', done.text);
      expect(done.json.result).toMatchObject({ state: 'done', result: { status: 'applied', value: { password: REDACTED } } });
      const wsOp = await WsClient.open(sd.port!, OP);
      try {
        for (const [method, params] of rpc.slice(0, 7)) await wsOp.call(method, params);
        await wsOp.call('scope.set', { name: 'mail.smart-host', value: { host: HOSTVAL, username: 'alice', password: PW.second } });
        await wsOp.call('scope.set', { name: 'mail.smart-host', value: { host: HOSTVAL, username: 'alice', password: PW.applied } });
        note('ws operator', wsOp.messages.join('\n'));
      } finally {
        wsOp.close();
      }
      expect(await readFile(sbox.authMap, 'utf8')).toBe(`${HOSTVAL} alice:${PW.applied}\n`);

      // The events: a scope.changed for each set, with the value redacted.
      await waitFor('the last scope.changed event', () =>
        events.messages.map((m) => JSON.parse(m)).filter((m) => m.method === 'event' && m.params.topic === 'scope.changed' && m.params.data.scope === 'mail.smart-host').length >= 8 ? true : undefined,
      );
      const evs = events.messages.map((m) => JSON.parse(m)).filter((m) => m.method === 'event');
      expect(evs.some((e) => e.params.topic === 'job.progress')).toBe(true);
      expect(evs.some((e) => e.params.topic === 'unit.converged')).toBe(true);
      expect(evs.find((e) => e.params.topic === 'scope.changed' && e.params.data.scope === 'mail.smart-host').params.data.value).toEqual({ host: HOSTVAL, username: 'alice', password: REDACTED });
      note('events', events.messages.join('\n'));
      events.close();

      // The audit trail, and the daemon's log.
      const audit = await unix(sd, 'audit.list', { limit: 1_000 });
      note('audit.list', audit.text);
      expect(audit.json.result.entries.filter((e: { outcome: string }) => e.outcome === 'rolled-back')).toHaveLength(2);
      const refused = await unix(sd, 'audit.list', { limit: 1_000, refused: true });
      note('audit.list refused', refused.text);
      expect(refused.json.result.refusals.length).toBeGreaterThan(0);
      note('daemon stderr', sd.stderr());

      // The search: every password, both tokens (and their secret parts) and the token file's token.
      const secrets: Record<string, string> = { ...PW, operatorToken: OP, operatorSecret: secretOf(OP), readerToken: RD, readerSecret: secretOf(RD), adminFileToken: adminFile };
      expect(opMade.stdout).toContain(OP);
      const leaks: string[] = [];
      for (const { where, text } of seen) for (const [name, s] of Object.entries(secrets)) if (text.includes(s)) leaks.push(`${name} in ${where}`);
      expect(leaks).toEqual([]);
      // The search did look at real output.
      const all = seen.map((s) => s.text).join('\n');
      expect(all.split(REDACTED).length).toBeGreaterThan(50);
      expect(seen.length).toBeGreaterThan(80);
    });

    it('keeps the credentials map and its database 0600 from the first byte, through creation, rewrites and removal', async () => {
      const w = await watchModes([sbox.dir, path.dirname(sbox.storeFile)], path.join(sbox.root, 'watch'));
      const HOSTVAL = '[relay.example.test]:587';
      for (let i = 0; i < 13; i++) {
        const value = i % 4 === 3 ? false : { host: HOSTVAL, username: `user${i}`, password: `mode-check-${i}` };
        expect((await unix(sd, 'scope.set', { name: 'mail.smart-host', value })).json, `set ${i}`).toMatchObject({ result: { status: 'applied' } });
      }
      const { loops, seen } = await w.stop();
      expect(loops).toBeGreaterThan(100);
      const secretFiles = Object.entries(seen).filter(([f]) => /smarthost-auth/.test(path.basename(f)) || f.startsWith(path.dirname(sbox.storeFile)));
      const names = secretFiles.map(([f]) => f);
      // The map's temp file (written, then renamed over the map) was caught too: its creation was watched.
      expect(names).toEqual(expect.arrayContaining([sbox.authMap, sbox.authDb, path.join(sbox.dir, '.smarthost-auth.HEX.tmp'), sbox.storeFile]));
      const wider = secretFiles.filter(([, modes]) => Object.keys(modes).some((m) => m !== '600'));
      expect(wider, 'files holding secrets seen with a mode other than 0600').toEqual([]);
      expect((await stat(sbox.authMap)).mode & 0o777).toBe(0o600);
      expect((await stat(sbox.authDb)).mode & 0o777).toBe(0o600);
    });

    it('creates the admin token file and the store 0600 (in a 0700 directory) from their first byte', async () => {
      const root = await makeRoot();
      const tokenDir = path.join(root, 'etc/scoped');
      const storeDir = path.join(root, 'var/lib/scoped');
      const w = await watchModes([tokenDir, storeDir], path.join(root, 'watch'));
      const fresh = await Daemon.start(root);
      try {
        expect((await unix(fresh, 'scope.set', { name: 'net.hostname', value: 'modes.example.test' })).json).toHaveProperty('result');
        expect((await unix(fresh, 'token.create', { role: 'reader' })).json).toHaveProperty('result');
      } finally {
        await fresh.stop();
      }
      const { seen } = await w.stop();
      expect(Object.keys(seen)).toEqual(expect.arrayContaining([path.join(tokenDir, 'admin.token'), path.join(storeDir, 'scoped.sqlite')]));
      const wider = Object.entries(seen).filter(([, modes]) => Object.keys(modes).some((m) => m !== '600'));
      expect(wider, 'token or store files seen with a mode other than 0600').toEqual([]);
      expect((await stat(path.join(tokenDir, 'admin.token'))).mode & 0o777).toBe(0o600);
      expect((await stat(path.join(storeDir, 'scoped.sqlite'))).mode & 0o777).toBe(0o600);
      expect((await stat(storeDir)).mode & 0o777).toBe(0o700);
    });
  });

  // -------------------------------------------------------------------------------------------
  describe('concurrency', () => {
    const N = 50;
    const value = (tag: string, i: number) => ({ host: `[192.0.2.${i + 1}]:587`, username: `${tag}${i}`, password: `${tag}-pw-${i}-${randomBytes(3).toString('hex')}` });
    const shown = (v: { host: string; username: string }) => ({ host: v.host, username: v.username, password: REDACTED });

    /** The files and the store agree with one value, and scope.check finds nothing. */
    async function expectFilesEqual(v: { host: string; username: string; password: string }, revision: number) {
      expect(await relayhostOf(box)).toBe(v.host);
      expect(await readFile(box.authMap, 'utf8')).toBe(`${v.host} ${v.username}:${v.password}\n`);
      expect((await stat(box.authMap)).mode & 0o777).toBe(0o600);
      expect((await mustRun('postmap', ['-c', box.dir, '-q', v.host, `hash:${box.authMap}`])).trim()).toBe(`${v.username}:${v.password}`);
      expect((await unix(d, 'var.get', { name: 'postfix_smarthost' })).json.result.value).toEqual(shown(v));
      expect((await unix(d, 'scope.get', { name: 'mail.smart-host' })).json.result).toMatchObject({ value: shown(v), revision, drift: [] });
      expect((await unix(d, 'scope.check', { name: 'mail.smart-host' })).json.result).toEqual({ ok: true, drift: [] });
      expect((await readdir(box.dir)).filter((n) => n.endsWith('.tmp'))).toEqual([]);
    }

    let concurrentEntries: Record<string, any>[] = [];

    it(`serializes ${N} clients setting mail.smart-host at once (HTTP, WebSocket, unix socket, cpcmd); afterwards the files equal the stored value`, async () => {
      const admin = d.token();
      const r0 = (await unix(d, 'daemon.status')).json.result.revision as number;
      const values = Array.from({ length: N }, (_, i) => value('c', i));
      const sockets = await Promise.all(values.map((_, i) => (i % 5 === 1 ? WsClient.open(d.port!, admin) : undefined)));
      const one = async (i: number): Promise<{ status: string; revision: number; plan: unknown[]; value: unknown }> => {
        const v = values[i]!;
        const params = { name: 'mail.smart-host', value: v };
        switch (i % 5) {
          case 1: {
            const a = await sockets[i]!.call('scope.set', params);
            sockets[i]!.close();
            return (a as { result: any }).result ?? a;
          }
          case 2:
            return (await unix(d, 'scope.set', params)).json.result;
          case 3: {
            const r = await d.cpcmd(['scope:set', 'mail.smart-host', `'${v.host}'`, v.username, v.password, '-o', 'json']);
            expectExit(r, EXIT.ok);
            return JSON.parse(r.stdout);
          }
          default:
            return (await http(d, admin, 'scope.set', params)).json.result;
        }
      };
      const started = Date.now();
      const results = await Promise.all(values.map((_, i) => one(i)));
      const took = Date.now() - started;
      for (const [i, r] of results.entries()) expect(r, `client ${i}`).toMatchObject({ status: 'applied', value: shown(values[i]!) });
      // Serialized: every set got its own revision, one after another, and each planned against what the previous left.
      const revisions = results.map((r) => r.revision).sort((a, b) => a - b);
      expect(revisions).toEqual(Array.from({ length: N }, (_, i) => r0 + 1 + i));
      for (const r of results) expect(r.plan.length).toBeGreaterThan(0);
      const last = results.findIndex((r) => r.revision === r0 + N);
      await expectFilesEqual(values[last]!, r0 + N);

      const trail = (await unix(d, 'audit.list', { limit: 1_000 })).json.result.entries as Record<string, any>[];
      concurrentEntries = trail.filter((e) => e.action === 'scope.set' && e.target === 'mail.smart-host' && e.revision > r0 && e.revision <= r0 + N).sort((a, b) => a.revision - b.revision);
      expect(concurrentEntries).toHaveLength(N);
      expect(concurrentEntries.map((e) => e.outcome)).toEqual(Array(N).fill('applied'));
      expect(concurrentEntries.map((e) => e.new)).toEqual(revisions.map((rev) => shown(values[results.findIndex((r) => r.revision === rev)]!)));
      expect(took).toBeLessThan(30_000);
    });

    it('records the value each of those concurrent sets really replaced as its old value', () => {
      expect(concurrentEntries).toHaveLength(N);
      const broken = concurrentEntries.slice(1).flatMap((e, k) => (JSON.stringify(e.old) === JSON.stringify(concurrentEntries[k]!.new) ? [] : [`revision ${e.revision}: old ${JSON.stringify(e.old)}, but revision ${concurrentEntries[k]!.revision} set ${JSON.stringify(concurrentEntries[k]!.new)}`]));
      expect(broken).toEqual([]);
    });

    let conflictSince = '';

    it('--if-revision: a set at the current revision applies; a stale one answers conflict (cpcmd exit 8, RPC -32004) and changes nothing', async () => {
      conflictSince = new Date().toISOString();
      const at = (await unix(d, 'scope.get', { name: 'mail.smart-host' })).json.result.revision as number;
      const ok = await d.cpcmd(['scope:set', 'mail.smart-host', "'[rev1.example.test]:587'", '--if-revision', String(at)]);
      expectExit(ok, EXIT.ok);
      expect(ok.stdout).toMatch(/^mail\.smart-host: applied \(revision (\d+)\)/);
      const now = (await unix(d, 'scope.get', { name: 'mail.smart-host' })).json.result.revision as number;
      expect(now).toBeGreaterThan(at);

      const files = await hashTree(box.dir);
      const stale = await d.cpcmd(['scope:set', 'mail.smart-host', "'[stale.example.test]:587'", '--if-revision', String(at)]);
      expectRefused(stale, EXIT.conflict, new RegExp(`mail\\.smart-host is at revision ${now}, not ${at}`));
      const staleJson = await d.cpcmd(['scope:set', 'mail.smart-host', "'[stale.example.test]:587'", '--if-revision', String(at), '-o', 'json']);
      expectExit(staleJson, EXIT.conflict);
      const rpc = await http(d, d.token(), 'scope.set', { name: 'mail.smart-host', value: { host: '[stale.example.test]:587' }, ifRevision: at });
      expect(rpc.json).toEqual({ jsonrpc: '2.0', id: 1, error: { code: CODE.conflict, message: expect.stringContaining(`at revision ${now}, not ${at}`), data: { revision: now } } });
      expect(await hashTree(box.dir)).toEqual(files);
      expect(await relayhostOf(box)).toBe('[rev1.example.test]:587');

      const fresh = await http(d, d.token(), 'scope.set', { name: 'mail.smart-host', value: { host: '[rev2.example.test]:587' }, ifRevision: now });
      expect(fresh.json).toMatchObject({ result: { status: 'applied' } });
      expect(await relayhostOf(box)).toBe('[rev2.example.test]:587');
    });

    it('audits a conflict as refused, whether it came from cpcmd or over RPC', async () => {
      const rows = JSON.parse((await d.cpcmd(['audit:list', '--refused', '--since', conflictSince, '-o', 'json'])).stdout) as Record<string, any>[];
      const conflicts = rows.filter((e) => e.action === 'scope.set' && e.target === 'mail.smart-host' && /at revision \d+, not \d+/.test(e.reason));
      // One row per caller, counting its refusals: the two from cpcmd on the socket, the one over HTTP.
      expect(conflicts.map((e) => e.transport).sort()).toEqual(['http 127.0.0.1', 'unix']);
      expect(conflicts.find((e) => e.transport === 'unix')!.count).toBeGreaterThanOrEqual(2);
      const history = JSON.parse((await d.cpcmd(['audit:list', '--since', conflictSince, '-o', 'json'])).stdout) as Record<string, any>[];
      expect(history.filter((e) => /at revision \d+, not \d+/.test(e.reason ?? ''))).toEqual([]);
    });

    it(`lets exactly one of ${N} clients racing with the same --if-revision win; the others answer conflict`, async () => {
      const admin = d.token();
      const at = (await unix(d, 'scope.get', { name: 'mail.smart-host' })).json.result.revision as number;
      const values = Array.from({ length: N }, (_, i) => value('race', i));
      const answers = await Promise.all(
        values.map(async (v, i) => {
          const params = { name: 'mail.smart-host', value: v, ifRevision: at };
          return (i % 2 ? await unix(d, 'scope.set', params) : await http(d, admin, 'scope.set', params)).json;
        }),
      );
      const winners = answers.flatMap((a, i) => ('result' in a ? [i] : []));
      expect(winners).toHaveLength(1);
      for (const a of answers.filter((x) => 'error' in x)) expect(a.error).toMatchObject({ code: CODE.conflict, data: { revision: expect.any(Number) } });
      expect(answers.filter((x) => 'error' in x)).toHaveLength(N - 1);
      await expectFilesEqual(values[winners[0]!]!, answers[winners[0]!].result.revision);
    });
  });
});
