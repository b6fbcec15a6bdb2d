/**
 * Attack: attacker text reached the admin's terminal raw. cpcmd -o cli printed ESC, BEL and
 * C1 characters from stored values, audit entries and relay replies, so whoever could put text
 * there could clear the admin's screen, move the cursor, set the window title or write the
 * clipboard (OSC 52) when the admin ran cpcmd.
 *
 * From the attacker's side, with a real scoped on a Postfix config and the real cpcmd: escape
 * sequences go into a hand-edited file a scope reads, a stored var value, the name of a call a
 * reader makes (refused, so it lands in the audit trail), and the replies of a relay that
 * --verify talks to (a local TCP server run here). Everything cpcmd prints for the admin must
 * be free of control characters and show them escaped; -o json and -o yaml stay parseable and
 * give back the exact text.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { type RunResult, type Scoped, cpcmd, scoped, tcpCall } from '../helpers/scoped.js';
import { HostileRelay } from '../helpers/hostile-relay.js';

const ESC = '\u001b';
const BEL = '\u0007';
const CLEAR = `${ESC}[2J`;
const CLIPBOARD = `${ESC}]52;c;cm0gLXJmIH4=${BEL}`;
const C1_CSI = '\u009b31m';
const BIDI = '\u202e';
const PAYLOAD = `a${CLEAR}b${CLIPBOARD}c${C1_CSI}d${BIDI}e`;

/** What a terminal would act on: C0 but newline and tab, DEL, C1, line separators, bidi overrides and isolates. */
const RAW_CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

/** cpcmd's whole output must be safe for a terminal, and show the escapes (as \x1b, or \u001b inside a quoted JSON string). */
function expectEscaped(r: RunResult, what: string): void {
  const all = r.stdout + r.stderr;
  expect(all, `${what}: ${JSON.stringify(all)}`).not.toMatch(RAW_CONTROL);
  expect(all, what).toMatch(/\\x1b|\\u001b/);
}

describe('attack: escape sequences reaching the admin terminal through cpcmd', { timeout: 60_000 }, () => {
  let d: Scoped;
  let relay: HostileRelay;
  let relayPort = 0;

  beforeAll(async () => {
    d = await scoped({ postfix: true, files: { 'etc/hostname': 'before.example.test\n' } });
    // A relay that answers every command with escape sequences, then (over TLS) refuses the login.
    relay = await HostileRelay.start({
      greeting: `220 relay.test ${CLEAR}${CLIPBOARD} ready\r\n`,
      ehlo: `250-relay.test${C1_CSI}\r\n250 STARTTLS\r\n`,
      ehloTls: `250-relay.test${C1_CSI}\r\n250 AUTH PLAIN LOGIN\r\n`,
      auth: () => `535 5.7.8 no ${CLEAR}${CLIPBOARD}${C1_CSI}${BIDI}\r\n`,
    });
    relayPort = relay.port;
  });

  afterAll(async () => {
    await d?.close();
    await relay?.close();
  });

  it('escapes a hand-edited file shown by scope:get and its drift notice', async () => {
    await d.ok('scope.set', { name: 'net.hostname', value: 'mail.example.test' });
    await writeFile(path.join(d.root, 'etc/hostname'), `${PAYLOAD}\n`);
    const got = await d.cpcmd(['scope:get', 'net.hostname']);
    expect(got.code).toBe(0);
    expectEscaped(got, 'scope:get net.hostname');
    expect(got.stdout).toContain('\\u009b31m');
    expect(got.stdout).toContain('\\u202e');
    const check = await d.cpcmd(['scope:check', 'net.hostname']);
    expectEscaped(check, 'scope:check net.hostname');
    const json = await d.cpcmd(['scope:get', 'net.hostname', '-o', 'json']);
    expect(json.stdout).not.toMatch(RAW_CONTROL);
    expect(JSON.parse(json.stdout)).toBe(PAYLOAD);
    const yaml = await d.cpcmd(['scope:get', 'net.hostname', '-o', 'yaml']);
    expect(yaml.stdout).not.toMatch(RAW_CONTROL);
    expect(parseYaml(yaml.stdout)).toBe(PAYLOAD);
  });

  it('escapes a stored var value in var:list and scope:get cp.bootstrapper', async () => {
    const stored = await d.call('scope.set', {
      name: 'cp.bootstrapper',
      value: { var: 'postfix_custom_config', value: { smtpd_banner: `$myhostname ESMTP ${PAYLOAD}` } },
      converge: false,
    });
    expect(stored, JSON.stringify(stored)).toHaveProperty('result');
    for (const args of [['var:list'], ['scope:get', 'cp.bootstrapper'], ['scope:get', 'cp.bootstrapper', 'postfix_custom_config']]) {
      const r = await d.cpcmd(args);
      expect(r.code, r.stderr).toBe(0);
      expectEscaped(r, args.join(' '));
    }
    const json = await d.cpcmd(['var:list', '-o', 'json']);
    expect(json.stdout).not.toMatch(RAW_CONTROL);
    const vars = JSON.parse(json.stdout) as { name: string; value: Record<string, string> }[];
    expect(vars.find((v) => v.name === 'postfix_custom_config')?.value.smtpd_banner).toBe(`$myhostname ESMTP ${PAYLOAD}`);
  });

  it("escapes a reader's refused call in the reader's error line and in the admin's audit:list", async () => {
    const reader = (await d.ok('token.create', { role: 'reader', name: 'painter' })).token;
    // Refused calls by the reader: a scope name and a var name made of escape sequences.
    await tcpCall(d.port!, reader, 'scope.set', { name: `mail.smart-host${PAYLOAD}`, args: ['x'] });
    await tcpCall(d.port!, reader, 'var.set', { name: PAYLOAD, value: PAYLOAD });
    const own = await cpcmd(['scope:get', `net.${PAYLOAD}`], { url: d.url, token: reader });
    expect(own.code).not.toBe(0);
    expect(own.stdout + own.stderr).not.toMatch(RAW_CONTROL);
    const audit = await d.cpcmd(['audit:list']);
    expect(audit.code).toBe(0);
    expectEscaped(audit, 'audit:list');
  });

  it('escapes a relay reply shown by --verify', async () => {
    const r = await d.cpcmd(['scope:set', 'mail.smart-host', `'[127.0.0.1]:${relayPort}'`, 'alice', 'pw-verify-1', '--verify']);
    expect(r.code, r.stderr).not.toBe(0);
    expect(r.stderr).toMatch(/535/);
    expect(r.stdout + r.stderr).not.toMatch(RAW_CONTROL);
    const json = await d.cpcmd(['scope:set', 'mail.smart-host', `'[127.0.0.1]:${relayPort}'`, 'alice', 'pw-verify-1', '--verify', '-o', 'json']);
    expect(json.stdout + json.stderr).not.toMatch(RAW_CONTROL);
    const audit = await d.cpcmd(['audit:list']);
    expect(audit.stdout + audit.stderr).not.toMatch(RAW_CONTROL);
  });
});
