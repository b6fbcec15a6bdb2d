/**
 * The mail scopes end to end: the real cpcmd binary talks to a real scoped daemon whose
 * --root is a private, running Postfix, which relays through a real SMTP server that demands
 * STARTTLS and checks the login. Each test gets its own Postfix, relay and daemon.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { expectExit, expectRefused } from './helpers/expect.js';
import { type Postfix, type RunResult, type Scoped, httpPost, scoped, treeDigest, waitFor } from './helpers/scoped.js';
import { RELAY_PASSWORD, RELAY_USER, RelaySink } from './helpers/relay.js';

const REDACTED = '[redacted]';
/** A wrong password distinctive enough to search every output for. */
const WRONG = 'wr0ng-pa55';

let box: Postfix;
let relay: RelaySink;
let daemon: Scoped;

/** cpcmd scope:set mail.smart-host pointed at the sink, with the given credentials. */
function setSmartHost(...rest: string[]): Promise<RunResult> {
  return daemon.cpcmd(['scope:set', 'mail.smart-host', relay.relayhostWord, ...rest]);
}

async function messageArrives(id: string, timeoutMs = 20_000) {
  return waitFor(`the message ${id} at the relay`, () => relay.messages.find((m) => m.raw.includes(id)), timeoutMs);
}

const authMap = () => path.join(box.dir, 'smarthost-auth');
const authDb = () => path.join(box.dir, 'smarthost-auth.db');

/** The config dir, every file with its bytes, mode, mtime and inode: a refusal must leave it as it was. */
const snapshot = () => treeDigest(box.dir, { times: true });

/** Close whatever exists: the daemon and Postfix, then the relay Postfix talks to; safe to call twice. */
async function teardown(): Promise<void> {
  const [d, r] = [daemon, relay];
  daemon = box = relay = undefined as never;
  try {
    await d?.close();
  } finally {
    await r?.close();
  }
}

describe('mail scopes against a real Postfix', { timeout: 120_000 }, () => {
  beforeEach(async () => {
    // Each resource is assigned as soon as it exists, so a failed setup still closes what was made.
    try {
      const [d, r] = await Promise.allSettled([scoped({ postfix: { smtpd: true, running: true }, listen: 'none' }), RelaySink.start()]);
      if (d.status === 'fulfilled') daemon = d.value;
      if (r.status === 'fulfilled') relay = r.value;
      if (d.status === 'rejected') throw d.reason;
      if (r.status === 'rejected') throw r.reason;
      box = daemon.postfix;
      // Nothing but a plugin loaded, and the first start's adoption of what the system has, may log before "listening".
      const lines = daemon.logLines();
      expect(
        lines
          .slice(
            0,
            lines.findIndex((l) => l.msg === 'listening'),
          )
          .filter((l) => l.msg !== 'plugin loaded' && !String(l.msg).startsWith('adopted what the system has')),
      ).toEqual([]);
    } catch (err) {
      await teardown().catch(() => undefined);
      throw err;
    }
  });

  afterEach(teardown);

  it('scope:set mail.smart-host HOST USER PASS relays outbound mail through the host, logged in, over TLS', async () => {
    expectExit(await setSmartHost(RELAY_USER, RELAY_PASSWORD), 'ok');

    const p = await box.params();
    expect(p.get('relayhost')).toBe(relay.relayhost);
    expect(p.get('smtp_sasl_auth_enable')).toBe('yes');
    expect(p.get('smtp_sasl_password_maps')).toBe('hash:$config_directory/smarthost-auth');
    expect(p.get('smtp_sasl_security_options')).toBe('noanonymous');
    expect(p.get('smtp_tls_security_level')).toBe('encrypt');
    expect(box.fileMode('smarthost-auth')).toBe(0o600);
    expect(box.fileMode('smarthost-auth.db')).toBe(0o600);
    expect(readFileSync(authMap(), 'utf8')).toBe(`${relay.relayhost} ${RELAY_USER}:${RELAY_PASSWORD}\n`);

    const id = await box.sendmail();
    const msg = await messageArrives(id);
    expect(msg.secure).toBe(true);
    expect(msg.user).toBe(RELAY_USER);
    expect(msg.from).toBe('sender@sandbox.test');
    expect(msg.to).toEqual(['rcpt@remote.test']);
    expect(relay.auths.length).toBeGreaterThan(0);
    for (const a of relay.auths) expect(a).toMatchObject({ username: RELAY_USER, password: RELAY_PASSWORD, secure: true, accepted: true });
    await waitFor('the queue to empty', async () => ((await box.queueEmpty()) ? true : undefined));
    expect(await box.maillog()).toMatch(new RegExp(`relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${relay.port},.*status=sent`));
  });

  it('scope:set mail.smart-host false turns relaying, SASL and the credentials off and TLS back to may', async () => {
    expectExit(await setSmartHost(RELAY_USER, RELAY_PASSWORD), 'ok');
    expect(existsSync(authDb())).toBe(true);

    // The host alone: relaying stays, the login and its credentials go, and TLS is no longer forced (may, as the help says).
    expectExit(await setSmartHost(), 'ok');
    let p = await box.params();
    expect(p.get('relayhost')).toBe(relay.relayhost);
    for (const name of ['smtp_sasl_auth_enable', 'smtp_sasl_password_maps', 'smtp_sasl_security_options']) expect(p.has(name), name).toBe(false);
    expect(p.get('smtp_tls_security_level')).toBe('may');
    expect(existsSync(authMap())).toBe(false);
    expect(existsSync(authDb())).toBe(false);

    expectExit(await setSmartHost(RELAY_USER, RELAY_PASSWORD), 'ok');
    expectExit(await daemon.cpcmd(['scope:set', 'mail.smart-host', 'false']), 'ok');
    p = await box.params();
    for (const name of ['relayhost', 'smtp_sasl_auth_enable', 'smtp_sasl_password_maps', 'smtp_sasl_security_options']) expect(p.has(name), name).toBe(false);
    expect(p.get('smtp_tls_security_level')).toBe('may');
    expect(existsSync(authMap())).toBe(false);
    expect(existsSync(authDb())).toBe(false);

    const get = await daemon.cpcmd(['scope:get', 'mail.smart-host']);
    expectExit(get, 'ok');
    expect(get.stdout.trim()).toBe('false');
    expect(get.stderr).toBe('');
    // Idempotent: the same set again changes nothing.
    const again = await daemon.cpcmd(['scope:set', 'mail.smart-host', 'false']);
    expectExit(again, 'ok');
    expect(again.stdout).toMatch(/unchanged/);
  });

  it("a wrong password defers the mail (kept in the queue, with the relay's answer); the right one and a flush deliver it", async () => {
    expectExit(await setSmartHost(RELAY_USER, WRONG), 'ok');
    const id = await box.sendmail();

    const queued = await waitFor("the message to be deferred with the relay's answer", async () => {
      const q = await box.queue();
      return /SASL authentication failed/.test(q) && /535/.test(q) ? q : undefined;
    });
    expect(queued).toMatch(/rcpt@remote\.test/);
    expect(relay.messages).toEqual([]);
    expect(relay.auths.length).toBeGreaterThan(0);
    for (const a of relay.auths) expect(a).toMatchObject({ username: RELAY_USER, password: WRONG, secure: true, accepted: false });
    // Deferred, not bounced: nothing was lost.
    expect(await box.maillog()).not.toMatch(/status=bounced/);

    expectExit(await setSmartHost(RELAY_USER, RELAY_PASSWORD), 'ok');
    await box.flush();
    let flushed = Date.now();
    const msg = await waitFor('the deferred message at the relay', async () => {
      const m = relay.messages.find((x) => x.raw.includes(id));
      // The flush may reach the queue manager that the reload is replacing: ask again now and then.
      if (!m && Date.now() - flushed > 2_000) {
        await box.flush();
        flushed = Date.now();
      }
      return m;
    });
    expect(msg).toMatchObject({ secure: true, user: RELAY_USER, to: ['rcpt@remote.test'] });
    expect(relay.messages).toHaveLength(1);
    await waitFor('the queue to empty', async () => ((await box.queueEmpty()) ? true : undefined));
  });

  it('postfix_relay_mynetworks: off, Postfix defers relaying for 127.0.0.1 without a login; on, it relays through the smart host', async () => {
    // scoped started with what Postfix had (mynetworks may relay): off is set, never applied silently.
    expectExit(await daemon.cpcmd(['scope:set', 'cp.bootstrapper', 'postfix_relay_mynetworks', 'false']), 'ok');
    expectExit(await setSmartHost(RELAY_USER, RELAY_PASSWORD), 'ok');
    const refused = await box.smtpSubmit();
    expect(
      refused.find((l) => l.startsWith('4') || l.startsWith('5')),
      refused.join('\n'),
    ).toMatch(/^454 .*Relay access denied/);
    expect(relay.messages).toEqual([]);

    expectExit(await daemon.cpcmd(['scope:set', 'cp.bootstrapper', 'postfix_relay_mynetworks', 'true']), 'ok');
    expect((await box.params()).get('smtpd_relay_restrictions')).toMatch(/^permit_mynetworks, /);
    const id = `<${Date.now()}.smtp@sandbox.test>`;
    const accepted = await box.smtpSubmit({ id });
    expect(
      accepted.some((l) => /^250 .*queued as/.test(l)),
      accepted.join('\n'),
    ).toBe(true);
    expect(await messageArrives(id)).toMatchObject({ secure: true, user: RELAY_USER });
  });

  it('--verify logs in to the relay first: a refused login changes nothing, an accepted one applies', async () => {
    expectExit(await daemon.cpcmd(['scope:set', 'mail.smart-host', "'[previous.test]:587'", RELAY_USER, 'old-pass']), 'ok');
    const before = await snapshot();
    const revisionBefore = JSON.parse((await daemon.cpcmd(['daemon:status', '-o', 'json'])).stdout).revision;

    const refused = await setSmartHost(RELAY_USER, WRONG, '--verify');
    expect(refused.code).not.toBe(0);
    expectRefused(refused, 'invalid', /535/);
    expect(refused.stderr).not.toContain(WRONG);
    expect(await snapshot()).toEqual(before);
    expect(relay.auths).toEqual([expect.objectContaining({ username: RELAY_USER, password: WRONG, secure: true, accepted: false })]);
    expect(daemon.stderr).not.toContain(WRONG);

    const get = await daemon.cpcmd(['scope:get', 'mail.smart-host', '-o', 'json']);
    expectExit(get, 'ok');
    expect(JSON.parse(get.stdout)).toEqual({ host: '[previous.test]:587', username: RELAY_USER, password: REDACTED });
    const stored = await daemon.cpcmd(['scope:get', 'cp.bootstrapper', 'postfix_smarthost', '-o', 'json']);
    expect(JSON.parse(stored.stdout)).toEqual({ host: '[previous.test]:587', username: RELAY_USER, password: REDACTED });
    expect(JSON.parse((await daemon.cpcmd(['daemon:status', '-o', 'json'])).stdout).revision).toBe(revisionBefore);

    const ok = await setSmartHost(RELAY_USER, RELAY_PASSWORD, '--verify');
    expectExit(ok, 'ok');
    expect(relay.auths.at(-1)).toMatchObject({ username: RELAY_USER, password: RELAY_PASSWORD, secure: true, accepted: true });
    expect((await box.params()).get('relayhost')).toBe(relay.relayhost);
    expect(readFileSync(authMap(), 'utf8')).toBe(`${relay.relayhost} ${RELAY_USER}:${RELAY_PASSWORD}\n`);
    // What --verify accepted, Postfix can use.
    await messageArrives(await box.sendmail());
  });

  it('refuses injection, malformed hosts, half credentials and unsafe TLS with exit 6, writing nothing', async () => {
    // Credentials while the TLS level is none, the var set first.
    expectExit(await daemon.cpcmd(['scope:set', 'cp.bootstrapper', 'postfix_smtp_tls_security_level', 'none', '--no-converge']), 'ok');
    let before = await snapshot();
    expectRefused(await setSmartHost(RELAY_USER, RELAY_PASSWORD), 'invalid', /TLS level none/);
    expect(await snapshot()).toEqual(before);
    expectExit(await daemon.cpcmd(['scope:set', 'cp.bootstrapper', 'postfix_smtp_tls_security_level', "''"]), 'ok');

    // A working smart host with credentials: everything below must leave it exactly so.
    expectExit(await setSmartHost(RELAY_USER, RELAY_PASSWORD), 'ok');
    before = await snapshot();
    expect(Object.keys(before)).toEqual(expect.arrayContaining(['main.cf', 'master.cf', 'smarthost-auth', 'smarthost-auth.db']));

    const refusals: [string, string[], RegExp][] = [
      ['newline in the host', ["'[relay.test]\nmynetworks = 0.0.0.0/0'", RELAY_USER, RELAY_PASSWORD], /control character/],
      ['newline in the host, alone', ["'[relay.test]\nmynetworks = 0.0.0.0/0'"], /control character/],
      ['newline in the user', [relay.relayhostWord, "'alice\nmynetworks = 0.0.0.0/0'", RELAY_PASSWORD], /username/],
      ['newline in the password', [relay.relayhostWord, RELAY_USER, "'s3cret\n[evil.test]:25 mallory:x'"], /password/],
      ['a space in the host', ["'relay example.test'"], /whitespace/],
      ['"=" in the host', ["'relay=example.test'"], /"="/],
      ['"," in the host', ["'a.example.test,b.example.test'"], /","/],
      ['port 0', ["'[relay.test]:0'", RELAY_USER, RELAY_PASSWORD], /port 0 is out of range/],
      ['port 70000', ["'[relay.test]:70000'", RELAY_USER, RELAY_PASSWORD], /port 70000 is out of range/],
      ['USER without PASS', [relay.relayhostWord, RELAY_USER], /USER and PASS/],
      ['a ":" in the user', [relay.relayhostWord, "'al:ice'", RELAY_PASSWORD], /":"/],
    ];
    for (const [what, args, why] of refusals) {
      const r = await daemon.cpcmd(['scope:set', 'mail.smart-host', ...args]);
      const line = expectRefused(r, 'invalid', why);
      expect(line, what).not.toContain('mallory:x');
      expect(line, what).not.toContain(RELAY_PASSWORD);
      expect(await snapshot(), what).toEqual(before);
    }

    // Credentials stored, then the TLS level set to none: refused too, with or without converging.
    for (const extra of [[], ['--no-converge']]) {
      expectRefused(await daemon.cpcmd(['scope:set', 'cp.bootstrapper', 'postfix_smtp_tls_security_level', 'none', ...extra]), 'invalid', /TLS level none/);
      expect(await snapshot()).toEqual(before);
    }

    expectRefused(await daemon.cpcmd(['scope:set', 'cp.bootstrapper', 'postfix_custom_config', '[no_such_param:1]']), 'invalid', /no_such_param/);
    expect(await snapshot()).toEqual(before);

    const unquoted = await daemon.cpcmd(['scope:set', 'mail.smart-host', '[127.0.0.1]:2525']);
    expectExit(unquoted, 'usage');
    expect(unquoted.stderr).toContain(`"'[127.0.0.1]:2525'"`);
    expect(await snapshot()).toEqual(before);

    const stored = await daemon.cpcmd(['scope:get', 'cp.bootstrapper', 'postfix_smarthost', '-o', 'json']);
    expect(JSON.parse(stored.stdout)).toEqual({ host: relay.relayhost, username: RELAY_USER, password: REDACTED });
    expect(JSON.parse((await daemon.cpcmd(['scope:get', 'cp.bootstrapper', 'postfix_smtp_tls_security_level', '-o', 'json'])).stdout)).toBe('');
  });

  it('the password appears in no cpcmd output, no daemon log line and no JSON-RPC result', async () => {
    const outputs: [string, RunResult][] = [];
    const cp = async (...args: string[]) => {
      const r = await daemon.cpcmd([...args]);
      outputs.push([args.join(' '), r]);
      return r;
    };
    const dry = await cp('scope:set', 'mail.smart-host', relay.relayhostWord, RELAY_USER, RELAY_PASSWORD, '--dry-run');
    expectExit(dry, 'ok');
    expect(dry.stdout).toMatch(/smarthost-auth/);
    expectExit(await cp('scope:set', 'mail.smart-host', relay.relayhostWord, RELAY_USER, RELAY_PASSWORD), 'ok');
    expectExit(await cp('scope:set', 'mail.smart-host', relay.relayhostWord, RELAY_USER, RELAY_PASSWORD, '-o', 'json'), 'ok');
    expectExit(await cp('scope:set', 'mail.smart-host', relay.relayhostWord, RELAY_USER, RELAY_PASSWORD, '--dry-run', '-o', 'yaml'), 'ok');
    for (const o of ['cli', 'json', 'yaml']) {
      const r = await cp('scope:get', 'mail.smart-host', '-o', o);
      expectExit(r, 'ok');
      expect(r.stdout).toContain(relay.relayhost);
      expect(r.stdout).toContain(REDACTED);
      expectExit(await cp('scope:get', 'cp.bootstrapper', '-o', o), 'ok');
      expectExit(await cp('scope:get', 'cp.bootstrapper', 'postfix_smarthost', '-o', o), 'ok');
      expectExit(await cp('var:list', '-o', o), 'ok');
    }
    // A new password: the dry run shows the map rewritten, never either password.
    const rekey = await cp('scope:set', 'mail.smart-host', relay.relayhostWord, RELAY_USER, WRONG, '--dry-run');
    expectExit(rekey, 'ok');
    expect(rekey.stdout).toMatch(/rewrite \/etc\/postfix\/smarthost-auth \(mode 0600, content redacted\)/);
    expectExit(await cp('scope:check'), 'ok');
    expectExit(await cp('scope:check', 'mail.smart-host', '-o', 'json'), 'ok');
    expectExit(await cp('converge', '--dry-run'), 'ok');
    expectExit(await cp('daemon:status'), 'ok');
    // A drifted credentials map is reported with its content redacted.
    const old = readFileSync(authMap(), 'utf8');
    writeFileSync(authMap(), old.replace(RELAY_PASSWORD, `${RELAY_PASSWORD}-edited`));
    const drift = await cp('scope:check');
    expectExit(drift, 'drift');
    expect(drift.stdout).toMatch(/smarthost-auth/);
    expectExit(await cp('scope:get', 'mail.smart-host'), 'ok');
    expectExit(await cp('converge', 'mail/configure-postfix'), 'ok');
    expect(readFileSync(authMap(), 'utf8')).toBe(old);
    // A refusal that carries the password must not echo it either.
    expectRefused(await cp('scope:set', 'mail.smart-host', "'bad host'", RELAY_USER, RELAY_PASSWORD), 'invalid');

    for (const [what, r] of outputs) {
      for (const secret of [RELAY_PASSWORD, WRONG]) {
        expect(r.stdout, what).not.toContain(secret);
        expect(r.stderr, what).not.toContain(secret);
      }
    }

    const rpc: [string, Record<string, unknown>][] = [
      ['scope.get', { name: 'mail.smart-host' }],
      ['scope.get', { name: 'cp.bootstrapper' }],
      ['scope.get', { name: 'cp.bootstrapper', args: ['postfix_smarthost'] }],
      ['var.get', { name: 'postfix_smarthost' }],
      ['var.list', {}],
      ['scope.check', {}],
      ['audit.list', {}],
      ['scope.set', { name: 'mail.smart-host', value: { host: relay.relayhost, username: RELAY_USER, password: RELAY_PASSWORD }, dryRun: true }],
      ['scope.set', { name: 'mail.smart-host', args: [relay.relayhost, RELAY_USER, RELAY_PASSWORD] }],
      ['var.set', { name: 'postfix_smarthost', value: { host: relay.relayhost, username: RELAY_USER, password: RELAY_PASSWORD }, dryRun: true }],
    ];
    for (const [method, params] of rpc) {
      const body = (await httpPost({ socket: daemon.socket }, JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }))).text;
      const parsed = JSON.parse(body) as { result?: unknown; error?: { code: number; message: string } };
      // audit.list is newer than the other methods; where the daemon lacks it, there is nothing to leak.
      if (!(method === 'audit.list' && parsed.error?.code === -32601)) expect(parsed.error, `${method} ${body}`).toBeUndefined();
      expect(body, method).not.toContain(RELAY_PASSWORD);
    }
    // Refusals over the wire carry the issues in data: never the value that was refused.
    const refusedRpc: [string, Record<string, unknown>][] = [
      ['scope.set', { name: 'mail.smart-host', value: { host: 'bad host', username: RELAY_USER, password: WRONG } }],
      ['scope.set', { name: 'mail.smart-host', value: { host: relay.relayhost, username: RELAY_USER, password: `${WRONG}\nx` } }],
      ['scope.set', { name: 'mail.smart-host', value: { host: relay.relayhost, username: RELAY_USER, password: WRONG, extra: WRONG } }],
      ['var.set', { name: 'postfix_smarthost', value: { host: relay.relayhost, username: RELAY_USER }, extra: WRONG }],
      ['scope.set', { name: 'cp.bootstrapper', args: ['postfix_smarthost', [`host:${relay.relayhost}`, `password:${WRONG}`]] }],
    ];
    for (const [method, params] of refusedRpc) {
      const body = (await httpPost({ socket: daemon.socket }, JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }))).text;
      expect(JSON.parse(body).error, `${method} ${body}`).toBeDefined();
      expect(body, `${method} ${body}`).not.toContain(WRONG);
    }
    const varGet = (await daemon.call('var.get', { name: 'postfix_smarthost' })) as { result: { value: unknown } };
    expect(varGet.result.value).toEqual({ host: relay.relayhost, username: RELAY_USER, password: REDACTED });

    const log = daemon.logLines();
    expect(log.length).toBeGreaterThan(1);
    for (const line of daemon.stderr().split('\n')) {
      expect(line).not.toContain(RELAY_PASSWORD);
      expect(line).not.toContain(WRONG);
    }
  });

  it('drift: scope:check reports a hand-edited relayhost, converge reverts it, --adopt keeps it without moving the credentials to it', async () => {
    expectExit(await setSmartHost(RELAY_USER, RELAY_PASSWORD), 'ok');
    expectExit(await daemon.cpcmd(['scope:check']), 'ok');
    await box.handEdit('relayhost=[other.test]:25');

    for (const args of [[], ['mail.smart-host']]) {
      const check = await daemon.cpcmd(['scope:check', ...args]);
      expectExit(check, 'drift');
      for (const word of ['postfix_smarthost', 'relayhost', relay.relayhost, '[other.test]:25']) expect(check.stdout, word).toContain(word);
    }
    // Which scope the whole-system check names has its own test below.
    expect((await daemon.cpcmd(['scope:check', 'mail.smart-host'])).stdout).toMatch(
      /^drift: mail\.smart-host postfix_smarthost mail\/configure-postfix main\.cf:relayhost: /m,
    );
    const json = await daemon.cpcmd(['scope:check', 'mail.smart-host', '-o', 'json']);
    expectExit(json, 'drift');
    expect(JSON.parse(json.stdout).drift).toEqual([
      expect.objectContaining({
        scope: 'mail.smart-host',
        var: 'postfix_smarthost',
        unit: 'mail/configure-postfix',
        expected: relay.relayhost,
        actual: '[other.test]:25',
      }),
    ]);

    const get = await daemon.cpcmd(['scope:get', 'mail.smart-host']);
    expectExit(get, 'ok');
    expect(get.stdout).toContain('[other.test]:25');
    expect(get.stdout).not.toContain(relay.relayhost);
    expect(get.stderr).toMatch(/drift/);
    expect(get.stderr).toContain('[other.test]:25');

    expectExit(await daemon.cpcmd(['converge', 'mail/configure-postfix']), 'ok');
    expect((await box.params()).get('relayhost')).toBe(relay.relayhost);
    expectExit(await daemon.cpcmd(['scope:check']), 'ok');
    // Converged for real: Postfix relays through the sink again.
    await messageArrives(await box.sendmail());

    await box.handEdit('relayhost=[other.test]:25');
    expectExit(await daemon.cpcmd(['scope:check']), 'drift');
    const adopt = await daemon.cpcmd(['scope:check', '--adopt', 'mail.smart-host']);
    expectExit(adopt, 'ok');
    // A credential is never moved to another host: the hand-set host is adopted without one, and the user is told.
    expect(adopt.stderr).toMatch(/^note: credentials were not adopted: the credentials map has no entry for "\[other\.test\]:25"/m);
    expectExit(await daemon.cpcmd(['scope:check']), 'ok');
    expect((await box.params()).get('relayhost')).toBe('[other.test]:25');
    const stored = await daemon.cpcmd(['scope:get', 'cp.bootstrapper', 'postfix_smarthost', '-o', 'json']);
    expectExit(stored, 'ok');
    expect(JSON.parse(stored.stdout)).toEqual({ host: '[other.test]:25', username: '', password: '' });
    expect(existsSync(authMap()), 'no credentials map without credentials').toBe(false);
    expect(existsSync(`${authMap()}.db`)).toBe(false);
    const after = await daemon.cpcmd(['scope:get', 'mail.smart-host', '-o', 'json']);
    expectExit(after, 'ok');
    expect(JSON.parse(after.stdout)).toEqual({ host: '[other.test]:25', username: '', password: '' });
    expect(after.stderr).toBe('');
  });

  it('scope:check without a name attributes relayhost drift to mail.smart-host, the scope that owns postfix_smarthost (not net.hostname)', async () => {
    expectExit(await setSmartHost(RELAY_USER, RELAY_PASSWORD), 'ok');
    await box.handEdit('relayhost=[other.test]:25');
    const check = await daemon.cpcmd(['scope:check']);
    expectExit(check, 'drift');
    expect(check.stdout).toMatch(/^drift: mail\.smart-host postfix_smarthost mail\/configure-postfix main\.cf:relayhost: /m);
    const json = await daemon.cpcmd(['scope:check', '-o', 'json']);
    expect(JSON.parse(json.stdout).drift).toEqual([
      expect.objectContaining({ scope: 'mail.smart-host', var: 'postfix_smarthost', target: 'main.cf:relayhost' }),
    ]);
  });

  it("net.hostname propagates to Postfix's myhostname and reloads the running Postfix", async () => {
    expectExit(await setSmartHost(RELAY_USER, RELAY_PASSWORD), 'ok');
    const reloadsBefore = ((await box.maillog()).match(/postfix\/master\[\d+\]: reload/g) ?? []).length;

    expectExit(await daemon.cpcmd(['scope:set', 'net.hostname', 'mail.example.test']), 'ok');
    expect(readFileSync(box.mainCf, 'utf8')).toMatch(/^myhostname = mail\.example\.test$/m);
    expect((await box.postconf(['-h', 'myhostname'])).trim()).toBe('mail.example.test');
    expect(readFileSync(path.join(box.root, 'etc/hostname'), 'utf8')).toBe('mail.example.test\n');
    expect(readFileSync(path.join(box.root, 'etc/mailname'), 'utf8')).toBe('mail.example.test\n');
    await waitFor('Postfix to log a reload', async () =>
      ((await box.maillog()).match(/postfix\/master\[\d+\]: reload/g) ?? []).length > reloadsBefore ? true : undefined,
    );

    // The running Postfix uses the new name: it stamps it into the Received header it adds.
    const msg = await messageArrives(await box.sendmail());
    expect(msg.raw).toMatch(/^Received: by mail\.example\.test \(Postfix/m);
    const get = await daemon.cpcmd(['scope:get', 'net.hostname']);
    expectExit(get, 'ok');
    expect(get.stdout.trim()).toBe('mail.example.test');
    expect(get.stderr).toBe('');
    expectExit(await daemon.cpcmd(['scope:check']), 'ok');
  });

  it('mail.spam-filter names the missing package and changes nothing; false applies cleanly; scope:info explains mail.smart-host', async () => {
    // The sandbox has no rspamd of its own, whatever the host has installed: scoped looks for it under the root.
    expect(existsSync(path.join(daemon.root, 'usr/bin/rspamd'))).toBe(false);
    const before = await snapshot();
    expectRefused(await daemon.cpcmd(['scope:set', 'mail.spam-filter', 'rspamd']), 'invalid', /apt-get install rspamd/);
    expect(await snapshot()).toEqual(before);
    expect(JSON.parse((await daemon.cpcmd(['scope:get', 'cp.bootstrapper', 'spamfilter', '-o', 'json'])).stdout)).toBe(false);

    const off = await daemon.cpcmd(['scope:set', 'mail.spam-filter', 'false']);
    expectExit(off, 'ok');
    expect(off.stdout).toMatch(/unchanged|applied/);
    const p = await box.params();
    for (const name of ['smtpd_milters', 'non_smtpd_milters', 'milter_default_action']) expect(p.has(name), name).toBe(false);
    const get = await daemon.cpcmd(['scope:get', 'mail.spam-filter']);
    expectExit(get, 'ok');
    expect(get.stdout.trim()).toBe('false');

    const info = await daemon.cpcmd(['scope:info', 'mail.smart-host']);
    expectExit(info, 'ok');
    expect(info.stdout).toContain('usage: cpcmd scope:set mail.smart-host HOST [USER PASS] | false');
    expect(info.stdout).toMatch(/SASL/);
    expect(info.stdout).toMatch(/--verify/);
    expect(info.stdout).toContain(`cpcmd scope:set mail.smart-host "'[relay.example.com]:587'" alice s3cret`);
    expect(info.stdout).toContain('cpcmd scope:set mail.smart-host false');
  });
});
