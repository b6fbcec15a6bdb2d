/**
 * mail.submission on real mail: a real scoped on a sandbox root with a running, private Postfix,
 * Debian's Dovecot linked into the root (scoped runs it there with its auth service only), a
 * passdb of the test's own, and a local SMTP sink as the smart host. A mail client on loopback
 * talks to 25 and to the submission port as any program on the server would; what it is told and
 * what reaches the sink is what is checked.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { expectExit, expectRefused } from '../helpers/expect.js';
import { linkFilterPrograms } from '../helpers/filters.js';
import { stopPostsrsd } from '../helpers/postsrsd.js';
import { RelaySink } from '../helpers/relay.js';
import { type Scoped, mustRun, scoped, treeDigest, waitFor } from '../helpers/scoped.js';
import { SUBMIT_PASSWORD, SUBMIT_USER, SmtpClient, dovecotPid, linkDovecot, makeCertificate, stopDovecot, writePassdb } from '../helpers/submission.js';

const AUTH_CONF = 'etc/dovecot/conf.d/99-scoped-postfix-auth.conf';

interface Box extends AsyncDisposable {
  d: Scoped;
  relay: RelaySink;
  root: string;
}

/**
 * A scoped whose Postfix relays to a sink; with `ready` (the default) Dovecot is linked in, the
 * test's passdb written, and main.cf names a certificate (and offers STARTTLS on 25, as Debian's does).
 */
async function submissionBox(opts: { ready?: boolean; srs?: boolean } = {}): Promise<Box> {
  const relay = await RelaySink.start({ auth: false });
  let d: Scoped | undefined;
  try {
    d = await scoped({
      postfix: { smtpd: true, running: true },
      listen: 'none',
      setup: async (root) => {
        if (opts.ready === false) return;
        if (opts.srs) await linkFilterPrograms(root, ['postsrsd']);
        await linkDovecot(root);
        await writePassdb(root);
        const { cert, key } = await makeCertificate(root);
        await mustRun('postconf', [
          '-c',
          path.join(root, 'etc/postfix'),
          '-e',
          `smtpd_tls_cert_file=${cert}`,
          `smtpd_tls_key_file=${key}`,
          'smtpd_tls_security_level=may',
        ]);
      },
    });
    expectExit(await d.cpcmd(['scope:set', 'mail.smart-host', relay.relayhostWord]), 'ok');
    expectExit(await d.cpcmd(['scope:set', 'cp.bootstrapper', 'postfix_relay_mynetworks', 'false']), 'ok');
  } catch (err) {
    if (d) await stopDovecot(d.root);
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
        // SRS off while scoped runs (it stops the postsrsd it ran); then scoped (its supervisor would start Dovecot again), then Dovecot.
        if (opts.srs) await box.cpcmd(['scope:set', 'mail.srs', 'false']);
        await box.stop();
        await stopDovecot(box.root);
        // Whatever postsrsd the set above did not stop (scoped refused, or was gone).
        if (opts.srs) await stopPostsrsd(box.root);
        await box.close();
      } finally {
        await relay.close();
      }
    },
  };
}

/** The submission service's port on this root (chosen once, kept in ports.json). */
function submissionPort(root: string): number {
  return JSON.parse(readFileSync(path.join(root, 'var/lib/scoped/ports.json'), 'utf8'))['postfix.submission'].port;
}

const newId = (tag: string) => `<${Date.now()}.${Math.random().toString(36).slice(2)}.${tag}@sandbox.test>`;

/** The message carrying `id`, once the sink has it (flushing the queue now and then). */
async function arrives(b: Box, id: string) {
  let flushed = Date.now();
  return waitFor(`the message ${id} at the sink`, async () => {
    const m = b.relay.messages.find((x) => x.raw.includes(id));
    if (!m && Date.now() - flushed > 2_000) {
      await b.d.postfix.flush();
      flushed = Date.now();
    }
    return m;
  });
}

const file = (b: Box, rel: string) => readFileSync(path.join(b.root, rel), 'utf8');
const last = (replies: { code: number; text: string }[]) => replies.at(-1)!;

describe('mail.submission on real mail', { timeout: 180_000 }, () => {
  it('587: AUTH only after STARTTLS, a login relays, a wrong one is refused; postfix_add_sasl_auth_header names the login', async () => {
    await using b = await submissionBox();
    expectExit(await b.d.cpcmd(['scope:set', 'mail.submission', 'true']), 'ok');
    expect((await b.d.cpcmd(['scope:get', 'mail.submission'])).stdout.trim()).toBe('true');
    expect(dovecotPid(b.root)).toBeDefined();
    const port = submissionPort(b.root);

    await using c = await SmtpClient.open(port);
    const plain = await c.ehlo();
    expect(plain).toContain('STARTTLS');
    expect(
      plain.some((l) => l.startsWith('AUTH')),
      c.transcript,
    ).toBe(false);
    expect((await c.authPlain(SUBMIT_USER, SUBMIT_PASSWORD)).code, c.transcript).toBeGreaterThanOrEqual(500);
    expect((await c.command('MAIL FROM:<sender@sandbox.test>')).text, c.transcript).toMatch(/^530 .*STARTTLS/);

    expect((await c.starttls()).code).toBe(220);
    expect(await c.ehlo()).toContainEqual(expect.stringMatching(/^AUTH .*PLAIN/));
    const refusedId = newId('norelay');
    // Encrypted but not logged in: refused, since postfix_relay_mynetworks is false.
    expect(last(await c.send({ id: refusedId })).code, c.transcript).toBeGreaterThanOrEqual(500);
    expect((await c.command('RSET')).code).toBe(250);
    expect((await c.authPlain(SUBMIT_USER, 'wrong-password')).code, c.transcript).toBe(535);
    expect((await c.authPlain(SUBMIT_USER, SUBMIT_PASSWORD)).code, c.transcript).toBe(235);
    const id = newId('auth');
    expect(last(await c.send({ id })).text, c.transcript).toMatch(/^250 .*queued as/);
    const first = await arrives(b, id);
    expect(first.raw).not.toMatch(/Authenticated sender/);
    expect(c.transcript).not.toContain(SUBMIT_PASSWORD);

    expectExit(await b.d.cpcmd(['scope:set', 'cp.bootstrapper', 'postfix_add_sasl_auth_header', 'true']), 'ok');
    await using again = await SmtpClient.open(port);
    await again.ehlo();
    await again.starttls();
    await again.ehlo();
    expect((await again.authPlain(SUBMIT_USER, SUBMIT_PASSWORD)).code, again.transcript).toBe(235);
    const named = newId('header');
    expect(last(await again.send({ id: named })).text, again.transcript).toMatch(/^250 /);
    expect((await arrives(b, named)).raw).toMatch(new RegExp(`^Received: from [^\\n]*\\r?\\n\\s+\\(Authenticated sender: ${SUBMIT_USER}\\)`, 'm'));
    expect(b.relay.messages.some((m) => m.raw.includes(refusedId))).toBe(false);
  });

  it('postfix_relay_mynetworks: false, a loopback client must log in to relay on 25 and 587; true, it relays without one', async () => {
    await using b = await submissionBox();
    expectExit(await b.d.cpcmd(['scope:set', 'mail.submission', 'true']), 'ok');
    const port = submissionPort(b.root);

    const denied = await b.d.postfix.smtpSubmit({ id: newId('25-denied') });
    expect(
      denied.find((l) => /^[45]/.test(l)),
      denied.join('\n'),
    ).toMatch(/^454 .*Relay access denied/);
    await using s = await SmtpClient.open(port);
    await s.ehlo();
    await s.starttls();
    await s.ehlo();
    expect(last(await s.send({ id: newId('587-denied') })).code, s.transcript).toBeGreaterThanOrEqual(500);

    // On 25 a local program logs in after STARTTLS (never before), and then relays.
    await using l = await SmtpClient.open(b.d.postfix.smtpPort);
    expect(
      (await l.ehlo()).some((x) => x.startsWith('AUTH')),
      l.transcript,
    ).toBe(false);
    await l.starttls();
    expect(await l.ehlo()).toContainEqual(expect.stringMatching(/^AUTH .*PLAIN/));
    expect((await l.authPlain(SUBMIT_USER, SUBMIT_PASSWORD)).code, l.transcript).toBe(235);
    const logged = newId('25-login');
    expect(last(await l.send({ id: logged })).text, l.transcript).toMatch(/^250 /);
    await arrives(b, logged);

    expectExit(await b.d.cpcmd(['scope:set', 'cp.bootstrapper', 'postfix_relay_mynetworks', 'true']), 'ok');
    const id25 = newId('25-open');
    const open = await b.d.postfix.smtpSubmit({ id: id25 });
    expect(
      open.some((x) => /^250 .*queued as/.test(x)),
      open.join('\n'),
    ).toBe(true);
    await using t = await SmtpClient.open(port);
    await t.ehlo();
    await t.starttls();
    await t.ehlo();
    const id587 = newId('587-open');
    expect(last(await t.send({ id: id587 })).text, t.transcript).toMatch(/^250 .*queued as/);
    await arrives(b, id25);
    await arrives(b, id587);
    expect(b.relay.messages).toHaveLength(3);
  });

  it('with mail.srs on, mail a user sends on 587 originates here and keeps its sender (never rewritten to SRS0=)', async () => {
    await using b = await submissionBox({ srs: true });
    expectExit(await b.d.cpcmd(['scope:set', 'net.hostname', 'mx.forwarder.test']), 'ok');
    expectExit(await b.d.cpcmd(['scope:set', 'mail.submission', 'true']), 'ok');
    expectExit(await b.d.cpcmd(['scope:set', 'mail.srs', 'true']), 'ok');
    expect(await b.d.postfix.param('sender_canonical_maps')).toMatch(/^tcp:/);

    await using c = await SmtpClient.open(submissionPort(b.root));
    await c.ehlo();
    await c.starttls();
    await c.ehlo();
    expect((await c.authPlain(SUBMIT_USER, SUBMIT_PASSWORD)).code, c.transcript).toBe(235);
    const id = newId('srs');
    expect(last(await c.send({ id, from: 'app@elsewhere.test' })).text, c.transcript).toMatch(/^250 /);
    expect((await arrives(b, id)).from).toBe('app@elsewhere.test');

    // SRS off again: the submission service no longer names SRS's cleanup, which is gone with it.
    expectExit(await b.d.cpcmd(['scope:set', 'mail.srs', 'false']), 'ok');
    expect(readFileSync(path.join(b.root, 'etc/postfix/master.cf'), 'utf8')).not.toContain('scoped-srs-local');
    expectExit(await b.d.cpcmd(['scope:check']), 'ok');
  });

  it('refused without Dovecot and without a certificate, naming what to install or set; nothing changes', async () => {
    await using b = await submissionBox({ ready: false });
    // Every file under etc as it was (main.cf aside, which the test edits by hand), to the inode and mtime.
    const etc = path.join(b.root, 'etc');
    const before = await treeDigest(etc, { times: true, skip: ['postfix/main.cf'] });
    expectRefused(await b.d.cpcmd(['scope:set', 'mail.submission', 'true']), 'invalid', /apt-get install dovecot-core/);
    await linkDovecot(b.root);
    expectRefused(await b.d.cpcmd(['scope:set', 'mail.submission', 'true']), 'invalid', /smtpd_tls_cert_file/);
    await b.d.postfix.handEdit(`smtpd_tls_cert_file=${path.join(b.root, 'etc/ssl/missing.pem')}`);
    expectRefused(await b.d.cpcmd(['scope:set', 'mail.submission', 'true']), 'invalid', /missing\.pem .*does not exist/);
    // The directory's own mtime moves with the hand edits of main.cf (postconf renames a new file over it).
    const { postfix: _dir, ...after } = await treeDigest(etc, { times: true, skip: ['postfix/main.cf'] });
    const { postfix: _was, ...was } = before;
    expect(after).toEqual(was);
    const params = await b.d.postfix.params();
    expect(['smtpd_sasl_auth_enable', 'smtpd_sasl_type', 'smtpd_sasl_path', 'smtpd_tls_auth_only'].filter((p) => params.has(p))).toEqual([]);
    expect(readFileSync(path.join(b.root, 'etc/postfix/master.cf'), 'utf8')).not.toContain('# scoped: submission');
    expect((await b.d.cpcmd(['scope:get', 'mail.submission'])).stdout.trim()).toBe('false');
    expect(dovecotPid(b.root)).toBeUndefined();
  });

  it('a hand edit of the listener file or the master.cf block is drift that converge repairs; false takes everything away and stops Dovecot', async () => {
    await using b = await submissionBox();
    const main = file(b, 'etc/postfix/main.cf');
    const master = file(b, 'etc/postfix/master.cf');

    const info = await b.d.cpcmd(['scope:info', 'mail.submission']);
    expectExit(info, 'ok');
    expect(info.stdout).toMatch(/Dovecot/);
    expect(info.stdout).toContain('cpcmd scope:set mail.submission true');
    expect((await b.d.cpcmd(['scope:list'])).stdout).toMatch(/^mail\.submission\b/m);
    const dry = await b.d.cpcmd(['scope:set', 'mail.submission', 'true', '--dry-run']);
    expectExit(dry, 'ok');
    expect(dry.stdout).toMatch(/master\.cf block "submission"/);
    expect(file(b, 'etc/postfix/master.cf')).toBe(master);

    expectExit(await b.d.cpcmd(['scope:set', 'mail.submission', 'true']), 'ok');
    const conf = file(b, AUTH_CONF);
    expect(conf).toContain(`unix_listener ${path.join(b.root, 'var/spool/postfix/private/auth')} {`);
    const params = await b.d.postfix.params();
    expect(Object.fromEntries(['smtpd_sasl_auth_enable', 'smtpd_sasl_type', 'smtpd_sasl_path', 'smtpd_tls_auth_only'].map((p) => [p, params.get(p)]))).toEqual({
      smtpd_sasl_auth_enable: 'yes',
      smtpd_sasl_type: 'dovecot',
      smtpd_sasl_path: 'private/auth',
      smtpd_tls_auth_only: 'yes',
    });
    expectExit(await b.d.cpcmd(['scope:check']), 'ok');

    writeFileSync(path.join(b.root, AUTH_CONF), conf.replace('mode = 0660', 'mode = 0666'));
    const drift = await b.d.cpcmd(['scope:check']);
    expectExit(drift, 'drift');
    expect(drift.stdout).toMatch(/^drift: mail\.submission postfix_submission mail\/submission .*99-scoped-postfix-auth\.conf/m);
    expectExit(await b.d.cpcmd(['converge']), 'ok');
    expect(file(b, AUTH_CONF)).toBe(conf);

    // The block's own line (Debian's master.cf has the same text in its commented-out submission example).
    const withBlock = file(b, 'etc/postfix/master.cf');
    writeFileSync(
      path.join(b.root, 'etc/postfix/master.cf'),
      withBlock.replace('-o smtpd_tls_security_level=encrypt\n  -o smtpd_tls_auth_only', '-o smtpd_tls_security_level=may\n  -o smtpd_tls_auth_only'),
    );
    const blockDrift = await b.d.cpcmd(['scope:check']);
    expectExit(blockDrift, 'drift');
    expect(blockDrift.stdout).toMatch(/master\.cf:submission/);
    expectExit(await b.d.cpcmd(['converge']), 'ok');
    expect(file(b, 'etc/postfix/master.cf')).toBe(withBlock);
    expectExit(await b.d.cpcmd(['scope:check']), 'ok');

    const pid = dovecotPid(b.root);
    expectExit(await b.d.cpcmd(['scope:set', 'mail.submission', 'false']), 'ok');
    expect(file(b, 'etc/postfix/main.cf')).toBe(main);
    expect(file(b, 'etc/postfix/master.cf')).toBe(master);
    expect(() => file(b, AUTH_CONF)).toThrow(/ENOENT/);
    await waitFor('Dovecot to stop', () => (dovecotPid(b.root) === undefined ? true : undefined));
    expect(pid).toBeDefined();
    expectExit(await b.d.cpcmd(['scope:check']), 'ok');
  });
});
