/**
 * The example plugin (plugins/example, scope mail.transport) end to end: the real scoped loads
 * it through the `plugins:` key of its YAML config, the real cpcmd routes a destination
 * through the plugin's relaylim transport to a local SMTP sink, and a real, running Postfix
 * delivers a message that way. Turning the entry off puts master.cf and main.cf back.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectExit } from './helpers/expect.js';
import { REPO, type Scoped, mustRun, run, scoped, waitFor } from './helpers/scoped.js';
import { RelaySink } from './helpers/relay.js';

const EXAMPLE_PLUGIN = path.join(REPO, 'plugins/example');
const DEST = 'sink.test';

let sink: RelaySink | undefined;
let daemon: Scoped | undefined;

describe('mail.transport (the example plugin) with a real Postfix', () => {
  beforeAll(async () => {
    const [d, s] = await Promise.allSettled([
      scoped({ postfix: { smtpd: true, running: true }, listen: 'none', config: { plugins: [EXAMPLE_PLUGIN] } }),
      RelaySink.start({ auth: false }),
    ]);
    if (d.status === 'fulfilled') daemon = d.value;
    if (s.status === 'fulfilled') sink = s.value;
    if (d.status === 'rejected') throw d.reason;
    if (s.status === 'rejected') throw s.reason;
  });

  afterAll(async () => {
    try {
      await daemon?.close();
    } finally {
      await sink?.close();
    }
  });

  it('relays a message through a relaylim transport to a local SMTP server; false puts master.cf and main.cf back', async () => {
    const d = daemon!;
    const b = d.postfix;
    const relay = sink!;
    const masterCf = path.join(b.dir, 'master.cf');
    const transportMap = path.join(b.dir, 'transport');
    const masterBefore = await readFile(masterCf, 'utf8');
    const paramsBefore = await b.params();
    const mainBefore = await readFile(b.mainCf, 'utf8');

    const pl = await d.cpcmd(['plugin:list']);
    expectExit(pl, 'ok');
    expect(pl.stdout).toMatch(/^scoped-plugin-mail-transport@0\.1\.0\s+loaded {2}mail\.transport$/m);

    const transport = `relaylim:[127.0.0.1]:${relay.port}`;
    const reloadsBefore = ((await b.maillog()).match(/postfix\/master\[\d+\]: reload/g) ?? []).length;
    // Brackets inside a word (not at its start) stay text: no quoting needed, as with smtp:[relay]:587.
    const set = await d.cpcmd(['scope:set', 'mail.transport', DEST, transport]);
    expectExit(set, 'ok');
    expect(set.stdout).toMatch(/^mail\.transport: applied \(revision \d+\)$/m);

    // master.cf gained the relaylim service (and nothing else changed in it).
    const masterAfter = await readFile(masterCf, 'utf8');
    expect(masterAfter.startsWith(masterBefore)).toBe(true);
    const service = (await b.postconf(['-M', 'relaylim/unix'])).trim();
    expect(service).toMatch(/^relaylim\s+unix\s+-\s+-\s+n\s+-\s+-\s+smtp -o syslog_name=postfix\/relaylim$/);
    // main.cf points at the transport map, and relaylim delivers one connection at a time.
    const p = await b.params();
    expect(p.get('transport_maps')).toBe('hash:$config_directory/transport');
    expect(p.get('relaylim_destination_concurrency_limit')).toBe('1');
    expect(await readFile(transportMap, 'utf8')).toMatch(new RegExp(`^${DEST.replace('.', '\\.')} relaylim:\\[127\\.0\\.0\\.1\\]:${relay.port}$`, 'm'));
    expect((await mustRun('postmap', ['-c', b.dir, '-q', DEST, `hash:${transportMap}`])).trim()).toBe(transport);
    await waitFor('Postfix to reload', async () =>
      ((await b.maillog()).match(/postfix\/master\[\d+\]: reload/g) ?? []).length > reloadsBefore ? true : undefined,
    );

    const get = await d.cpcmd(['scope:get', 'mail.transport', '-o', 'json']);
    expectExit(get, 'ok');
    expect(JSON.parse(get.stdout)).toEqual({ [DEST]: transport });
    expect((await d.cpcmd(['scope:get', 'mail.transport', DEST])).stdout.trim()).toBe(transport);
    expectExit(await d.cpcmd(['scope:check', 'mail.transport']), 'ok');

    // A message for the destination goes out through relaylim to the sink.
    const id = await b.sendmail({ to: `rcpt@${DEST}` });
    const msg = await waitFor(`the message ${id} at the sink`, () => relay.messages.find((m) => m.raw.includes(id)), 30_000);
    expect(msg.to).toEqual([`rcpt@${DEST}`]);
    expect(msg.from).toBe('sender@sandbox.test');
    await waitFor('the queue to empty', async () => ((await b.queueEmpty()) ? true : undefined));
    const log = await waitFor('the delivery in the mail log', async () => {
      const text = await b.maillog();
      return new RegExp(
        `postfix/relaylim/smtp\\[\\d+\\]: \\w+: to=<rcpt@${DEST.replace('.', '\\.')}>, relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${relay.port},.*status=sent`,
      ).test(text)
        ? text
        : undefined;
    });
    expect(log).not.toMatch(new RegExp(`postfix/smtp\\[\\d+\\]: \\w+: to=<rcpt@${DEST.replace('.', '\\.')}>`));

    // Off again: master.cf byte for byte as before, main.cf's parameters too, the map gone.
    const reloadsOn = ((await b.maillog()).match(/postfix\/master\[\d+\]: reload/g) ?? []).length;
    const off = await d.cpcmd(['scope:set', 'mail.transport', DEST, 'false']);
    expectExit(off, 'ok');
    expect(await readFile(masterCf, 'utf8')).toBe(masterBefore);
    expect((await b.postconf(['-M', 'relaylim/unix'])).trim()).toBe('');
    expect(await b.params()).toEqual(paramsBefore);
    expect(await readFile(b.mainCf, 'utf8')).toBe(mainBefore);
    expect(existsSync(transportMap)).toBe(false);
    expect(existsSync(`${transportMap}.db`)).toBe(false);
    expect(JSON.parse((await d.cpcmd(['scope:get', 'mail.transport', '-o', 'json'])).stdout)).toEqual({});
    expectExit(await d.cpcmd(['scope:check', 'mail.transport']), 'ok');
    // The running Postfix was reloaded onto it, and Postfix's own check accepts it.
    await waitFor('Postfix to reload again', async () =>
      ((await b.maillog()).match(/postfix\/master\[\d+\]: reload/g) ?? []).length > reloadsOn ? true : undefined,
    );
    const check = await run('postfix', ['-c', b.dir, 'check']);
    expect(check.code, check.stderr).toBe(0);
  });
});
