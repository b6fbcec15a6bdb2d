/**
 * Attack: an operator becomes root through raw Postfix parameters (issue 9, item 1).
 *
 * Before the fix, any token that could write cp.bootstrapper set postfix_custom_config to any
 * name `postconf -d` knows: daemon_directory made `postfix reload` run a postfix-script of the
 * attacker's choosing as root, and queue_directory pointed the "is Postfix running" check at a
 * pid file the attacker wrote (outside --root), which was trusted for any live pid.
 *
 * From the attacker's side, against the real scoped on a real Postfix config under a temp root:
 * - operator tokens (unlimited, limited to cp.bootstrapper, limited to a plugin scope that
 *   writes postfix_custom_config) get -32003 naming the var on every path: var.set,
 *   scope.set cp.bootstrapper (RPC and cpcmd), a scope's set, reset and adopt; main.cf is unchanged;
 * - the admin is refused, with the reason, the dangerous classes, and nothing changes; a
 *   harmless parameter still works;
 * - a second pass: the admin is refused values built from other parameters ($masquerade_exceptions
 *   holding '..' walked texthash: out of /etc/postfix to /etc/shadow), the outbound TLS family
 *   (smtp_tls_per_site NONE sent AUTH in the clear despite encrypt), native host lookups, BCC and
 *   REDIRECT actions, check_policy_service, the proxy protocol, bounce copies and inline
 *   address-rewriting tables; $myhostname, $mydomain and the other plain names still work;
 * - the running check: a hand-edited main.cf whose queue_directory lies outside the root is
 *   never read there (a FIFO would block a reader), a planted postfix-script never runs, and a
 *   pid file inside the root naming a live process that is not Postfix's master is not Postfix.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { constants, openSync, closeSync, existsSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PluginDirs } from '../helpers/plugin-dir.js';
import { ErrorCodes, expectExit } from '../helpers/expect.js';
import { type Postfix, type RunResult, type Scoped, cpcmd, mustRun, scoped, tcpCall, tempDir } from '../helpers/scoped.js';

const FORBIDDEN = ErrorCodes.Forbidden;
const INVALID = ErrorCodes.InvalidParams;
/** cpcmd's exit codes: forbidden shares 5 with unauthorized. */

/** A third-party scope over postfix_custom_config: operators limited to it may call it, yet never change the var. */
const RAW_PLUGIN = `
import { defineScope, definePlugin, z } from '@scoped/sdk';
const raw = defineScope({
  name: 'attack.raw',
  summary: 'Raw main.cf parameters through a scope',
  help: 'test only',
  usage: 'MAP',
  examples: [],
  schema: z.record(z.string(), z.string()),
  vars: ['postfix_custom_config'],
  parseArgs: (args) => args[0],
  toVars: (value) => ({ postfix_custom_config: value }),
  get: (ctx) => ctx.vars.postfix_custom_config,
  adopt: () => ({ vars: { postfix_custom_config: { smtpd_banner: 'adopted by an operator' } } }),
});
export default definePlugin({ name: 'scoped-plugin-attack-raw', version: '1.0.0', apiVersion: 1, dependsOn: ['@scoped/plugin-mail'], scopes: [raw] });
`;

let box: Postfix;
let d: Scoped;
let plugins: PluginDirs;
const tok = { operator: '', bootstrapOnly: '', rawOnly: '', reader: '' };

async function token(role: string, scopes?: string): Promise<string> {
  const r = await d.cpcmd(['token:create', '--role', role, ...(scopes ? ['--scopes', scopes] : []), '-o', 'json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout).token as string;
}

const relayhostOf = async (b: Postfix) => (await b.postconf(['-h', 'relayhost'])).trim();
const mainCf = () => readFile(box.mainCf, 'utf8');
const customVar = async () => (await d.ok('var.get', { name: 'postfix_custom_config' })).value;

function expectError(a: Awaited<ReturnType<typeof tcpCall>>, code: number, why: RegExp): void {
  expect('error' in a ? a.error : a.result, JSON.stringify(a)).toMatchObject({ code, message: expect.stringMatching(why) });
}

afterAll(async () => {
  await d?.close();
  await plugins?.remove();
}, 60_000);

describe('operator to root through postfix_custom_config', { timeout: 60_000 }, () => {
  beforeAll(async () => {
    plugins = await PluginDirs.create();
    const dir = await plugins.write('attack-raw', RAW_PLUGIN);
    d = await scoped({ postfix: true, args: ['--plugin', dir] });
    box = d.postfix;
    tok.operator = await token('operator');
    tok.bootstrapOnly = await token('operator', 'cp.bootstrapper');
    tok.rawOnly = await token('operator', 'attack.*');
    tok.reader = await token('reader');
  });

  it('operators, limited or not, are forbidden postfix_custom_config on every path, and main.cf stays as it was', async () => {
    const before = await mainCf();
    const evil = { daemon_directory: '/tmp/evil', smtpd_banner: 'owned' };
    for (const t of [tok.operator, tok.bootstrapOnly]) {
      // The original attack: refused before the value is read.
      expectError(
        await tcpCall(d.port!, t, 'var.set', { name: 'postfix_custom_config', value: evil }),
        FORBIDDEN,
        /admin role needed to change postfix_custom_config/,
      );
      // Through cp.bootstrapper the value is parsed first: refused as invalid, the harmless one as forbidden.
      expectError(
        await tcpCall(d.port!, t, 'scope.set', { name: 'cp.bootstrapper', value: { var: 'postfix_custom_config', value: evil } }),
        INVALID,
        /postfix_custom_config/,
      );
      const value = { smtpd_banner: 'owned' };
      expectError(
        await tcpCall(d.port!, t, 'var.set', { name: 'postfix_custom_config', value }),
        FORBIDDEN,
        /admin role needed to change postfix_custom_config/,
      );
      expectError(
        await tcpCall(d.port!, t, 'scope.set', { name: 'cp.bootstrapper', value: { var: 'postfix_custom_config', value } }),
        FORBIDDEN,
        /admin role needed to change postfix_custom_config/,
      );
      expectError(
        await tcpCall(d.port!, t, 'scope.set', { name: 'cp.bootstrapper', args: ['postfix_custom_config', value], dryRun: true }),
        FORBIDDEN,
        /postfix_custom_config/,
      );
      expectError(
        await tcpCall(d.port!, t, 'scope.set', { name: 'cp.bootstrapper', value: { var: 'postfix_custom_config', value }, async: true }),
        FORBIDDEN,
        /postfix_custom_config/,
      );
      // As the attacker types it.
      const r: RunResult = await cpcmd(['scope:set', 'cp.bootstrapper', 'postfix_custom_config', '[smtpd_banner:owned]'], { url: d.url, token: t });
      expectExit(r, 'unauthorized');
      expect(r.stderr).toMatch(/forbidden.*postfix_custom_config/);
    }
    // A scope of a plugin that writes the var: the operator may call the scope, but not change the var through it.
    const raw = { smtpd_banner: 'owned' };
    expectError(await tcpCall(d.port!, tok.rawOnly, 'scope.set', { name: 'attack.raw', value: raw }), FORBIDDEN, /postfix_custom_config/);
    expectError(await tcpCall(d.port!, tok.rawOnly, 'scope.reset', { name: 'attack.raw' }), FORBIDDEN, /postfix_custom_config/);
    expectError(await tcpCall(d.port!, tok.rawOnly, 'scope.adopt', { name: 'attack.raw' }), FORBIDDEN, /postfix_custom_config/);
    expectError(await tcpCall(d.port!, tok.reader, 'var.set', { name: 'postfix_custom_config', value: raw }), FORBIDDEN, /operator role/);

    expect(await mainCf()).toBe(before);
    expect(await customVar()).toEqual({});
    // The refusals are in the audit trail, naming the var.
    const audit = await d.ok('audit.list', { limit: 50, refused: true });
    expect(audit.refusals.filter((e: { reason?: string }) => /postfix_custom_config/.test(e.reason ?? '')).length).toBeGreaterThan(0);
  });

  it('the admin is refused the dangerous classes with the reason, and nothing changes', async () => {
    const before = await mainCf();
    const refused: [Record<string, string>, RegExp][] = [
      [{ daemon_directory: '/tmp/evil' }, /daemon_directory is refused \(directories\)/],
      [{ queue_directory: '/tmp/evil' }, /queue_directory is refused \(directories\)/],
      [{ mailbox_command: '/tmp/evil/run' }, /mailbox_command is refused \(programs and commands\)/],
      [{ import_environment: 'LD_PRELOAD=/tmp/evil.so' }, /import_environment is refused \(environment\)/],
      [{ smtpd_milters: 'inet:127.0.0.1:9' }, /smtpd_milters is refused \(filters and milters\)/],
      [{ header_checks: 'regexp:/tmp/evil/checks' }, /header_checks is refused: "\/tmp\/evil\/checks" is a path outside \/etc\/postfix/],
      [{ virtual_alias_maps: 'tcp:127.0.0.1:9' }, /tcp: lookup table/],
      [{ relayhost: '[evil.example.org]:25' }, /relayhost is owned by the var postfix_smarthost/],
      [{ smtpd_banner: 'fine', default_transport: 'maildrop' }, /default_transport is refused \(transports and services\)/],
    ];
    for (const [value, why] of refused) {
      const a = await d.call('var.set', { name: 'postfix_custom_config', value });
      expect('error' in a && a.error, JSON.stringify(a)).toMatchObject({ code: INVALID, message: expect.stringMatching(/postfix_custom_config/) });
      expect(('error' in a ? (a.error.data.issues as { message: string }[]) : []).map((i) => i.message).join('\n')).toMatch(why);
      // The same through cp.bootstrapper, as cpcmd prints it.
      const name = Object.keys(value).at(-1)!;
      const r = await d.cpcmd(['scope:set', 'cp.bootstrapper', 'postfix_custom_config', `[${name}:'${value[name]}']`]);
      expectExit(r, 'invalid');
      expect(r.stderr).toMatch(why);
    }
    expect(await mainCf()).toBe(before);
    expect(await customVar()).toEqual({});
  });

  it('the admin is refused $-references, outbound TLS settings and ways to copy, divert or leak mail, and nothing changes', async () => {
    const before = await mainCf();
    const custom = await customVar();
    const refused: [Record<string, string>, RegExp][] = [
      // A value built from another parameter: Postfix expanded this to /etc/postfix/../../../../etc/shadow and postmap read it.
      [
        {
          masquerade_exceptions: '..',
          virtual_alias_maps:
            'texthash:$config_directory/$masquerade_exceptions/$masquerade_exceptions/$masquerade_exceptions/$masquerade_exceptions/etc/shadow',
        },
        /virtual_alias_maps is refused: \$masquerade_exceptions refers to another parameter.*write the value out/,
      ],
      [{ virtual_alias_maps: 'texthash:$smtpd_tls_key_file' }, /\$smtpd_tls_key_file refers to another parameter/],
      [{ virtual_alias_maps: '${alias_maps}' }, /\$alias_maps refers to another parameter/],
      [{ smtpd_banner: '${myhostname?$alias_maps} ESMTP' }, /smtpd_banner is refused: .*not a plain reference/],
      [{ mydomain: '..' }, /mydomain is refused: .*plain name/],
      [{ address_verify_map: 'btree:$config_directory/$mydomain/verify' }, /address_verify_map is refused: .*\$mydomain.*write the value out/],
      [{ postscreen_cache_map: 'btree:cache' }, /postscreen_cache_map is refused: "cache" is a path outside \/etc\/postfix/],
      // Outbound TLS: a per-site NONE sent the relay password in the clear despite smtp_tls_security_level=encrypt.
      [{ smtp_tls_per_site: 'inline:{[127.0.0.1]:2526=NONE}' }, /smtp_tls_per_site is refused \(outbound TLS and host lookups\)/],
      [{ tls_high_cipherlist: 'aNULL' }, /tls_high_cipherlist is refused \(outbound TLS and host lookups\)/],
      [{ smtp_host_lookup: 'native' }, /smtp_host_lookup is refused \(outbound TLS and host lookups\)/],
      [{ smtp_discard_ehlo_keywords: 'starttls' }, /smtp_discard_ehlo_keywords is refused \(outbound TLS and host lookups\)/],
      [{ debug_peer_list: 'relay.example.test' }, /debug_peer_list is refused \(relay and credentials\)/],
      // Copies, diversions and leaks.
      [{ smtpd_recipient_restrictions: 'check_recipient_access inline:{victim@example.test=BCC thief@evil.example}' }, /a BCC action/],
      [{ smtpd_sender_restrictions: 'check_sender_access inline:{victim@example.test=REDIRECT thief@evil.example}' }, /a REDIRECT action/],
      [{ smtpd_recipient_restrictions: 'permit_mynetworks, check_policy_service inet:127.0.0.1:9998' }, /check_policy_service sends/],
      [{ smtpd_upstream_proxy_protocol: 'haproxy' }, /smtpd_upstream_proxy_protocol is refused \(owners, groups and privileges\)/],
      [{ bounce_notice_recipient: 'thief@evil.example' }, /bounce_notice_recipient is refused \(filters and milters\)/],
      [{ notify_classes: 'bounce, resource, software' }, /notify_classes is refused \(filters and milters\)/],
      [{ luser_relay: 'thief@evil.example' }, /luser_relay is refused \(filters and milters\)/],
      [{ smtpd_command_filter: 'pcre:/etc/postfix/command_filter' }, /smtpd_command_filter is refused \(filters and milters\)/],
      [{ canonical_maps: 'static:thief@evil.example' }, /canonical_maps is refused: .*written into the value/],
      [{ recipient_canonical_maps: 'static:thief@evil.example' }, /recipient_canonical_maps is owned by the var postsrsd_enabled/],
      // Open relays: anyone relaying through the server and its smart host's credentials.
      [{ mynetworks: '127.0.0.0/8, 0.0.0.0/1, 128.0.0.0/1' }, /mynetworks is refused \(who may relay\).*open relay/],
      [{ mynetworks: '$config_directory/smarthost-auth' }, /mynetworks is refused \(who may relay\)/],
      [{ relay_domains: 'com, net, org' }, /relay_domains is refused \(who may relay\)/],
      [{ relay_domains: 'static:all' }, /relay_domains is refused \(who may relay\)/],
      [{ mynetworks_style: 'class' }, /mynetworks_style is refused \(who may relay\)/],
      // A table over the credentials map logged the relay password.
      [{ smtpd_helo_restrictions: 'check_helo_access hash:$config_directory/smarthost-auth' }, /smtpd_helo_restrictions is refused: .*scoped's own files/],
    ];
    for (const [value, why] of refused) {
      const a = await d.call('var.set', { name: 'postfix_custom_config', value });
      expect('error' in a && a.error, JSON.stringify(a)).toMatchObject({ code: INVALID, message: expect.stringMatching(/postfix_custom_config/) });
      expect(('error' in a ? (a.error.data.issues as { message: string }[]) : []).map((i) => i.message).join('\n')).toMatch(why);
    }
    // As the admin types it.
    const r = await d.cpcmd(['scope:set', 'cp.bootstrapper', 'postfix_custom_config', "[smtp_tls_per_site:'inline:{[127.0.0.1]:2526=NONE}']"]);
    expectExit(r, 'invalid');
    expect(r.stderr).toMatch(/smtp_tls_per_site is refused \(outbound TLS and host lookups\)/);
    expect(await mainCf()).toBe(before);
    expect(await customVar()).toEqual(custom);
  });

  it("the admin's everyday parameters, $myhostname and friends included, still work", async () => {
    const value = {
      smtpd_banner: '$myhostname ESMTP $mail_name',
      mydestination: '$myhostname, localhost.$mydomain, localhost',
      myorigin: '$mydomain',
      message_size_limit: '52428800',
      smtpd_tls_cert_file: '/etc/postfix/cert.pem',
      address_verify_map: 'btree:$config_directory/verify_cache',
    };
    await d.ok('var.set', { name: 'postfix_custom_config', value });
    const params = await box.postconf(['-n']);
    for (const [name, v] of Object.entries(value)) expect(params).toContain(`${name} = ${v}\n`);
    expect(await customVar()).toEqual(value);
  });

  it('a harmless parameter still works for the admin', async () => {
    const r = await d.cpcmd(['scope:set', 'cp.bootstrapper', 'postfix_custom_config', '[smtpd_banner:"$myhostname ESMTP ready",message_size_limit:20480000]']);
    expectExit(r, 'ok');
    const params = await box.postconf(['-n']);
    expect(params).toMatch(/^smtpd_banner = \$myhostname ESMTP ready$/m);
    expect(params).toMatch(/^message_size_limit = 20480000$/m);
    expect(await customVar()).toEqual({ smtpd_banner: '$myhostname ESMTP ready', message_size_limit: '20480000' });
  });
});

describe('the "is Postfix running" check trusts only Postfix\'s master under --root', { timeout: 60_000 }, () => {
  const children: ChildProcess[] = [];
  /** A live process that is not Postfix: a sleep of the test's own. */
  const liveStranger = () => {
    const child = spawn('sleep', ['600'], { stdio: 'ignore' });
    children.push(child);
    return child.pid!;
  };

  afterAll(() => {
    for (const c of children) c.kill('SIGKILL');
  });

  /** A sandbox root whose main.cf was hand-edited (as root could) with these parameters, and scoped on it. */
  async function handEdited(params: string[]): Promise<Scoped> {
    return scoped({
      postfix: true,
      setup: async (root) => {
        if (params.length) await mustRun('postconf', ['-c', path.join(root, 'etc/postfix'), '-e', ...params]);
      },
    });
  }

  /** An admin change that plans a Postfix reload. */
  const setRelay = (daemon: Scoped) => daemon.cpcmd(['scope:set', 'mail.smart-host', "'[relay.example.test]:587'"]);

  it('a queue_directory outside the root with a planted postfix-script and a pid file naming a live process: no reload, the script never runs', async () => {
    await using scratch = await tempDir();
    const outside = scratch.path;
    const marker = path.join(outside, 'RAN-AS-ROOT');
    await mkdir(path.join(outside, 'pid'), { recursive: true });
    await writeFile(path.join(outside, 'pid/master.pid'), `${String(liveStranger()).padStart(10)}\n`);
    await writeFile(path.join(outside, 'postfix-script'), `#!/bin/sh\ntouch ${marker}\n`);
    await chmod(path.join(outside, 'postfix-script'), 0o755);
    await using daemon = await handEdited([`queue_directory=${outside}`, `daemon_directory=${outside}`]);
    const b = daemon.postfix;

    const r = await setRelay(daemon);
    expectExit(r, 'ok');
    expect(await relayhostOf(b)).toBe('[relay.example.test]:587');
    expect(existsSync(marker), 'the planted postfix-script ran').toBe(false);
  });

  it('a pid file outside the root is never opened: a FIFO there would block any reader', async () => {
    await using scratch = await tempDir();
    const outside = scratch.path;
    const fifo = path.join(outside, 'pid/master.pid');
    await mkdir(path.dirname(fifo), { recursive: true });
    await mustRun('mkfifo', [fifo]);
    await using daemon = await handEdited([`queue_directory=${outside}`]);

    let writer: number | undefined;
    try {
      const r = await Promise.race([setRelay(daemon), new Promise<'hung'>((res) => setTimeout(() => res('hung'), 20_000))]);
      expect(r, 'the set hung reading a pid file outside the root').not.toBe('hung');
      expectExit(r as RunResult, 'ok');
      // No reader has the FIFO open: a non-blocking open for writing fails with ENXIO.
      expect(() => (writer = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK))).toThrow(/ENXIO/);
    } finally {
      // Unblock a reader left hanging (the code before the fix), so the daemon can stop.
      if (writer === undefined) {
        try {
          writer = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
        } catch {
          // nobody reading
        }
      }
      if (writer !== undefined) closeSync(writer);
    }
  });

  it("a pid file inside the root naming a live process that is not Postfix's master is not Postfix", async () => {
    await using daemon = await handEdited([]);
    const b = daemon.postfix;
    await mkdir(path.join(b.queueDir, 'pid'), { recursive: true });
    await writeFile(path.join(b.queueDir, 'pid/master.pid'), `${String(liveStranger()).padStart(10)}\n`);

    // Taken for Postfix, the reload would fail (postfix-script: not running) and roll the change back.
    const r = await setRelay(daemon);
    expectExit(r, 'ok');
    expect(await relayhostOf(b)).toBe('[relay.example.test]:587');
  });
});
