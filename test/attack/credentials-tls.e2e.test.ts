/**
 * Attack (third pass): an operator lowered postfix_smtp_tls_security_level from encrypt to may
 * while relay credentials were stored; Postfix then sent AUTH PLAIN in the clear to a relay
 * (or a man in the middle) that offered no STARTTLS. Credentials and a TLS level at which
 * Postfix may log in without TLS (none, may, dane) are refused together, in either order, and
 * --verify refuses before it connects. Real scoped on a sandbox root with Postfix's config.
 */
import { type AddressInfo, type Socket, createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectExit } from '../helpers/expect.js';
import { type Postfix, type Scoped, cpcmd, scoped } from '../helpers/scoped.js';

const PLAINTEXT = /credentials are refused with TLS level (none|may|dane)/;

describe('relay credentials never travel without TLS', { timeout: 60_000 }, () => {
  let box: Postfix;
  let d: Scoped;
  let operator = '';
  const tlsLevel = async () => (await box.postconf(['-h', 'smtp_tls_security_level'])).trim();
  const asOperator = (args: string[]) => cpcmd(args, { url: d.url, token: operator });

  beforeAll(async () => {
    d = await scoped({ postfix: true });
    box = d.postfix;
    operator = (await d.ok<{ token: string }>('token.create', { role: 'operator' })).token;
    expectExit(await d.cpcmd(['scope:set', 'mail.smart-host', "'[relay.example.test]:587'", 'alice', 'Adm1nRelayPW']), 'ok');
    expect(await tlsLevel()).toBe('encrypt');
  });
  afterAll(() => d?.close(), 60_000);

  it('an operator cannot lower the TLS level to one that may log in in the clear while credentials are stored', async () => {
    for (const level of ['may', 'dane', 'none']) {
      const r = await asOperator(['scope:set', 'cp.bootstrapper', 'postfix_smtp_tls_security_level', level]);
      expectExit(r, 'invalid');
      expect(r.stderr).toMatch(PLAINTEXT);
    }
    expect(await tlsLevel()).toBe('encrypt');
    // Levels that always encrypt are fine.
    expectExit(await asOperator(['scope:set', 'cp.bootstrapper', 'postfix_smtp_tls_security_level', 'verify']), 'ok');
    expectExit(await asOperator(['scope:set', 'cp.bootstrapper', 'postfix_smtp_tls_security_level', 'encrypt']), 'ok');
  });

  it('the other order: credentials are refused at such a level, and --verify refuses before it connects', async () => {
    expectExit(await d.cpcmd(['scope:set', 'mail.smart-host', 'false']), 'ok');
    expectExit(await asOperator(['scope:set', 'cp.bootstrapper', 'postfix_smtp_tls_security_level', 'may']), 'ok');
    const seen: Socket[] = [];
    const listener = createServer((s) => {
      seen.push(s);
      s.destroy();
    });
    await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
    try {
      const port = (listener.address() as AddressInfo).port;
      const verify = await asOperator(['scope:set', 'mail.smart-host', `'[127.0.0.1]:${port}'`, 'alice', 'pw-in-clear', '--verify']);
      expectExit(verify, 'invalid');
      expect(verify.stderr).toMatch(PLAINTEXT);
      expect(seen).toHaveLength(0);
      const set = await asOperator(['scope:set', 'mail.smart-host', "'[relay.example.test]:587'", 'alice', 'pw-in-clear']);
      expectExit(set, 'invalid');
      expect(set.stderr).toMatch(PLAINTEXT);
      // Without credentials, level may is a fine choice.
      expectExit(await asOperator(['scope:set', 'mail.smart-host', "'[relay.example.test]:587'"]), 'ok');
    } finally {
      await new Promise<void>((r) => listener.close(() => r()));
    }
  });
});
