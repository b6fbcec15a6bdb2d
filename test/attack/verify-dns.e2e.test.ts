/**
 * Attack: an operator limited to net.* sets the hostname to the relay's name; net.hostname
 * writes `127.0.1.1 relay.example.com relay` into /etc/hosts. A local unprivileged user listens
 * on 127.0.1.1:2525, and when the admin runs `scope:set mail.smart-host
 * "'[relay.example.com]:2525'" alice PASS --verify` the password went to that user: --verify
 * resolved the name with the system resolver, which reads /etc/hosts first (and level encrypt
 * does not check certificates). Postfix itself looks relays up in DNS only.
 *
 * The sandbox's root is not the machine's /, so the hostname written here cannot reach the
 * real /etc/hosts; `localhost`, which the machine's /etc/hosts knows and DNS does not, stands
 * for it. --verify now asks DNS only: a name only /etc/hosts knows is refused with the reason
 * and nothing connects; the hostname net.hostname manages is refused as a relay name.
 */
import path from 'node:path';
import { type AddressInfo, type Server, type Socket, createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Scoped, cpcmd, readOrNull, scoped, treeDigest } from '../helpers/scoped.js';

const INVALID = 6;
const USER = 'alice';
const PASSWORD = 'Pw-dns-attack-2b7e';

describe('attack: --verify sent to a listener through /etc/hosts', () => {
  let d: Scoped;
  let server: Server;
  let port = 0;
  /** Connections the local user's listener saw, and what each sent. */
  const seen: string[] = [];
  const sockets = new Set<Socket>();

  beforeAll(async () => {
    d = await scoped({ postfix: true, env: { SCOPED_VERIFY_DEADLINE_MS: '3000' } });
    // The local user's fake relay: greets, offers AUTH, and keeps whatever it is sent.
    server = createServer((s) => {
      sockets.add(s);
      const index = seen.push('') - 1;
      s.on('error', () => undefined);
      s.write('220 relay.example.com ESMTP\r\n');
      s.on('data', (chunk: Buffer) => {
        seen[index] += chunk.toString();
        if (/^EHLO/im.test(chunk.toString())) s.write('250-relay.example.com\r\n250 AUTH PLAIN LOGIN\r\n');
        else if (/^AUTH/im.test(chunk.toString())) s.write('235 2.7.0 ok\r\n');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
    await d?.close();
  }, 60_000);

  /** Everything under the root but the store, which records the refusal. */
  function rootFiles(): Promise<Record<string, string>> {
    return treeDigest(d.root, { skip: ['var/lib/scoped'] });
  }

  /** The admin's `scope:set mail.smart-host HOST alice PASS --verify`: refused with `why`, nothing changed, the listener untouched. */
  async function refused(relayhost: string, why: RegExp): Promise<void> {
    const before = await rootFiles();
    const r = await d.cpcmd(['scope:set', 'mail.smart-host', `'${relayhost}'`, USER, PASSWORD, '--verify']);
    expect(r.code, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(INVALID);
    expect(r.stderr).toMatch(/--verify failed, nothing was changed/);
    expect(r.stderr).toMatch(why);
    expect(r.stderr).not.toContain(PASSWORD);
    expect(await rootFiles()).toEqual(before);
    expect(seen, 'the listener was sent the login').toEqual([]);
  }

  it('a name only /etc/hosts knows ([localhost]) is looked up in DNS, refused, and never connected to', async () => {
    // DNS has no localhost here; a resolver that serves /etc/hosts would answer 127.0.0.1, which is refused too.
    await refused(`[localhost]:${port}`, /DNS/);
  });

  it('the same without brackets (MX, then A/AAAA, all in DNS)', async () => {
    await refused(`localhost:${port}`, /DNS/);
  });

  it('the refusal says why and what to do instead: an address in brackets', async () => {
    const r = await d.cpcmd(['scope:set', 'mail.smart-host', `'[localhost]:${port}'`, USER, PASSWORD, '--verify']);
    // Whichever the machine's DNS answers, the error says what to do instead: a bracketed address.
    expect(r.stderr).toMatch(/Postfix would not find it either|loopback address|DNS lookup of localhost failed/);
    expect(r.stderr).toMatch(/in brackets, such as \[/);
    expect(seen).toEqual([]);
  });

  it("an operator limited to net.* names the machine after the relay: the admin's --verify refuses that name", async () => {
    const made = await d.cpcmd(['token:create', '--role', 'operator', '--scopes', 'net.*', '--name', 'hostname-attacker', '-o', 'json']);
    const operator = JSON.parse(made.stdout).token as string;
    const set = await cpcmd(['scope:set', 'net.hostname', 'relay.example.com'], { url: d.url, token: operator });
    expect(set.code, set.stderr).toBe(0);
    expect(await readOrNull(path.join(d.root, 'etc/hosts'), 'utf8')).toMatch(/^127\.0\.1\.1\s+relay\.example\.com\s+relay$/m);
    await refused(`[relay.example.com]:${port}`, /relay\.example\.com is this machine's own hostname \(net\.hostname\)/);
    await refused(`relay:${port}`, /relay is this machine's own hostname/);
  });

  it('a literal loopback address is still connected to: the admin names a local relay explicitly', async () => {
    const r = await d.cpcmd(['scope:set', 'mail.smart-host', `'[127.0.0.1]:${port}'`, USER, PASSWORD, '--verify', '--dry-run']);
    // The listener offers no STARTTLS, which level encrypt requires: refused after EHLO, before any login.
    expect(r.stderr).toMatch(/the relay does not offer STARTTLS/);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatch(/^EHLO /);
    expect(seen[0]).not.toMatch(/AUTH/);
    seen.length = 0;
  });
});
