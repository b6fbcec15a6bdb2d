/**
 * Attack (second pass): net.hostname, an operator's scope, writes `127.0.1.1 FQDN SHORT` into
 * /etc/hosts. An operator limited to net.* names the machine after the smart host, so that on a
 * machine whose resolver serves /etc/hosts (systemd-resolved, dnsmasq) Postfix hands the relay
 * login to 127.0.1.1, where any local user may listen on the relay's port. The smart host and
 * the hostname may never be the same name (nor the hostname's first label), in either order.
 * Real scoped on a sandbox root with Postfix's config (Postfix is not started).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectExit } from '../helpers/expect.js';
import { type Scoped, cpcmd, scoped } from '../helpers/scoped.js';

const SAME_NAME = /the smart host .* and this machine's hostname would be the same name/;

describe('the hostname cannot be pointed at the smart host', { timeout: 60_000 }, () => {
  let d: Scoped;
  let netOperator = '';
  const hosts = () => readFile(path.join(d.root, 'etc/hosts'), 'utf8').catch(() => '');
  const setHostname = (name: string) => cpcmd(['scope:set', 'net.hostname', name], { url: d.url, token: netOperator });

  beforeAll(async () => {
    d = await scoped({ postfix: true });
    netOperator = (await d.ok<{ token: string }>('token.create', { role: 'operator', scopes: ['net.*'] })).token;
    expectExit(await d.cpcmd(['scope:set', 'net.hostname', 'mail.example.test']), 'ok');
  });
  afterAll(() => d?.close(), 60_000);

  it("an operator limited to net.* cannot take the smart host's name or its short name; /etc/hosts keeps its line", async () => {
    expectExit(await d.cpcmd(['scope:set', 'mail.smart-host', "'[relay.example.test]:2525'", 'alice', 'Adm1nRelayPW']), 'ok');
    const before = await hosts();
    for (const name of ['relay.example.test', 'Relay.Example.Test.']) {
      const r = await setHostname(name);
      expectExit(r, 'invalid');
      expect(r.stderr).toMatch(SAME_NAME);
      expect(r.stderr).not.toContain('Adm1nRelayPW');
    }
    expect(await hosts()).toBe(before);
    // A bare relay name and a hostname whose first label is that name: /etc/hosts would map it too.
    expectExit(await d.cpcmd(['scope:set', 'mail.smart-host', 'relay', 'alice', 'Adm1nRelayPW']), 'ok');
    const r = await setHostname('relay.corp.example.test');
    expectExit(r, 'invalid');
    expect(r.stderr).toMatch(SAME_NAME);
    expect(await hosts()).toBe(before);
    expect(await d.ok('scope.get', { name: 'net.hostname' })).toMatchObject({ value: 'mail.example.test' });
  });

  it('a bare relay name is looked up by MX: the hostname may not be a name under it either', async () => {
    expectExit(await d.cpcmd(['scope:set', 'mail.smart-host', 'relay-domain.example.test:2525', 'alice', 'Adm1nRelayPW']), 'ok');
    const before = await hosts();
    const r = await setHostname('mx1.relay-domain.example.test');
    expectExit(r, 'invalid');
    expect(r.stderr).toMatch(SAME_NAME);
    expect(await hosts()).toBe(before);
    // A bracketed relay is not looked up by MX: a name under it is another host.
    expectExit(await d.cpcmd(['scope:set', 'mail.smart-host', "'[relay-domain.example.test]:2525'", 'alice', 'Adm1nRelayPW']), 'ok');
    expectExit(await setHostname('mx1.relay-domain.example.test'), 'ok');
    expectExit(await d.cpcmd(['scope:set', 'net.hostname', 'mail.example.test']), 'ok');
  });

  it("the other order too: the smart host cannot be set to the machine's own name; an address in brackets still can", async () => {
    const r = await d.cpcmd(['scope:set', 'mail.smart-host', "'[mail.example.test]:587'"]);
    expectExit(r, 'invalid');
    expect(r.stderr).toMatch(SAME_NAME);
    expectExit(await d.cpcmd(['scope:set', 'mail.smart-host', "'[127.0.1.1]:587'"]), 'ok');
  });
});
