/**
 * Never change what nobody asked for (issue 12, item 7), tried as a new user would: a Postfix
 * whose main.cf is Debian's as its installer leaves it, and scoped started on it for the first
 * time. scoped takes what the system has as the starting value of every var no one has set (one
 * adopt, audited as scoped's), so the first `scope:set net.hostname` changes myhostname and
 * nothing else, and apps relaying through 127.0.0.1:25 still relay. A default that differs from
 * the system shows in scope:check as "not yet applied", with the command that applies it.
 * A smart host without credentials does not force TLS, and scope:check --adopt keeps the level.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { expectExit } from '../helpers/expect.js';
import { RELAY_PASSWORD, RELAY_USER, RelaySink } from '../helpers/relay.js';
import { type Scoped, mustRun, scoped, waitFor } from '../helpers/scoped.js';

/** What Debian's postinst adds to main.cf.debian (with `relayhost =` empty and the relay list spaced as it writes it). */
const DEBIAN_POSTINST = [
  'smtpd_relay_restrictions=permit_mynetworks permit_sasl_authenticated defer_unauth_destination',
  'relayhost=',
  'mailbox_size_limit=0',
  'recipient_delimiter=+',
];

/**
 * A fresh scoped on a Postfix laid out as Debian leaves it (`tls`: with the smtp_tls_security_level=may a
 * TLS-enabled install has; `extra`: more main.cf settings an admin made before scoped came).
 */
function debianBox(tls = false, more: string[] = []): Promise<Scoped> {
  return scoped({
    postfix: { smtpd: true },
    listen: 'none',
    setup: async (root) => {
      const extra = [...(tls ? ['smtp_tls_security_level=may'] : []), ...more];
      await mustRun('postconf', ['-c', path.join(root, 'etc/postfix'), '-e', ...DEBIAN_POSTINST, ...extra]);
    },
  });
}

const mainCfLines = (d: Scoped) => readFileSync(d.postfix.mainCf, 'utf8').split('\n');

/** The lines of b that are not in a, and of a that are not in b. */
function lineDiff(a: string[], b: string[]) {
  return { removed: a.filter((l) => !b.includes(l)), added: b.filter((l) => !a.includes(l)) };
}

interface Entry {
  actor: string;
  action: string;
  target: string;
  new?: Record<string, unknown>;
}
const adoptions = async (d: Scoped) => (await d.ok<{ entries: Entry[] }>('audit.list', {})).entries.filter((e) => e.action === 'system.adopt');

describe('the first start on an existing Postfix changes nothing nobody asked for', { timeout: 120_000 }, () => {
  it("an admin's own relay restrictions stay as written through the first sets, and the var takes away only permit_mynetworks", async () => {
    const own = 'permit_mynetworks, permit_sasl_authenticated, check_client_access cidr:/etc/postfix/clients, reject_unauth_destination';
    await using d = await debianBox(true, [`smtpd_relay_restrictions=${own}`]);
    const before = mainCfLines(d);
    expectExit(await d.cpcmd(['scope:set', 'net.hostname', 'mail.example.test']), 'ok');
    expectExit(await d.cpcmd(['scope:set', 'mail.smart-host', 'relay.example.test']), 'ok');
    expect(lineDiff(before, mainCfLines(d))).toEqual({
      removed: ['myhostname = sandbox.test', 'relayhost = '],
      added: ['myhostname = mail.example.test', 'relayhost = relay.example.test'],
    });
    expect(await d.postfix.param('smtpd_relay_restrictions')).toBe(own);
    // Asked for: only permit_mynetworks goes; the admin's check and reject stay.
    expectExit(await d.cpcmd(['scope:set', 'cp.bootstrapper', 'postfix_relay_mynetworks', 'false']), 'ok');
    expect(await d.postfix.param('smtpd_relay_restrictions')).toBe(
      'permit_sasl_authenticated, check_client_access, cidr:/etc/postfix/clients, reject_unauth_destination',
    );
  });

  it('the first scope:set net.hostname changes only myhostname, and 127.0.0.1 clients still relay', async () => {
    await using d = await debianBox();
    const before = mainCfLines(d);

    expectExit(await d.cpcmd(['scope:set', 'net.hostname', 'mail.example.test']), 'ok');
    expect(lineDiff(before, mainCfLines(d))).toEqual({ removed: ['myhostname = sandbox.test'], added: ['myhostname = mail.example.test'] });

    // One adopt of everything, by scoped itself, recorded in the history.
    const adopted = await adoptions(d);
    expect(adopted).toHaveLength(1);
    expect(adopted[0]).toMatchObject({ actor: 'scoped', target: '*', new: { postfix_relay_mynetworks: true, postfix_smarthost: false } });

    // An app on 127.0.0.1 relaying to a remote domain, without logging in, is still accepted.
    await d.postfix.start();
    const replies = await d.postfix.smtpSubmit({ to: 'rcpt@remote.test' });
    expect(replies.join('\n')).toMatch(/^250 2\.0\.0 Ok: queued/m);

    // The default that differs from the system is reported, never applied: no drift, exit 0.
    const check = await d.cpcmd(['scope:check']);
    expectExit(check, 'ok');
    expect(check.stdout.trim()).toBe('ok: no drift');
    expect(check.stderr).toContain(
      'not yet applied: postfix_relay_mynetworks keeps what the system had, true; its default false applies with: cpcmd scope:set cp.bootstrapper postfix_relay_mynetworks false',
    );
    const json = JSON.parse((await d.cpcmd(['scope:check', '-o', 'json'])).stdout);
    expect(json).toEqual({
      ok: true,
      drift: [],
      pending: [
        { var: 'postfix_relay_mynetworks', value: true, default: false, apply: 'cpcmd scope:set cp.bootstrapper postfix_relay_mynetworks false' },
        { var: 'postfix_smtp_tls_security_level', value: 'none', default: '', apply: `cpcmd scope:set cp.bootstrapper postfix_smtp_tls_security_level "''"` },
      ],
    });

    // A restart adopts nothing again.
    await d.restart();
    expect(await adoptions(d)).toHaveLength(1);

    // The command it names applies the default: now a login is needed to relay, and nothing is pending.
    expectExit(await d.cpcmd(['scope:set', 'cp.bootstrapper', 'postfix_relay_mynetworks', 'false']), 'ok');
    expect(await d.postfix.param('smtpd_relay_restrictions')).toBe('permit_sasl_authenticated, defer_unauth_destination');
    await waitFor('Postfix to refuse relaying without a login', async () => {
      const r = await d.postfix.smtpSubmit({ to: 'rcpt@remote.test' });
      return r.some((l) => /^454 4\.7\.1 .*Relay access denied/.test(l)) ? true : undefined;
    });
    const after = await d.cpcmd(['scope:check']);
    expectExit(after, 'ok');
    expect(after.stderr).not.toContain('postfix_relay_mynetworks');
  });

  it('a smart host without credentials leaves the TLS level alone, and scope:check --adopt keeps it', async () => {
    await using d = await debianBox(true);
    await using sink = await RelaySink.start({ auth: false });
    await using other = await RelaySink.start({ auth: false });
    expect(await d.postfix.param('smtp_tls_security_level')).toBe('may');

    const before = mainCfLines(d);
    expectExit(await d.cpcmd(['scope:set', 'mail.smart-host', sink.relayhostWord]), 'ok');
    expect(lineDiff(before, mainCfLines(d))).toEqual({ removed: ['relayhost = '], added: [`relayhost = ${sink.relayhost}`] });
    expect(await d.postfix.param('smtp_tls_security_level')).toBe('may');

    // A relayhost changed by hand, adopted: the TLS level stays what main.cf has.
    await d.postfix.handEdit(`relayhost=${other.relayhost}`);
    const drift = await d.cpcmd(['scope:check', 'mail.smart-host']);
    expectExit(drift, 'drift');
    expectExit(await d.cpcmd(['scope:check', '--adopt', 'mail.smart-host']), 'ok');
    expect(await d.postfix.param('relayhost')).toBe(other.relayhost);
    expect(await d.postfix.param('smtp_tls_security_level')).toBe('may');
    expectExit(await d.cpcmd(['scope:check']), 'ok');

    // Mail goes to the adopted relay.
    await d.postfix.start();
    const id = await d.postfix.sendmail();
    await waitFor('the message at the adopted relay', () => other.messages.find((m) => m.raw.includes(id)), 30_000);
  });

  it('credentials still raise a TLS level scoped only found on the system (none) to encrypt, as the help says', async () => {
    await using d = await debianBox();
    await using relay = await RelaySink.start();
    expect(await d.postfix.param('smtp_tls_security_level')).toBe('');
    expectExit(await d.cpcmd(['scope:set', 'mail.smart-host', relay.relayhostWord, RELAY_USER, RELAY_PASSWORD]), 'ok');
    expect(await d.postfix.param('smtp_tls_security_level')).toBe('encrypt');
    // A level someone chose is not overridden: credentials with none are refused.
    expectExit(await d.cpcmd(['scope:set', 'mail.smart-host', 'false']), 'ok');
    expectExit(await d.cpcmd(['scope:set', 'cp.bootstrapper', 'postfix_smtp_tls_security_level', 'none']), 'ok');
    const refused = await d.cpcmd(['scope:set', 'mail.smart-host', relay.relayhostWord, RELAY_USER, RELAY_PASSWORD]);
    expectExit(refused, 'invalid');
    expect(refused.stderr).toMatch(/credentials are refused with TLS level none/);
  });
});
