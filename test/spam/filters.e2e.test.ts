/**
 * The spam filters on real mail: a real scoped on a sandbox root with a running, private
 * Postfix, Debian's own rspamd, spamd, spamc and redis-server linked into the root (scoped runs
 * them there on private ports), and a local SMTP sink as the smart host every accepted message
 * is delivered to. Messages are submitted over SMTP as a client would; what the client is told
 * and what reaches the sink is what is checked.
 */
import { readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { expectExit, expectRefused } from '../helpers/expect.js';
import { waitFor } from '../helpers/scoped.js';
import { GTUBE, HAM_TEXT, delivered, endpoints, filterBox, filterPids, filterProcesses, headersOf, rspamdLearned, submit } from './helpers.js';

/** A word a site rule makes SpamAssassin call spam (GTUBE is one rspamd will not learn from). */
const SPAM_MARKER = 'e2e-spam-marker-7f3a';

const mainCf = (root: string) => readFileSync(path.join(root, 'etc/postfix/main.cf'), 'utf8');
const masterCf = (root: string) => readFileSync(path.join(root, 'etc/postfix/master.cf'), 'utf8');

describe('spam filters on real mail', { timeout: 240_000 }, () => {
  it('rspamd refuses GTUBE during SMTP with a 5xx the client sees, and delivers ham with its headers', async () => {
    await using b = await filterBox();
    const port = b.d.postfix.smtpPort;
    expectExit(await b.d.cpcmd(['scope:set', 'mail.spam-filter', 'rspamd']), 'ok');
    const { 'rspamd.milter': milter } = await endpoints(b.root);
    const params = await b.d.postfix.params();
    expect(params.get('smtpd_milters')).toBe(`inet:${milter!.host}:${milter!.port}`);
    expect(params.get('content_filter')).toBeUndefined();
    expect((await b.d.cpcmd(['scope:get', 'mail.spam-filter'])).stdout.trim()).toBe('rspamd');

    const spam = await submit(port, { body: `This is spam.\n${GTUBE}\n` });
    expect(spam.dataReply, spam.replies.join(' | ')).toMatch(/^5\d\d /);
    expect(spam.dataReply).toMatch(/gtube|spam/i);

    const ham = await submit(port, { body: HAM_TEXT });
    expect(ham.dataReply).toMatch(/^250 /);
    const got = headersOf((await delivered(b.relay, ham.id)).raw);
    expect(got).toMatch(/^X-Spamd-Result: default: False/m);
    expect(got).toMatch(/^X-Rspamd-Queue-Id: /m);
    expect(b.relay.messages.some((m) => m.raw.includes(spam.id))).toBe(false);
  });

  it('SpamAssassin works after the queue: GTUBE and ham are both delivered, marked YES and not, and the milter list stays empty', async () => {
    await using b = await filterBox();
    const port = b.d.postfix.smtpPort;
    expectExit(await b.d.cpcmd(['scope:set', 'mail.spam-filter', 'spamassassin']), 'ok');
    const params = await b.d.postfix.params();
    expect(params.has('smtpd_milters')).toBe(false);
    expect(params.has('non_smtpd_milters')).toBe(false);
    expect(params.get('content_filter')).toBe('scoped-spamassassin:');
    expect((await b.d.cpcmd(['scope:get', 'mail.spam-filter'])).stdout.trim()).toBe('spamassassin');

    const spam = await submit(port, { body: `This is spam.\n${GTUBE}\n` });
    const ham = await submit(port, { body: HAM_TEXT });
    expect(spam.dataReply).toMatch(/^250 /);
    expect(ham.dataReply).toMatch(/^250 /);
    expect(headersOf((await delivered(b.relay, spam.id)).raw)).toMatch(/^X-Spam-Flag: YES/m);
    const hamHeaders = headersOf((await delivered(b.relay, ham.id)).raw);
    expect(hamHeaders).toMatch(/^X-Spam-Status: No,/m);
    expect(hamHeaders).not.toMatch(/^X-Spam-Flag: YES/m);
    // Filtered once: the marked message came back through the return listener, not through the filter again.
    expect(hamHeaders.match(/^X-Spam-Checker-Version:/gm)).toHaveLength(1);
  });

  it('piggyback: nothing is refused, SpamAssassin marks, and rspamd learns from each verdict', async () => {
    await using b = await filterBox();
    // A site rule, as an operator would add one: SpamAssassin calls a message with the marker spam.
    await mkdir(path.join(b.root, 'etc/spamassassin'), { recursive: true });
    await writeFile(path.join(b.root, 'etc/spamassassin/e2e-marker.cf'), `body E2E_SPAM_MARKER /${SPAM_MARKER}/\nscore E2E_SPAM_MARKER 20\n`);
    const port = b.d.postfix.smtpPort;
    expectExit(await b.d.cpcmd(['scope:set', 'mail.rspamd-piggyback', 'true']), 'ok');
    expect((await b.d.cpcmd(['scope:get', 'mail.rspamd-piggyback'])).stdout.trim()).toBe('true');
    const params = await b.d.postfix.params();
    expect(params.get('smtpd_milters')).toMatch(/^inet:127\.0\.0\.1:\d+$/);
    expect(params.get('content_filter')).toBe('scoped-spamassassin:');
    const before = await rspamdLearned(b.root);

    const gtube = await submit(port, { body: `This is spam.\n${GTUBE}\n` });
    const spam = await submit(port, { body: `${HAM_TEXT}\n${SPAM_MARKER}\n` });
    const ham = await submit(port, { body: HAM_TEXT });
    for (const s of [gtube, spam, ham]) expect(s.dataReply, s.replies.join(' | ')).toMatch(/^250 /);
    const gtubeRaw = (await delivered(b.relay, gtube.id)).raw;
    expect(headersOf(gtubeRaw)).toMatch(/^X-Spam-Flag: YES/m);
    // rspamd saw it before the queue and would have refused it, but refused nothing (SpamAssassin wraps spam: rspamd's header is on the original inside).
    expect(gtubeRaw).toMatch(/^X-Rspamd-Action: reject/m);
    expect(headersOf((await delivered(b.relay, spam.id)).raw)).toMatch(/^X-Spam-Flag: YES/m);
    const hamHeaders = headersOf((await delivered(b.relay, ham.id)).raw);
    expect(hamHeaders).not.toMatch(/^X-Spam-Flag: YES/m);
    expect(hamHeaders).toMatch(/^X-Rspamd-Queue-Id: /m);
    // The spam and the ham were learned (rspamd does not learn from its own test pattern).
    expect(await rspamdLearned(b.root)).toBe(before + 2);
  });

  it('switching rspamd -> spamassassin -> false leaves main.cf, master.cf and the process table as they were', async () => {
    await using b = await filterBox();
    const [main, master] = [mainCf(b.root), masterCf(b.root)];
    const postfixMaster = b.d.postfix.masterPid();
    expect(filterProcesses(b.root)).toEqual([]);

    expectExit(await b.d.cpcmd(['scope:set', 'mail.spam-filter', 'rspamd']), 'ok');
    expect(filterPids(b.root).length).toBeGreaterThan(0);
    expectExit(await b.d.cpcmd(['scope:set', 'mail.spam-filter', 'spamassassin']), 'ok');
    expect(masterCf(b.root)).toContain('scoped-spamassassin unix');
    // Nothing of rspamd is left: its files and its processes went with it.
    expect(readFileSync(path.join(b.root, 'etc/postfix/main.cf'), 'utf8')).not.toMatch(/milter/);
    expect(filterPids(b.root).every((pid) => !readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('rspamd'))).toBe(true);
    expectExit(await b.d.cpcmd(['scope:set', 'mail.spam-filter', 'false']), 'ok');

    expect(mainCf(b.root)).toBe(main);
    expect(masterCf(b.root)).toBe(master);
    expect(filterProcesses(b.root)).toEqual([]);
    expect(b.d.postfix.masterPid()).toBe(postfixMaster);
    expect((await b.d.cpcmd(['scope:get', 'mail.spam-filter'])).stdout.trim()).toBe('false');
    expectExit(await b.d.cpcmd(['scope:check']), 'ok');
  });

  it('a filter stopped by hand shows in scope:check and scope:get, and converge starts it again', async () => {
    await using b = await filterBox();
    expectExit(await b.d.cpcmd(['scope:set', 'mail.spam-filter', 'rspamd']), 'ok');
    const pidFile = path.join(b.root, 'run/rspamd/rspamd.pid');
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    process.kill(pid, 'SIGTERM');
    await waitGone(pid);

    const check = await b.d.cpcmd(['scope:check']);
    expectExit(check, 'drift');
    expect(check.stdout).toMatch(/^drift: mail\.spam-filter spamfilter mail\/spam-filter service:rspamd: /m);
    const get = await b.d.cpcmd(['scope:get', 'mail.spam-filter']);
    expect(get.stderr).toMatch(/service:rspamd/);

    expectExit(await b.d.cpcmd(['converge']), 'ok');
    expect(Number(readFileSync(pidFile, 'utf8').trim())).not.toBe(pid);
    expectExit(await b.d.cpcmd(['scope:check']), 'ok');
    const spam = await submit(b.d.postfix.smtpPort, { body: `This is spam.\n${GTUBE}\n` });
    expect(spam.dataReply, spam.replies.join(' | ')).toMatch(/^5\d\d /);
  });

  it('a filter daemon stopped by hand or killed is started again by scoped itself, audited as its supervisor', async () => {
    await using b = await filterBox({ config: { superviseIntervalMs: 300 } });
    expectExit(await b.d.cpcmd(['scope:set', 'mail.spam-filter', 'rspamd']), 'ok');
    const livePid = (file: string, not: number) => () => {
      try {
        const p = Number(readFileSync(path.join(b.root, file), 'utf8').trim());
        return p !== not && p > 0 && isAlive(p) ? p : undefined;
      } catch {
        return undefined;
      }
    };
    // rspamd stopped by hand, redis-server killed: each runs again without anyone asking.
    const rspamd = Number(readFileSync(path.join(b.root, 'run/rspamd/rspamd.pid'), 'utf8').trim());
    process.kill(rspamd, 'SIGTERM');
    await waitGone(rspamd);
    await waitFor('rspamd started again', livePid('run/rspamd/rspamd.pid', rspamd), 90_000);
    const redis = Number(readFileSync(path.join(b.root, 'run/redis/redis-server.pid'), 'utf8').trim());
    process.kill(redis, 'SIGKILL');
    await waitGone(redis);
    await waitFor('redis-server started again', livePid('run/redis/redis-server.pid', redis), 30_000);

    await waitFor('no drift left', async () => ((await b.d.cpcmd(['scope:check'])).code === 0 ? true : undefined), 30_000);
    const spam = await submit(b.d.postfix.smtpPort, { body: `This is spam.\n${GTUBE}\n` });
    expect(spam.dataReply, spam.replies.join(' | ')).toMatch(/^5\d\d /);
    const audit = await b.d.ok<{ entries: { actor: string; action: string; outcome: string; plan?: string[] }[] }>('audit.list', { limit: 50 });
    const restarts = audit.entries.filter((e) => e.actor === 'scoped (supervisor)');
    expect(restarts.map((e) => [e.action, e.outcome])).toEqual([
      ['unit.converge', 'applied'],
      ['unit.converge', 'applied'],
    ]);
    expect(restarts.flatMap((e) => e.plan ?? []).join(' | ')).toMatch(/start rspamd.*start redis-server|start redis-server.*start rspamd/);
    expect(b.d.stderr()).toMatch(/a daemon scoped runs was found dead; starting it again/);
  });

  it("a filter config that fails its own check, or an operator's file where scoped would write, refuses the set and changes nothing", async () => {
    await using b = await filterBox();
    const [main, master] = [mainCf(b.root), masterCf(b.root)];
    // An operator's broken local setting: rspamadm configtest fails on it.
    await mkdir(path.join(b.root, 'etc/rspamd/local.d'), { recursive: true });
    await writeFile(path.join(b.root, 'etc/rspamd/local.d/options.inc'), 'dns { nameserver = [ "127.0.0.1" ;\n');
    const broken = await b.d.cpcmd(['scope:set', 'mail.spam-filter', 'rspamd']);
    expectRefused(broken, 'invalid', /rspamd's configuration does not pass its own check.*rspamadm/);
    await rm(path.join(b.root, 'etc/rspamd/local.d/options.inc'));
    // An operator's own worker-proxy.inc: scoped never overwrites it.
    await writeFile(path.join(b.root, 'etc/rspamd/local.d/worker-proxy.inc'), 'count = 2;\n');
    const foreign = await b.d.cpcmd(['scope:set', 'mail.spam-filter', 'rspamd']);
    expectRefused(foreign, 'invalid', /worker-proxy\.inc holds settings scoped did not write.*override\.d/);
    expect(readFileSync(path.join(b.root, 'etc/rspamd/local.d/worker-proxy.inc'), 'utf8')).toBe('count = 2;\n');
    // A SpamAssassin rule file that does not lint.
    await mkdir(path.join(b.root, 'etc/spamassassin'), { recursive: true });
    await writeFile(path.join(b.root, 'etc/spamassassin/e2e-broken.cf'), 'body E2E_BROKEN /unclosed(/\nscore E2E_BROKEN 1\n');
    const lint = await b.d.cpcmd(['scope:set', 'mail.spam-filter', 'spamassassin']);
    expectRefused(lint, 'invalid', /spamd's configuration does not pass its own check/);

    expect(mainCf(b.root)).toBe(main);
    expect(masterCf(b.root)).toBe(master);
    expect(filterProcesses(b.root)).toEqual([]);
    expect((await b.d.cpcmd(['scope:get', 'mail.spam-filter'])).stdout.trim()).toBe('false');
  });
});

async function waitGone(pid: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`pid ${pid} did not exit`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
