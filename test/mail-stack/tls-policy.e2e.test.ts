/**
 * TLS policy (issue 12, item 5): each smtp_tls_security_level carries what Postfix needs with it,
 * and mail.tls-policy DESTINATION LEVEL writes scoped's own smtp_tls_policy_maps entry, listed
 * before the admin's maps, which stay as they are. With real mail: a relay that offers no
 * STARTTLS, while the level is encrypt, gets nothing ("TLS is required, but was not offered by
 * host"); after `mail.tls-policy [127.0.0.1]:PORT may` the message is delivered.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { SMTPServer } from 'smtp-server';
import { describe, expect, it } from 'vitest';
import { expectExit, expectRefused } from '../helpers/expect.js';
import { freePort } from '../helpers/proc.js';
import { mustRun, scoped, waitFor } from '../helpers/scoped.js';

/** A plain SMTP sink on loopback that offers no STARTTLS and no AUTH; records each message. */
async function plainSink(): Promise<{ port: number; messages: string[] } & AsyncDisposable> {
  const messages: string[] = [];
  const port = await freePort();
  const server = new SMTPServer({
    hideSTARTTLS: true,
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    logger: false,
    disableReverseLookup: true,
    onData(stream, _session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        messages.push(Buffer.concat(chunks).toString('utf8'));
        callback();
      });
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => (server.off('error', reject), resolve()));
  });
  server.on('error', () => undefined);
  return { port, messages, [Symbol.asyncDispose]: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

const FP = Array.from({ length: 32 }, (_, i) => (i * 7).toString(16).padStart(2, '0').toUpperCase()).join(':');

describe('TLS policy: a level carries what it needs, and a destination may differ from the global level', { timeout: 120_000 }, () => {
  it('encrypt defers mail to a relay without STARTTLS; mail.tls-policy DESTINATION may delivers it; the admin map stays first-class', async () => {
    await using d = await scoped({ postfix: { running: true }, listen: 'none' });
    await using sink = await plainSink();
    const box = d.postfix;
    const dest = `[127.0.0.1]:${sink.port}`;

    // The admin's own policy map, listed by hand: it stays, after scoped's.
    await d.write('etc/postfix/admin-tls-policy', 'example.org encrypt\n');
    await mustRun('postmap', ['-c', box.dir, path.join(box.dir, 'admin-tls-policy')]);
    await box.handEdit('smtp_tls_policy_maps=hash:$config_directory/admin-tls-policy');
    const adminMap = readFileSync(path.join(box.dir, 'admin-tls-policy'), 'utf8');

    expectExit(await d.cpcmd(['scope:set', 'mail.smart-host', `'${dest}'`]), 'ok');
    expectExit(await d.cpcmd(['scope:set', 'cp.bootstrapper', 'postfix_smtp_tls_security_level', 'encrypt']), 'ok');
    const first = await box.sendmail({ subject: 'deferred first' });
    await waitFor(
      'Postfix to defer for want of TLS',
      async () => ((await box.maillog()).includes('TLS is required, but was not offered by host') ? true : undefined),
      30_000,
    );
    expect(sink.messages).toEqual([]);
    expect(await box.queueEmpty()).toBe(false);

    const set = await d.cpcmd(['scope:set', 'mail.tls-policy', `'${dest}'`, 'may']);
    expectExit(set, 'ok');
    expect(await box.param('smtp_tls_policy_maps')).toMatch(/^\w+:\$config_directory\/scoped-tls-policy, hash:\$config_directory\/admin-tls-policy$/);
    expect(readFileSync(path.join(box.dir, 'scoped-tls-policy'), 'utf8')).toContain(`\n${dest} may\n`);
    expect(readFileSync(path.join(box.dir, 'admin-tls-policy'), 'utf8')).toBe(adminMap);
    await box.flush();
    await waitFor('the deferred message at the relay', () => sink.messages.find((m) => m.includes(first.slice(1, -1))), 30_000);

    const got = await d.cpcmd(['scope:get', 'mail.tls-policy', '-o', 'json']);
    expectExit(got, 'ok');
    expect(JSON.parse(got.stdout)).toEqual({ [dest]: { level: 'may', match: [] } });

    // A hand edit of scoped's map is drift; converge puts it back.
    await d.write('etc/postfix/scoped-tls-policy', `${dest} encrypt\n`);
    expectExit(await d.cpcmd(['scope:check', 'mail.tls-policy']), 'drift');
    expectExit(await d.cpcmd(['converge', 'mail/tls-policy', '--wait']), 'ok');
    expect(readFileSync(path.join(box.dir, 'scoped-tls-policy'), 'utf8')).toContain(`\n${dest} may\n`);
    expectExit(await d.cpcmd(['scope:check', 'mail.tls-policy']), 'ok');

    // false takes scoped's entry, map and database away; the admin's map stays listed.
    expectExit(await d.cpcmd(['scope:set', 'mail.tls-policy', `'${dest}'`, 'false']), 'ok');
    expect(await box.param('smtp_tls_policy_maps')).toBe('hash:$config_directory/admin-tls-policy');
    expect(existsSync(path.join(box.dir, 'scoped-tls-policy'))).toBe(false);
    expect(existsSync(path.join(box.dir, 'scoped-tls-policy.db'))).toBe(false);
  });

  it('dane and dane-only turn on DNSSEC lookups; fingerprint without fingerprints is refused and changes nothing', async () => {
    await using d = await scoped({ postfix: true, listen: 'none' });
    const box = d.postfix;

    expectExit(await d.cpcmd(['scope:set', 'mail.tls-policy', 'example.net', 'dane-only']), 'ok');
    expect(await box.param('smtp_dns_support_level')).toBe('dnssec');
    expectExit(await d.cpcmd(['scope:set', 'mail.tls-policy', 'example.net', 'false']), 'ok');
    expectExit(await d.cpcmd(['scope:set', 'cp.bootstrapper', 'postfix_smtp_tls_security_level', 'dane']), 'ok');
    expect(await box.param('smtp_dns_support_level')).toBe('dnssec');

    const before = readFileSync(box.mainCf, 'utf8');
    expectRefused(
      await d.cpcmd(['scope:set', 'mail.tls-policy', 'example.com', 'fingerprint']),
      'invalid',
      /fingerprint needs at least one sha256 fingerprint/,
    );
    expectRefused(await d.cpcmd(['scope:set', 'mail.tls-policy', 'example.com', 'may', 'example.com']), 'invalid', /may checks no certificate/);
    expectRefused(
      await d.cpcmd(['scope:set', 'cp.bootstrapper', 'postfix_smtp_tls_security_level', 'fingerprint']),
      'invalid',
      /TLS level fingerprint needs the fingerprints/,
    );
    expect(readFileSync(box.mainCf, 'utf8')).toBe(before);

    // With its fingerprints, each level is complete.
    expectExit(await d.cpcmd(['scope:set', 'mail.tls-policy', 'example.com', 'fingerprint', FP]), 'ok');
    expect(readFileSync(path.join(box.dir, 'scoped-tls-policy'), 'utf8')).toContain(`\nexample.com fingerprint match=${FP}\n`);
    expectExit(await d.cpcmd(['scope:set', 'cp.bootstrapper', 'postfix_smtp_tls_fingerprints', `'${FP}'`]), 'ok');
    expectExit(await d.cpcmd(['scope:set', 'cp.bootstrapper', 'postfix_smtp_tls_security_level', 'fingerprint']), 'ok');
    expect(await box.param('smtp_tls_security_level')).toBe('fingerprint');
    expect(await box.param('smtp_tls_fingerprint_cert_match')).toBe(FP);
    expect(await box.param('smtp_tls_fingerprint_digest')).toBe('sha256');
    expectExit(await d.cpcmd(['scope:check']), 'ok');
  });
});
