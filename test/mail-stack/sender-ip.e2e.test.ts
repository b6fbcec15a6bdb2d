/**
 * mail.sender-ip with real mail (the reference docs' "Splitting delivery IPs"): a private
 * Postfix on loopback relays through a sink (the smart host), and mail from two sender domains
 * reaches it from two of the machine's addresses (127.0.0.2 and 127.0.0.3) with two HELO names,
 * while mail from any other sender leaves as before. An address the machine lacks is refused.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectExit, expectRefused } from '../helpers/expect.js';
import { RelaySink } from '../helpers/relay.js';
import { type Scoped, run, scoped, waitFor } from '../helpers/scoped.js';

let sink: RelaySink | undefined;
let daemon: Scoped | undefined;
let masterOriginal = '';
let paramsOriginal = new Map<string, string>();

describe('mail.sender-ip with a real Postfix', () => {
  beforeAll(async () => {
    sink = await RelaySink.start({ auth: false });
    daemon = await scoped({ postfix: { smtpd: true, running: true }, listen: 'none' });
    expectExit(await daemon.cpcmd(['scope:set', 'mail.smart-host', sink.relayhostWord]), 'ok');
    masterOriginal = await readFile(path.join(daemon.postfix.dir, 'master.cf'), 'utf8');
    paramsOriginal = await daemon.postfix.params();
  });

  afterAll(async () => {
    try {
      await daemon?.close();
    } finally {
      await sink?.close();
    }
  });

  /** Send from `from` and wait for the message at the sink. */
  const deliver = async (from: string) => {
    const id = await daemon!.postfix.sendmail({ from, to: 'rcpt@remote.test' });
    return waitFor(`the message from ${from} at the sink`, () => sink!.messages.find((m) => m.raw.includes(id)), 30_000);
  };

  it('refuses an address this machine does not have, naming the ones it has, and changes nothing', async () => {
    const d = daemon!;
    const line = expectRefused(
      await d.cpcmd(['scope:set', 'mail.sender-ip', 'one.test', '192.0.2.77']),
      'invalid',
      /192\.0\.2\.77 is not an address of this machine/,
    );
    expect(line).toMatch(/127\.0\.0\.1/);
    expect(await readFile(path.join(d.postfix.dir, 'master.cf'), 'utf8')).toBe(masterOriginal);
    expect(await d.postfix.params()).toEqual(paramsOriginal);
    expect(JSON.parse((await d.cpcmd(['scope:get', 'mail.sender-ip', '-o', 'json'])).stdout)).toEqual({});
  });

  it('refuses a sender a map line would take as a comment, and an address with a zone id', async () => {
    const d = daemon!;
    expectRefused(await d.cpcmd(['scope:set', 'mail.sender-ip', "'#news@one.test'", '127.0.0.2']), 'invalid', /a sender is a domain/);
    expectRefused(await d.cpcmd(['scope:set', 'mail.sender-ip', 'one.test', '::1%lo']), 'invalid', /an IP address such as/);
    expect(await readFile(path.join(d.postfix.dir, 'master.cf'), 'utf8')).toBe(masterOriginal);
    expect(await d.postfix.params()).toEqual(paramsOriginal);
  });

  it('sends mail of two sender domains from two addresses with two HELO names; other senders as before', async () => {
    const d = daemon!;
    const b = d.postfix;
    const info = await d.cpcmd(['scope:info', 'mail.sender-ip']);
    expectExit(info, 'ok');
    expect(info.stdout).toMatch(/cpcmd scope:set mail\.sender-ip example\.com 192\.0\.2\.10 mail\.example\.com/);

    const reloads = (log: string) => (log.match(/postfix\/master\[\d+\]: reload/g) ?? []).length;
    const before = reloads(await b.maillog());
    expectExit(await d.cpcmd(['scope:set', 'mail.sender-ip', 'one.test', '127.0.0.2', 'out.one.test']), 'ok');
    expectExit(await d.cpcmd(['scope:set', 'mail.sender-ip', 'two.test', '127.0.0.3', 'out.two.test']), 'ok');
    await waitFor('Postfix to reload', async () => (reloads(await b.maillog()) >= before + 2 ? true : undefined));

    expect(JSON.parse((await d.cpcmd(['scope:get', 'mail.sender-ip', '-o', 'json'])).stdout)).toEqual({
      'one.test': { ip: '127.0.0.2', helo: 'out.one.test' },
      'two.test': { ip: '127.0.0.3', helo: 'out.two.test' },
    });
    expect((await b.params()).get('sender_dependent_default_transport_maps')).toBe('hash:$config_directory/scoped-sender-transport');
    expect((await readFile(path.join(b.dir, 'master.cf'), 'utf8')).startsWith(masterOriginal)).toBe(true);
    const services = await b.postconf(['-M']);
    expect(services).toMatch(/ smtp -o syslog_name=postfix\/ip-127-0-0-2-\w+ -o smtp_bind_address=127\.0\.0\.2 -o smtp_helo_name=out\.one\.test$/m);
    expect(services).toMatch(/ smtp -o syslog_name=postfix\/ip-127-0-0-3-\w+ -o smtp_bind_address=127\.0\.0\.3 -o smtp_helo_name=out\.two\.test$/m);
    const check = await run('postfix', ['-c', b.dir, 'check']);
    expect(check.code, check.stderr).toBe(0);
    expectExit(await d.cpcmd(['scope:check', 'mail.sender-ip']), 'ok');

    const [one, two, other] = await Promise.all([deliver('a@one.test'), deliver('b@two.test'), deliver('c@three.test')]);
    expect([one.remoteAddress, one.helo]).toEqual(['127.0.0.2', 'out.one.test']);
    expect([two.remoteAddress, two.helo]).toEqual(['127.0.0.3', 'out.two.test']);
    expect(other.remoteAddress).toBe('127.0.0.1');
    expect(other.helo).toBe(await b.param('myhostname'));
  });

  it('reports a hand edit of its master.cf block or its map as drift, and converge repairs both', async () => {
    const d = daemon!;
    const b = d.postfix;
    const masterCf = path.join(b.dir, 'master.cf');
    const map = path.join(b.dir, 'scoped-sender-transport');
    const masterText = await readFile(masterCf, 'utf8');
    const mapText = await readFile(map, 'utf8');
    await writeFile(masterCf, masterText.replace('smtp_bind_address=127.0.0.3', 'smtp_bind_address=127.0.0.9'));
    await writeFile(map, mapText.replace('@two.test', '@elsewhere.test'));
    const drift = await d.cpcmd(['scope:check', 'mail.sender-ip']);
    expectExit(drift, 'drift');
    expect(drift.stdout).toMatch(/master\.cf:sender-ip/);
    expect(drift.stdout).toMatch(/scoped-sender-transport/);
    expectExit(await d.cpcmd(['converge', 'mail/sender-ip']), 'ok');
    expect(await readFile(masterCf, 'utf8')).toBe(masterText);
    expect(await readFile(map, 'utf8')).toBe(mapText);
    expectExit(await d.cpcmd(['scope:check', 'mail.sender-ip']), 'ok');
    const two = await deliver('b2@two.test');
    expect([two.remoteAddress, two.helo]).toEqual(['127.0.0.3', 'out.two.test']);
  });

  it('false removes the services, the map and the parameter: master.cf and main.cf as before', async () => {
    const d = daemon!;
    const b = d.postfix;
    expectExit(await d.cpcmd(['scope:set', 'mail.sender-ip', 'one.test', 'false']), 'ok');
    expect((await b.postconf(['-M'])).match(/smtp_bind_address=127\.0\.0\.2/)).toBeNull();
    expectExit(await d.cpcmd(['scope:set', 'mail.sender-ip', 'two.test', 'false']), 'ok');
    expect(await readFile(path.join(b.dir, 'master.cf'), 'utf8')).toBe(masterOriginal);
    expect(await b.params()).toEqual(paramsOriginal);
    for (const f of ['scoped-sender-transport', 'scoped-sender-transport.db']) expect(existsSync(path.join(b.dir, f))).toBe(false);
    expectRefused(await d.cpcmd(['scope:set', 'mail.sender-ip', 'one.test', 'false']), 'notFound', /one\.test has no delivery IP/);
    const one = await deliver('a2@one.test');
    expect(one.remoteAddress).toBe('127.0.0.1');
  });
});
