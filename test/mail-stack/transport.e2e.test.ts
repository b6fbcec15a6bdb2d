/**
 * mail.transport with real mail through a private Postfix on loopback: relaylim, oneshot,
 * error: and smtp:[host]:port entries route as named, while the operator's hand-written
 * /etc/postfix/transport keeps working and is never rewritten. scoped's map goes first in
 * transport_maps; taking its entries away leaves main.cf's value and master.cf as they were.
 */
import { existsSync } from 'node:fs';
import { readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectExit } from '../helpers/expect.js';
import { freePort } from '../helpers/proc.js';
import { RelaySink } from '../helpers/relay.js';
import { type Scoped, mustRun, run, scoped, waitFor } from '../helpers/scoped.js';

let sink: RelaySink | undefined;
let daemon: Scoped | undefined;
/** A loopback port nothing listens on: delivery there fails with a temporary error. */
let deadPort = 0;
/** master.cf and main.cf's parameters before the first set. */
let masterOriginal = '';
let paramsOriginal = new Map<string, string>();

const reloads = (log: string) => (log.match(/postfix\/master\[\d+\]: reload/g) ?? []).length;

const HAND_MAP = '# my own routes\nhand.test  smtp:[127.0.0.1]:SINK\n';

describe('mail.transport with a real Postfix', () => {
  beforeAll(async () => {
    sink = await RelaySink.start({ auth: false });
    deadPort = await freePort();
    const port = sink.port;
    daemon = await scoped({
      postfix: { smtpd: true, running: true },
      listen: 'none',
      // The operator's own map, written and indexed by hand before scoped ever ran.
      setup: async (root) => {
        const dir = path.join(root, 'etc/postfix');
        await writeFile(path.join(dir, 'transport'), HAND_MAP.replace('SINK', String(port)));
        await mustRun('postmap', ['-c', dir, `hash:${path.join(dir, 'transport')}`]);
        await mustRun('postconf', ['-c', dir, '-e', 'transport_maps=hash:$config_directory/transport']);
      },
    });
  });

  afterAll(async () => {
    try {
      await daemon?.close();
    } finally {
      await sink?.close();
    }
  });

  /** The mail log's line for a recipient's delivery with this status, once it is there. */
  const delivery = (to: string, status: string) =>
    waitFor(
      `${to} ${status} in the mail log`,
      async () => {
        const line = (await daemon!.postfix.maillog()).split('\n').find((l) => l.includes(`to=<${to}>`) && l.includes(`status=${status}`));
        return line;
      },
      30_000,
    );

  it("routes relaylim, oneshot, error: and smtp: entries as named, beside the operator's own map, which stays untouched", async () => {
    const d = daemon!;
    const b = d.postfix;
    const relay = sink!;
    const handMap = path.join(b.dir, 'transport');
    const masterCf = path.join(b.dir, 'master.cf');
    const handBefore = await readFile(handMap, 'utf8');
    const handStat = await stat(handMap);
    const handDbStat = await stat(`${handMap}.db`);
    const masterBefore = await readFile(masterCf, 'utf8');
    const paramsBefore = await b.params();
    masterOriginal = masterBefore;
    paramsOriginal = paramsBefore;
    expect(paramsBefore.get('transport_maps')).toBe('hash:$config_directory/transport');

    const info = await d.cpcmd(['scope:info', 'mail.transport']);
    expectExit(info, 'ok');
    expect(info.stdout).toMatch(/relaylim/);
    expect(info.stdout).toMatch(/\/etc\/postfix\/transport/);
    expect(info.stdout).toMatch(/cpcmd scope:set mail\.transport yahoo\.com relaylim:/);

    const entries: [string, string][] = [
      ['relay.test', `relaylim:[127.0.0.1]:${relay.port}`],
      ['smtp.test', `smtp:[127.0.0.1]:${relay.port}`],
      ['oneshot.test', `oneshot:[127.0.0.1]:${deadPort}`],
      ['retry.test', `smtp:[127.0.0.1]:${deadPort}`],
      ['bad.test', 'error:Bad domain!'],
    ];
    const reloadsBefore = reloads(await b.maillog());
    for (const [dest, transport] of entries) expectExit(await d.cpcmd(['scope:set', 'mail.transport', dest, transport]), 'ok');

    // scoped's map first, the operator's after it, as the operator wrote it; their file is not touched.
    const p = await b.params();
    expect(p.get('transport_maps')).toBe('hash:$config_directory/scoped-transport, hash:$config_directory/transport');
    expect(p.get('relaylim_destination_concurrency_limit')).toBe('1');
    expect(await readFile(handMap, 'utf8')).toBe(handBefore);
    expect((await stat(handMap)).mtimeMs).toBe(handStat.mtimeMs);
    expect((await stat(`${handMap}.db`)).mtimeMs).toBe(handDbStat.mtimeMs);
    // relaylim and oneshot are Postfix's smtp client, in scoped's block at the end of master.cf.
    expect((await readFile(masterCf, 'utf8')).startsWith(masterBefore)).toBe(true);
    expect((await b.postconf(['-M', 'relaylim/unix'])).trim()).toMatch(/^relaylim\s+unix\s+-\s+-\s+n\s+-\s+-\s+smtp -o syslog_name=postfix\/relaylim$/);
    expect((await b.postconf(['-M', 'oneshot/unix'])).trim()).toMatch(
      /^oneshot\s+unix\s.*\ssmtp -o syslog_name=postfix\/oneshot -o smtp_delivery_status_filter=/,
    );
    const get = await d.cpcmd(['scope:get', 'mail.transport', '-o', 'json']);
    expectExit(get, 'ok');
    expect(JSON.parse(get.stdout)).toEqual(Object.fromEntries(entries));
    expectExit(await d.cpcmd(['scope:check', 'mail.transport']), 'ok');
    const check = await run('postfix', ['-c', b.dir, 'check']);
    expect(check.code, check.stderr).toBe(0);
    expect(check.stderr).toBe('');

    // Each set reloaded the running Postfix.
    await waitFor('Postfix to reload onto the new transports', async () => (reloads(await b.maillog()) >= reloadsBefore + entries.length ? true : undefined));
    const ids = {
      relay: await b.sendmail({ to: 'rcpt@relay.test' }),
      smtp: await b.sendmail({ to: 'rcpt@smtp.test' }),
      hand: await b.sendmail({ to: 'rcpt@hand.test' }),
    };
    // A sender at hand.test gets its bounces at the sink, through the operator's own entry.
    await b.sendmail({ from: 'sender@hand.test', to: 'rcpt@bad.test' });
    await b.sendmail({ from: 'sender@hand.test', to: 'rcpt@oneshot.test' });
    await b.sendmail({ from: 'sender@hand.test', to: 'rcpt@retry.test' });

    for (const [name, id] of Object.entries(ids)) {
      const msg = await waitFor(`the ${name} message at the sink`, () => relay.messages.find((m) => m.raw.includes(id)), 30_000);
      expect(msg.to).toEqual([`rcpt@${name}.test`]);
    }
    expect(await delivery('rcpt@relay.test', 'sent')).toMatch(/postfix\/relaylim\/smtp\[\d+\]:/);
    expect(await delivery('rcpt@smtp.test', 'sent')).toMatch(/postfix\/smtp\[\d+\]: .*relay=127\.0\.0\.1\[127\.0\.0\.1\]/);
    expect(await delivery('rcpt@hand.test', 'sent')).toMatch(/relay=127\.0\.0\.1\[127\.0\.0\.1\]/);
    // error: bounces with its text; oneshot bounces on its first failure; plain smtp defers the same failure.
    expect(await delivery('rcpt@bad.test', 'bounced')).toMatch(/status=bounced \(Bad domain!\)/);
    expect(await delivery('rcpt@oneshot.test', 'bounced')).toMatch(
      /postfix\/oneshot\/smtp\[\d+\]: .*dsn=5\.4\.1, status=bounced \(connect to 127\.0\.0\.1\[127\.0\.0\.1\]:\d+: Connection refused\)/,
    );
    expect(await delivery('rcpt@retry.test', 'deferred')).toMatch(/dsn=4\.4\.1, status=deferred/);
    // The sender sees the bounces: the error text, and oneshot's one failed attempt.
    const bounces = await waitFor(
      'two bounces at the sink',
      () => {
        const got = relay.messages.filter((m) => m.from === '' && m.to.includes('sender@hand.test'));
        return got.length >= 2 ? got : undefined;
      },
      30_000,
    );
    expect(bounces.some((m) => m.raw.includes('rcpt@bad.test') && m.raw.includes('Bad domain!'))).toBe(true);
    expect(bounces.some((m) => m.raw.includes('rcpt@oneshot.test') && m.raw.includes('Connection refused'))).toBe(true);
    expect(bounces.some((m) => m.raw.includes('rcpt@retry.test'))).toBe(false);
    expect(await readFile(handMap, 'utf8')).toBe(handBefore);
  });

  it('reports a hand edit of its map or its master.cf block as drift, and converge repairs both', async () => {
    const d = daemon!;
    const b = d.postfix;
    const map = path.join(b.dir, 'scoped-transport');
    const masterCf = path.join(b.dir, 'master.cf');
    const mapText = await readFile(map, 'utf8');
    const masterText = await readFile(masterCf, 'utf8');
    await writeFile(map, `${mapText}evil.test smtp:[192.0.2.1]\n`);
    await writeFile(masterCf, masterText.replace('  -o syslog_name=postfix/relaylim\n', ''));
    const drift = await d.cpcmd(['scope:check', 'mail.transport']);
    expectExit(drift, 'drift');
    expect(drift.stdout + drift.stderr).toMatch(/scoped-transport/);
    expect(drift.stdout + drift.stderr).toMatch(/master\.cf:transport/);
    expectExit(await d.cpcmd(['converge', 'mail/transport']), 'ok');
    expect(await readFile(map, 'utf8')).toBe(mapText);
    expect(await readFile(masterCf, 'utf8')).toBe(masterText);
    expect((await mustRun('postmap', ['-c', b.dir, '-q', 'evil.test', `hash:${map}`]).catch(() => 'absent')).trim()).toBe('absent');
    expectExit(await d.cpcmd(['scope:check', 'mail.transport']), 'ok');
  });

  it("taking every entry away leaves master.cf, transport_maps and the operator's map as they were", async () => {
    const d = daemon!;
    const b = d.postfix;
    const relay = sink!;
    const masterCf = path.join(b.dir, 'master.cf');
    for (const dest of ['relay.test', 'smtp.test', 'oneshot.test', 'retry.test', 'bad.test'])
      expectExit(await d.cpcmd(['scope:set', 'mail.transport', dest, 'false']), 'ok');
    expect(await b.params()).toEqual(paramsOriginal);
    expect((await b.params()).get('transport_maps')).toBe('hash:$config_directory/transport');
    expect(await readFile(masterCf, 'utf8')).toBe(masterOriginal);
    expect((await b.postconf(['-M', 'relaylim/unix'])).trim()).toBe('');
    for (const f of ['scoped-transport', 'scoped-transport.db', 'scoped-oneshot-status']) expect(existsSync(path.join(b.dir, f))).toBe(false);
    expect(await readFile(path.join(b.dir, 'transport'), 'utf8')).toBe(HAND_MAP.replace('SINK', String(relay.port)));
    expect(JSON.parse((await d.cpcmd(['scope:get', 'mail.transport', '-o', 'json'])).stdout)).toEqual({});
    expectExit(await d.cpcmd(['scope:check', 'mail.transport']), 'ok');
    // The operator's entry still delivers.
    const id = await b.sendmail({ to: 'again@hand.test' });
    await waitFor('the message at the sink', () => relay.messages.find((m) => m.raw.includes(id)), 30_000);
  });
});
