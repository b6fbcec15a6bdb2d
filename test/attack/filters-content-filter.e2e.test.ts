/**
 * An admin's mistake: main.cf already hands mail to another content filter (amavis, the virus
 * scanner), and the admin sets mail.spam-filter spamassassin. SpamAssassin's filter took
 * content_filter's place without a word, and false then took it away altogether: amavis was
 * gone from main.cf for good and mail went unscanned, while switching the filter on and off
 * is to leave main.cf as it was.
 *
 * With a real scoped on a sandbox root whose spamd is a stand-in (recovery/fake-daemons.ts): the
 * set is refused, naming the content filter there and what to do, and main.cf stays as it was;
 * rspamd (a milter beside it) is still allowed, and false leaves amavis where it was.
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectExit } from '../helpers/expect.js';
import { type Scoped, scoped } from '../helpers/scoped.js';
import { FakeDaemons } from '../recovery/fake-daemons.js';

const AMAVIS = 'smtp-amavis:[127.0.0.1]:10024';

let d: Scoped;
let fakes: FakeDaemons;
const contentFilter = async () => (await d.postfix.postconf(['-h', 'content_filter'])).trim();

describe("an operator's content filter and mail.spam-filter spamassassin", { timeout: 60_000 }, () => {
  beforeAll(async () => {
    d = await scoped({ postfix: true, listen: 'none', start: false });
    fakes = await FakeDaemons.install(d.root, ['rspamd', 'spamd']);
    await d.postfix.postconf(['-e', `content_filter = ${AMAVIS}`]);
    await d.start();
  });

  afterAll(async () => {
    await fakes?.stopAll();
    await d?.close();
  });

  it('spamassassin is refused, naming the content filter, and main.cf stays as it was', async () => {
    const before = await readFile(d.postfix.mainCf, 'utf8');
    const set = await d.cpcmd(['scope:set', 'mail.spam-filter', 'spamassassin']);
    expect(set.code, set.stdout).not.toBe(0);
    expect(set.stderr).toContain(AMAVIS);
    expect(set.stderr).toMatch(/content_filter/);
    expect(await readFile(d.postfix.mainCf, 'utf8')).toBe(before);
    expect(fakes.running('spamd')).toBe(false);
  });

  it('rspamd, a milter beside it, is allowed, and false leaves the content filter where it was', async () => {
    expectExit(await d.cpcmd(['scope:set', 'mail.spam-filter', 'rspamd']), 'ok');
    expect(await contentFilter()).toBe(AMAVIS);
    expectExit(await d.cpcmd(['scope:set', 'mail.spam-filter', 'false']), 'ok');
    expect(await contentFilter()).toBe(AMAVIS);
  });
});
