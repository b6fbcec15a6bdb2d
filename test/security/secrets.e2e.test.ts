/**
 * Security end to end, secrets: a known password and known tokens are searched for in
 * everything a user, a log reader or a subscriber can see; files holding secrets are 0600 from
 * their first byte. Each test has a daemon of its own.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RELAY_USER, RelaySink } from '../helpers/relay.js';
import { type ExitCodeName, expectExit } from '../helpers/expect.js';
import { type Scoped, WsClient, cpcmd, scoped, waitFor } from '../helpers/scoped.js';
import { REDACTED, TOKEN_RE, http, secretOf, unix, watchModes } from './shared.js';

describe('secrets never leak', { timeout: 60_000 }, () => {
  let sd: Scoped;
  let sbox: Scoped['postfix'];
  let relay: RelaySink;

  beforeEach(async () => {
    const [d, r] = await Promise.allSettled([scoped({ postfix: true }), RelaySink.start()]);
    if (d.status === 'fulfilled') sd = d.value;
    if (r.status === 'fulfilled') relay = r.value;
    if (d.status === 'rejected') throw d.reason;
    if (r.status === 'rejected') throw r.reason;
    sbox = sd.postfix;
  });
  afterEach(async () => {
    await sd?.close();
    await relay?.close();
  }, 60_000);

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
    const cp = async (conn: Conn, args: string[], expected: ExitCodeName) => {
      const r = await cpcmd(args, conns[conn]);
      note(`cpcmd(${conn}) ${args.join(' ')}`, `${r.stdout}\n${r.stderr}`);
      expectExit(r, expected);
      return r;
    };
    const forms = ['cli', 'json', 'yaml'] as const;

    // Sets in every output form and over every transport, and dry runs with a password never applied.
    await cp('http', ['scope:set', 'mail.smart-host', HOST, 'alice', PW.applied], 'ok');
    await cp('ws', ['scope:set', 'mail.smart-host', HOST, 'alice', PW.second, '-o', 'json'], 'ok');
    await cp('socket', ['scope:set', 'mail.smart-host', HOST, 'alice', PW.applied, '-o', 'yaml'], 'ok');
    for (const form of forms) {
      const dry = await cp('http', ['scope:set', 'mail.smart-host', HOST, 'alice', PW.dry, '--dry-run', '-o', form], 'ok');
      expect(dry.stdout).toMatch(/smarthost-auth/);
      expect(dry.stdout).toMatch(/redacted/);
    }
    await cp(
      'http',
      ['scope:set', 'cp.bootstrapper', 'postfix_smarthost', `[host:relay.example.test,username:alice,password:${PW.dry}]`, '--dry-run', '-o', 'json'],
      'ok',
    );
    await cp('http', ['scope:set', 'cp.bootstrapper', 'postfix_smarthost', `[host:relay.example.test,username:alice,password:${PW.dry}]`, '--dry-run'], 'ok');

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
      for (const args of reads) await cp('socket', [...args, '-o', form], 'ok');
      await cp('socket', ['token:list', '-o', form], 'ok');
      await cp('reader', ['audit:list', '-o', form], 'ok');
      await cp('http', ['scope:get', 'mail.smart-host', '-o', form], 'ok');
    }
    const got = await cp('socket', ['scope:get', 'mail.smart-host', '-o', 'json'], 'ok');
    expect(JSON.parse(got.stdout)).toEqual({ host: HOSTVAL, username: 'alice', password: REDACTED });

    // Errors: refused values that carry a password, in every form.
    for (const form of forms) {
      await cp('http', ['scope:set', 'mail.smart-host', "'bad host!'", 'alice', PW.bad, '-o', form], 'invalid');
      await cp('http', ['scope:set', 'mail.smart-host', HOST, 'alice', `${PW.bad} `, '-o', form], 'invalid');
      await cp(
        'http',
        ['scope:set', 'cp.bootstrapper', 'postfix_smarthost', `[host:relay.example.test,username:alice,password:${PW.bad},port:25]`, '-o', form],
        'invalid',
      );
      await cp('http', ['scope:set', 'mail.smart-host', HOST, 'alice', PW.bad, 'extra', '-o', form], 'invalid');
    }
    // Refused inside the converge: credentials with TLS level none.
    await cp('socket', ['scope:set', 'cp.bootstrapper', 'postfix_smtp_tls_security_level', 'none'], 'invalid');
    await cp('socket', ['scope:set', 'mail.smart-host', 'false'], 'ok');
    await cp('socket', ['scope:set', 'cp.bootstrapper', 'postfix_smtp_tls_security_level', 'none'], 'ok');
    await cp('http', ['scope:set', 'mail.smart-host', HOST, 'alice', PW.bad, '-o', 'json'], 'invalid');
    await cp('socket', ['scope:set', 'cp.bootstrapper', 'postfix_smtp_tls_security_level', "''"], 'ok');
    // Forbidden, and a wrong token that contains the real one.
    await cp('http', ['scope:set', 'net.hostname', 'x.example.test'], 'unauthorized');
    const wrong = await cpcmd(['scope:list'], { url: sd.url, token: `${OP}x` });
    note('cpcmd with a wrong token', `${wrong.stdout}\n${wrong.stderr}`);
    expectExit(wrong, 'unauthorized');
    // Rolled back: postmap cannot write its database where a directory stands.
    await rm(sbox.authDb, { force: true });
    await mkdir(sbox.authDb);
    for (const form of ['cli', 'json'] as const) await cp('http', ['scope:set', 'mail.smart-host', HOST, 'alice', PW.rollback, '-o', form], 'convergeFailed');
    await rm(sbox.authDb, { recursive: true });
    // --verify against a relay that refuses the login: the relay's answer is shown, never the password.
    for (const form of forms) {
      const v = await cp('http', ['scope:set', 'mail.smart-host', relay.relayhostWord, RELAY_USER, PW.verify, '--verify', '-o', form], 'invalid');
      expect(v.stderr).toMatch(/535/);
    }
    expect(relay.auths.map((a) => a.password)).toContain(PW.verify);

    // Back to the applied password, then a hand edit of the credentials: drift, then adopt.
    await cp('socket', ['scope:set', 'mail.smart-host', HOST, 'alice', PW.applied], 'ok');
    await writeFile(sbox.authMap, `${HOSTVAL} alice:${PW.hand}\n`, { mode: 0o600 });
    for (const form of forms) {
      const drift = await cp('socket', ['scope:check', 'mail.smart-host', '-o', form], 'drift');
      expect(drift.stdout).toMatch(/smarthost-auth/);
    }
    await cp('http', ['scope:get', 'mail.smart-host'], 'ok');
    await cp('http', ['scope:check', '--adopt', 'mail.smart-host', '--dry-run', '-o', 'json'], 'ok');
    await cp('http', ['scope:check', '--adopt', 'mail.smart-host', '-o', 'yaml'], 'ok');

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
      wsOp.terminate();
    }
    expect(await readFile(sbox.authMap, 'utf8')).toBe(`${HOSTVAL} alice:${PW.applied}\n`);

    // The events: a scope.changed for each set, with the value redacted.
    await waitFor('the last scope.changed event', () =>
      events.messages
        .map((m) => JSON.parse(m))
        .filter((m) => m.method === 'event' && m.params.topic === 'scope.changed' && m.params.data.scope === 'mail.smart-host').length >= 8
        ? true
        : undefined,
    );
    const evs = events.messages.map((m) => JSON.parse(m)).filter((m) => m.method === 'event');
    expect(evs.some((e) => e.params.topic === 'job.progress')).toBe(true);
    expect(evs.some((e) => e.params.topic === 'unit.converged')).toBe(true);
    expect(evs.find((e) => e.params.topic === 'scope.changed' && e.params.data.scope === 'mail.smart-host').params.data.value).toEqual({
      host: HOSTVAL,
      username: 'alice',
      password: REDACTED,
    });
    note('events', events.messages.join('\n'));
    events.terminate();

    // The audit trail, and the daemon's log.
    const audit = await unix(sd, 'audit.list', { limit: 1_000 });
    note('audit.list', audit.text);
    expect(audit.json.result.entries.filter((e: { outcome: string }) => e.outcome === 'rolled-back')).toHaveLength(2);
    const refused = await unix(sd, 'audit.list', { limit: 1_000, refused: true });
    note('audit.list refused', refused.text);
    expect(refused.json.result.refusals.length).toBeGreaterThan(0);
    note('daemon stderr', sd.stderr());

    // The search: every password, both tokens (and their secret parts) and the token file's token.
    const secrets: Record<string, string> = {
      ...PW,
      operatorToken: OP,
      operatorSecret: secretOf(OP),
      readerToken: RD,
      readerSecret: secretOf(RD),
      adminFileToken: adminFile,
    };
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
    const w = await watchModes([sbox.dir, path.dirname(sd.storeFile)], path.join(sd.root, 'watch'));
    const HOSTVAL = '[relay.example.test]:587';
    for (let i = 0; i < 13; i++) {
      const value = i % 4 === 3 ? false : { host: HOSTVAL, username: `user${i}`, password: `mode-check-${i}` };
      expect((await unix(sd, 'scope.set', { name: 'mail.smart-host', value })).json, `set ${i}`).toMatchObject({ result: { status: 'applied' } });
    }
    const { loops, seen } = await w.stop();
    expect(loops).toBeGreaterThan(100);
    const secretFiles = Object.entries(seen).filter(([f]) => /smarthost-auth/.test(path.basename(f)) || f.startsWith(path.dirname(sd.storeFile)));
    const names = secretFiles.map(([f]) => f);
    // The map's temp file (written, then renamed over the map) was caught too: its creation was watched.
    expect(names).toEqual(expect.arrayContaining([sbox.authMap, sbox.authDb, path.join(sbox.dir, '.smarthost-auth.HEX.tmp'), sd.storeFile]));
    const wider = secretFiles.filter(([, modes]) => Object.keys(modes).some((m) => m !== '600'));
    expect(wider, 'files holding secrets seen with a mode other than 0600').toEqual([]);
    expect((await stat(sbox.authMap)).mode & 0o777).toBe(0o600);
    expect((await stat(sbox.authDb)).mode & 0o777).toBe(0o600);
  });

  it('creates the admin token file and the store 0600 (in a 0700 directory) from their first byte', async () => {
    await using fresh = await scoped({ start: false });
    const root = fresh.root;
    const tokenDir = path.join(root, 'etc/scoped');
    const storeDir = path.join(root, 'var/lib/scoped');
    const w = await watchModes([tokenDir, storeDir], path.join(root, 'watch'));
    await fresh.start();
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
