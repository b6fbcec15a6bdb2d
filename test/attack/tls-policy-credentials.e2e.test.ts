/**
 * Attack (i12): an operator limited to mail.tls-policy downgrades the smart host's TLS with a
 * per-destination entry. The global level stays encrypt (credentials refuse none and may there),
 * but the policy map overrides it for the relay's next hop, and with smtp_sasl_security_options =
 * noanonymous Postfix then logs in with AUTH PLAIN in the clear: whoever stands between (here a
 * relay that strips STARTTLS) reads the smart host's password.
 */
import { SMTPServer } from 'smtp-server';
import { describe, expect, it } from 'vitest';
import { expectExit, expectRefused } from '../helpers/expect.js';
import { freePort } from '../helpers/proc.js';
import { scoped, waitFor } from '../helpers/scoped.js';

/** A "relay" (or someone between) that offers no STARTTLS and takes AUTH in the clear; records what it is told. */
async function strippingRelay(): Promise<{ port: number; logins: { user: string; pass: string; secure: boolean }[] } & AsyncDisposable> {
  const logins: { user: string; pass: string; secure: boolean }[] = [];
  const port = await freePort();
  const server = new SMTPServer({
    hideSTARTTLS: true,
    disabledCommands: ['STARTTLS'],
    allowInsecureAuth: true,
    authMethods: ['PLAIN', 'LOGIN'],
    logger: false,
    disableReverseLookup: true,
    onAuth(auth, session, callback) {
      logins.push({ user: auth.username ?? '', pass: auth.password ?? '', secure: session.secure });
      callback(null, { user: auth.username });
    },
    onData(stream, _s, callback) {
      stream.resume();
      stream.on('end', () => callback());
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => (server.off('error', reject), resolve()));
  });
  server.on('error', () => undefined);
  return { port, logins, [Symbol.asyncDispose]: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

describe('attack: mail.tls-policy and the smart host credentials', { timeout: 120_000 }, () => {
  it('an operator limited to mail.tls-policy cannot make Postfix send the relay password without TLS', async () => {
    await using d = await scoped({ postfix: { running: true } });
    await using relay = await strippingRelay();
    const box = d.postfix;
    const dest = `[127.0.0.1]:${relay.port}`;

    // The admin configures the smart host with credentials: the level becomes encrypt.
    expectExit(await d.cpcmd(['scope:set', 'mail.smart-host', `'${dest}'`, 'alice', 's3cret']), 'ok');
    expect(await box.param('smtp_tls_security_level')).toBe('encrypt');

    const made = await d.cpcmd(['token:create', '--role', 'operator', '--scopes', 'mail.tls-policy', '--name', 'tls-only']);
    expectExit(made, 'ok');
    const token = made.stdout.trim();

    const set = await d.cpcmd(['scope:set', 'mail.tls-policy', `'${dest}'`, 'none'], { url: d.url, token });
    // What should happen: refused, as the global level none/may is refused while the relay has credentials.
    if (set.code === 0) {
      await box.sendmail({ subject: 'downgraded' });
      await box.flush();
      await waitFor('a login or a deferral', async () => (relay.logins.length || (await box.maillog()).includes('TLS is required') ? true : undefined), 30_000);
    }
    expect(relay.logins.filter((l) => !l.secure)).toEqual([]);
    expectRefused(set, 'invalid', /applies to the smart host/);
    // A .domain above the relay's name, and dane (which falls back to may), are refused too; encrypt is fine.
    expectRefused(await d.cpcmd(['scope:set', 'mail.tls-policy', `'${dest}'`, 'dane'], { url: d.url, token }), 'invalid', /applies to the smart host/);
    expectExit(await d.cpcmd(['scope:set', 'mail.tls-policy', `'${dest}'`, 'encrypt'], { url: d.url, token }), 'ok');
  });

  it('the other order: credentials are refused while a plaintext policy covers the relay', async () => {
    await using d = await scoped({ postfix: true, listen: 'none' });
    expectExit(await d.cpcmd(['scope:set', 'mail.smart-host', "'[relay.example.com]:587'"]), 'ok');
    expectExit(await d.cpcmd(['scope:set', 'mail.tls-policy', '.example.com', 'may']), 'ok');
    expectRefused(
      await d.cpcmd(['scope:set', 'mail.smart-host', "'[relay.example.com]:587'", 'alice', 's3cret']),
      'invalid',
      /TLS policy \.example\.com may applies to the smart host/,
    );
    expect(await d.postfix.param('relayhost')).toBe('[relay.example.com]:587');
  });
});
