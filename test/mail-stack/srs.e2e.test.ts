/**
 * mail.srs on real mail: a real scoped on a sandbox root with a running, private Postfix on
 * loopback, Debian's postsrsd linked into the root (scoped runs it there on private ports), and
 * a local SMTP sink as the smart host. A "remote" server hands a message over SMTP to an address
 * that forwards elsewhere; what the sink sees as the envelope sender is what is checked, and a
 * bounce to that address is sent back in as a remote server would.
 */
import { readFileSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { expectExit, expectRefused } from '../helpers/expect.js';
import { linkFilterPrograms } from '../helpers/filters.js';
import { postsrsdPid, stopPostsrsd } from '../helpers/postsrsd.js';
import { RelaySink } from '../helpers/relay.js';
import { type RunResult, type Scoped, mustRun, scoped, waitFor } from '../helpers/scoped.js';

const mainCf = (root: string) => readFileSync(path.join(root, 'etc/postfix/main.cf'), 'utf8');
const masterCf = (root: string) => readFileSync(path.join(root, 'etc/postfix/master.cf'), 'utf8');
interface SrsBox extends AsyncDisposable {
  d: Scoped;
  relay: RelaySink;
  root: string;
}

/**
 * A scoped with a running Postfix, postsrsd linked in, outbound mail going to a sink, the
 * server named mx.forwarder.test, and the admin's own forward fwd@forwarder.test -> final@remote.test.
 */
async function srsBox(): Promise<SrsBox> {
  const relay = await RelaySink.start({ auth: false });
  let d: Scoped | undefined;
  try {
    d = await scoped({ postfix: { smtpd: true, running: true }, listen: 'none', setup: (root) => linkFilterPrograms(root, ['postsrsd']) });
    expectExit(await d.cpcmd(['scope:set', 'mail.smart-host', relay.relayhostWord]), 'ok');
    expectExit(await d.cpcmd(['scope:set', 'net.hostname', 'mx.forwarder.test']), 'ok');
    const virtual = path.join(d.postfix.dir, 'virtual');
    writeFileSync(virtual, 'fwd@forwarder.test final@remote.test\n');
    await d.postfix.handEdit('virtual_alias_domains=forwarder.test', `virtual_alias_maps=texthash:${virtual}`);
    await mustRun('postfix', ['-c', d.postfix.dir, 'reload']);
  } catch (err) {
    if (d) await stopPostsrsd(d.root);
    await d?.close().catch(() => undefined);
    await relay.close();
    throw err;
  }
  const box: Scoped = d;
  return {
    d: box,
    relay,
    root: box.root,
    async [Symbol.asyncDispose]() {
      try {
        // scoped first (its supervisor would start a stopped postsrsd again), then postsrsd, then the root.
        await box.stop();
        await stopPostsrsd(box.root);
        await box.close();
      } finally {
        await relay.close();
      }
    },
  };
}

/** The message at the sink addressed to this recipient, once it arrives. */
function arrived(relay: RelaySink, to: string, after = 0) {
  return waitFor(`a message to ${to} at the sink`, () => relay.messages.slice(after).find((m) => m.to.includes(to)), 60_000);
}

/** An SMTP dialogue went through: the reply to the end of DATA is 250. */
function accepted(replies: string[]): void {
  expect(replies.at(-2), replies.join(' | ')).toMatch(/^250 /);
}

describe('mail.srs on real mail', { timeout: 240_000 }, () => {
  it('a forward leaves with an SRS0= sender, a bounce to it reaches the original sender, local mail keeps its sender; drift is repaired, false puts everything back', async () => {
    await using b = await srsBox();
    const { d, relay, root } = b;
    const outputs: RunResult[] = [];
    const cp = async (...args: string[]) => {
      const r = await d.cpcmd(args);
      outputs.push(r);
      return r;
    };
    const [main, master] = [mainCf(root), masterCf(root)];

    const dry = await cp('scope:set', 'mail.srs', 'true', '--dry-run');
    expectExit(dry, 'ok');
    expect(dry.stdout).toMatch(/postsrsd/);
    expect(mainCf(root)).toBe(main);
    expect(postsrsdPid(root)).toBeUndefined();

    expectExit(await cp('scope:set', 'mail.srs', 'true'), 'ok');
    expect((await cp('scope:get', 'mail.srs')).stdout.trim()).toBe('true');
    const ports = JSON.parse(readFileSync(path.join(root, 'var/lib/scoped/ports.json'), 'utf8')) as Record<string, { host: string; port: number }>;
    const params = await d.postfix.params();
    expect(params.get('sender_canonical_maps')).toBe(`tcp:127.0.0.1:${ports['postsrsd.forward']!.port}`);
    expect(params.get('recipient_canonical_maps')).toBe(`tcp:127.0.0.1:${ports['postsrsd.reverse']!.port}`);
    expect(params.get('sender_canonical_classes')).toBe('envelope_sender');
    expect(postsrsdPid(root)).toBeDefined();
    const secretFile = path.join(root, 'etc/postsrsd.secret');
    expect(statSync(secretFile).mode & 0o777).toBe(0o600);
    const secret = readFileSync(secretFile, 'utf8').trim();
    expect(secret.length).toBeGreaterThanOrEqual(24);
    expect(readFileSync(path.join(root, 'etc/default/postsrsd'), 'utf8')).toMatch(/^SRS_DOMAIN=forwarder\.test$/m);
    expectExit(await cp('scope:check'), 'ok');

    // A remote server delivers to the forwarding address: the forward leaves with an SRS0= sender in forwarder.test.
    accepted(await d.postfix.smtpSubmit({ from: 'quu@qux.test', to: 'fwd@forwarder.test' }));
    const forward = await arrived(relay, 'final@remote.test');
    expect(forward.from).toMatch(/^SRS0=[^=@]+=[^=@]+=qux\.test=quu@forwarder\.test$/);

    // The next server bounces it (null sender, to the SRS address): Postfix hands it to the original sender.
    const seen = relay.messages.length;
    accepted(await d.postfix.smtpSubmit({ from: '', to: forward.from }));
    const bounce = await arrived(relay, 'quu@qux.test', seen);
    expect(bounce.from).toBe('');
    // A forged SRS address (a hash postsrsd did not make) is not reversed: the server does not accept it at all.
    const forged = forward.from.replace(/^SRS0=[^=]+=/, 'SRS0=AAAA=');
    const refused = await d.postfix.smtpSubmit({ from: '', to: forged });
    expect(
      refused.find((l) => /^[45]\d\d /.test(l)),
      refused.join(' | '),
    ).toMatch(/^5\d\d /);
    expect(refused.some((l) => /^250 .*queued/i.test(l))).toBe(false);

    // Mail submitted on the server (sendmail, through pickup) keeps its sender, even a foreign one.
    const localId = await d.postfix.sendmail({ from: 'app@elsewhere.test', to: 'someone@remote.test' });
    const local = await waitFor('the local message at the sink', () => relay.messages.find((m) => m.raw.includes(localId)), 60_000);
    expect(local.from).toBe('app@elsewhere.test');

    // Hand edits of each file mail.srs owns show as drift; converge puts them back.
    const defaultsFile = path.join(root, 'etc/default/postsrsd');
    const defaults = readFileSync(defaultsFile, 'utf8');
    writeFileSync(defaultsFile, defaults.replace('SRS_DOMAIN=forwarder.test', 'SRS_DOMAIN=elsewhere.test'));
    chmodSync(secretFile, 0o644);
    writeFileSync(path.join(root, 'etc/postfix/master.cf'), masterCf(root).replace('  -o sender_canonical_maps=\n', ''));
    const drift = await cp('scope:check');
    expectExit(drift, 'drift');
    expect(drift.stdout).toMatch(/^drift: mail\.srs .*\/etc\/default\/postsrsd/m);
    expect(drift.stdout).toMatch(/^drift: mail\.srs .*\/etc\/postsrsd\.secret/m);
    expect(drift.stdout).toMatch(/^drift: mail\.srs .*master\.cf:srs/m);
    const before = postsrsdPid(root);
    expectExit(await cp('converge'), 'ok');
    expectExit(await cp('scope:check'), 'ok');
    expect(readFileSync(defaultsFile, 'utf8')).toBe(defaults);
    expect(statSync(secretFile).mode & 0o777).toBe(0o600);
    expect(readFileSync(secretFile, 'utf8').trim()).toBe(secret);
    // postsrsd was restarted with its domain back.
    const restarted = postsrsdPid(root);
    expect(restarted).toBeDefined();
    expect(restarted).not.toBe(before);
    const again = relay.messages.length;
    accepted(await d.postfix.smtpSubmit({ from: 'quu@qux.test', to: 'fwd@forwarder.test' }));
    expect((await arrived(relay, 'final@remote.test', again)).from).toMatch(/^SRS0=.*@forwarder\.test$/);

    // false: main.cf and master.cf as they were, postsrsd stopped, forwards keep their sender.
    expectExit(await cp('scope:set', 'mail.srs', 'false'), 'ok');
    expect(mainCf(root)).toBe(main);
    expect(masterCf(root)).toBe(master);
    expect(postsrsdPid(root)).toBeUndefined();
    expect((await cp('scope:get', 'mail.srs')).stdout.trim()).toBe('false');
    expectExit(await cp('scope:check'), 'ok');
    const last = relay.messages.length;
    accepted(await d.postfix.smtpSubmit({ from: 'quu@qux.test', to: 'fwd@forwarder.test' }));
    expect((await arrived(relay, 'final@remote.test', last)).from).toBe('quu@qux.test');

    // The secret was never shown: not by cpcmd, not in scoped's log, not in the audit trail.
    const audit = JSON.stringify(await d.ok('audit.list', {}));
    for (const r of outputs) expect(`${r.stdout}${r.stderr}`).not.toContain(secret);
    expect(d.stderr()).not.toContain(secret);
    expect(audit).not.toContain(secret);
  });

  it("is refused, changing nothing, without a hostname to take the domain from, without postsrsd, and over an admin's own rewriting", async () => {
    await using d = await scoped({ postfix: true, listen: 'none' });
    const [main, master] = [mainCf(d.root), masterCf(d.root)];
    expectRefused(await d.cpcmd(['scope:set', 'mail.srs', 'true']), 'invalid', /net\.hostname is not set: set it first \(cpcmd scope:set net\.hostname/);
    expectExit(await d.cpcmd(['scope:set', 'net.hostname', 'mx.forwarder.test']), 'ok');
    const named = mainCf(d.root);
    expectRefused(await d.cpcmd(['scope:set', 'mail.srs', 'true']), 'invalid', /postsrsd is not installed: install it first \(apt-get install postsrsd\)/);
    await linkFilterPrograms(d.root, ['postsrsd']);
    await d.postfix.handEdit('sender_canonical_maps=hash:/etc/postfix/sender_canonical');
    const edited = mainCf(d.root);
    expectRefused(await d.cpcmd(['scope:set', 'mail.srs', 'true']), 'invalid', /sender_canonical_maps = hash:\/etc\/postfix\/sender_canonical.*postconf -X/);
    expect(mainCf(d.root)).toBe(edited);
    expect(named).not.toBe(main);
    expect(masterCf(d.root)).toBe(master);
    expect(postsrsdPid(d.root)).toBeUndefined();
    expect((await d.cpcmd(['scope:get', 'mail.srs'])).stdout.trim()).toBe('false');

    const info = await d.cpcmd(['scope:info', 'mail.srs']);
    expectExit(info, 'ok');
    expect(info.stdout).toContain('usage: cpcmd scope:set mail.srs true | false');
    expect(info.stdout).toContain('cpcmd scope:set mail.srs true');
    expect(info.stdout).toMatch(/SRS0=/);
    expect((await d.cpcmd(['scope:list'])).stdout).toMatch(/mail\.srs/);
  });
});
