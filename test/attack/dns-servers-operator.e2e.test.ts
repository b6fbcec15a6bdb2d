/**
 * Attack: an operator points mail.deliverability's DNS queries at a host and port of its choosing.
 * Every reader's report then sends DNS packets there, from root's daemon: mail_dns_servers is
 * admin only, like the other vars that decide where scoped or Postfix connect.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCodes, expectExit } from '../helpers/expect.js';
import { type Scoped, scoped, tcpCall } from '../helpers/scoped.js';

let d: Scoped;

async function token(role: string, scopes?: string): Promise<string> {
  const r = await d.cpcmd(['token:create', '--role', role, ...(scopes ? ['--scopes', scopes] : []), '-o', 'json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout).token as string;
}

describe('attack: an operator chooses where mail.deliverability sends its DNS queries', { timeout: 60_000 }, () => {
  beforeAll(async () => {
    d = await scoped({ postfix: true });
  });

  afterAll(async () => {
    await d?.close();
  });

  it('operators, limited to cp.bootstrapper or not, are forbidden mail_dns_servers; the admin may set it', async () => {
    for (const t of [await token('operator'), await token('operator', 'cp.bootstrapper')]) {
      const viaVar = await tcpCall(d.port!, t, 'var.set', { name: 'mail_dns_servers', value: ['127.0.0.1:6379'] });
      expect('error' in viaVar ? viaVar.error : viaVar.result, JSON.stringify(viaVar)).toMatchObject({
        code: ErrorCodes.Forbidden,
        message: expect.stringMatching(/admin role needed to change mail_dns_servers/),
      });
      const viaScope = await tcpCall(d.port!, t, 'scope.set', { name: 'cp.bootstrapper', value: { var: 'mail_dns_servers', value: ['127.0.0.1:6379'] } });
      expect('error' in viaScope ? viaScope.error : viaScope.result, JSON.stringify(viaScope)).toMatchObject({ code: ErrorCodes.Forbidden });
    }
    expect((await d.ok<{ value: unknown }>('var.get', { name: 'mail_dns_servers' })).value).toEqual([]);
    expectExit(await d.cpcmd(['scope:set', 'cp.bootstrapper', 'mail_dns_servers', "['127.0.0.1:5353']"]), 'ok');
    expect((await d.ok<{ value: unknown }>('var.get', { name: 'mail_dns_servers' })).value).toEqual(['127.0.0.1:5353']);
  });
});
