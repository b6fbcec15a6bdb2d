/**
 * Attack: disk and memory growth through large values in the history of changes.
 *
 * An operator limited to mail.* set mail.smart-host with 60,000-character usernames: each set
 * kept the old and the new value in its history entry (and the value in its event), about
 * 187 KB a set, so 2,300 sets in 53 s grew the store from 7.7 MB to 431 MB. And one reader's
 * audit.list of 10,000 such entries was a 361 MB answer.
 *
 * Now the SASL username and password have length limits (a clear refusal, nothing stored), a
 * value whose JSON passes 1 KiB is kept in the history as a short marker with its size, and
 * audit.list answers at most 1,000 entries a call.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Scoped, WsClient, cpcmd, scoped, storeBytes, tcpCall } from '../helpers/scoped.js';

interface Entry {
  action: string;
  target: string;
  outcome: string;
  old?: unknown;
  new?: unknown;
}

describe('large values against the history of changes', () => {
  let d: Scoped;
  let mailOps = '';
  let reader = '';

  beforeAll(async () => {
    d = await scoped({ postfix: true });
    mailOps = (await d.ok<{ token: string }>('token.create', { role: 'operator', name: 'mail-ops', scopes: ['mail.*'] })).token;
    reader = (await d.ok<{ token: string }>('token.create', { role: 'reader', name: 'watcher' })).token;
  });
  afterAll(() => d?.close(), 60_000);

  it('refuses a 60,000-character SASL username and an overlong password, clearly, and the store does not grow by them', async () => {
    const before = await storeBytes(d.storeFile);
    for (let i = 0; i < 20; i++) {
      const user = `${'u'.repeat(60_000)}${i}`;
      const r = await tcpCall(d.port!, mailOps, 'scope.set', { name: 'mail.smart-host', args: ['[relay.example.test]:587', user, `pw-long-${i}`] });
      expect('error' in r && r.error.code, JSON.stringify(r).slice(0, 300)).toBe(-32602);
      if ('error' in r) {
        expect(r.error.message).toMatch(/username .*at most 256 characters/);
        expect(r.error.message).not.toContain('uuuuuuuuuu');
      }
    }
    const pw = `pw-${'p'.repeat(5_000)}`;
    const r = await tcpCall(d.port!, mailOps, 'scope.set', { name: 'mail.smart-host', args: ['[relay.example.test]:587', 'alice', pw] });
    expect('error' in r && r.error.message).toMatch(/password .*at most 1024 characters/);
    expect(JSON.stringify(r)).not.toContain('ppppppppppppppp');
    // Limits that still take any real credential.
    const ok = await tcpCall(d.port!, mailOps, 'scope.set', { name: 'mail.smart-host', args: ['[relay.example.test]:587', 'u'.repeat(256), 'p'.repeat(1024)] });
    expect(ok).toHaveProperty('result.status', 'applied');
    const after = await storeBytes(d.storeFile);
    console.log(`store ${before} -> ${after} bytes after 21 overlong sets`);
    // Before, each of the 20 sets added some 187 KB (old and new value in the history, and the event).
    expect(after - before).toBeLessThan(1024 * 1024);
  });

  it('keeps a value whose JSON passes 1 KiB as a marker with its size in the history', async () => {
    const banner = `$myhostname ESMTP ${'x'.repeat(20_000)}`;
    expect(await d.ok('var.set', { name: 'postfix_custom_config', value: { smtpd_banner: banner } })).toMatchObject({ status: 'applied' });
    expect(await d.ok('var.set', { name: 'postfix_custom_config', value: {} })).toMatchObject({ status: 'applied' });
    const entries = (await d.ok<{ entries: Entry[] }>('audit.list', { scope: 'postfix_custom_config' })).entries;
    const [set, cleared] = entries.slice(-2) as [Entry, Entry];
    // The object keeps its members; the one too large to keep is a marker with its size.
    expect(set).toMatchObject({ action: 'var.set', outcome: 'applied', new: { smtpd_banner: '(not kept: 20,020 bytes of JSON)' } });
    expect(cleared).toMatchObject({ old: set.new, new: {} });
    for (const e of [set, cleared]) expect(JSON.stringify(e).length).toBeLessThan(2_048);
    // The var itself holds the whole value.
    expect((await d.ok<{ value: { smtpd_banner: string } }>('var.get', { name: 'postfix_custom_config' })).value).toEqual({});
    // A value made of small parts keeps its small parts: the host stays readable.
    const smart = (await d.ok<{ entries: Entry[] }>('audit.list', { scope: 'mail.smart-host' })).entries.at(-1)!;
    expect(smart).toMatchObject({ outcome: 'applied', new: { host: '[relay.example.test]:587', username: 'u'.repeat(256), password: expect.any(String) } });
    expect(JSON.stringify(smart)).not.toContain('p'.repeat(50));
  });

  it('keeps such a value as the same marker in the scope.changed event, so a replay never carries it whole', async () => {
    const ws = await WsClient.open(d.port!, reader);
    try {
      const { revision } = await d.ok<{ revision: number }>('daemon.status');
      expect(await ws.call('events.subscribe', { topics: ['scope.changed'] })).toHaveProperty('result.subscription');
      const banner = `$myhostname ESMTP ${'y'.repeat(20_000)}`;
      const set = await d.ok('scope.set', { name: 'cp.bootstrapper', value: { var: 'postfix_custom_config', value: { smtpd_banner: banner } } });
      expect(set).toMatchObject({ status: 'applied' });
      const text = await ws.waitFor((m) => m.includes('"scope.changed"') && m.includes('cp.bootstrapper') && JSON.parse(m).params?.revision > revision);
      expect(JSON.parse(text).params.data).toMatchObject({
        scope: 'cp.bootstrapper',
        value: { var: 'postfix_custom_config', value: expect.stringMatching(/^\(not kept: 20,0\d\d bytes of JSON\)$/) },
      });
      expect(text.length).toBeLessThan(2_048);
      await d.ok('var.set', { name: 'postfix_custom_config', value: {} });
    } finally {
      ws.terminate();
    }
  });

  it('answers audit.list with at most 1,000 entries a call, and says so', async () => {
    const r = await tcpCall(d.port!, reader, 'audit.list', { limit: 10_000 });
    expect('error' in r && r.error.code).toBe(-32602);
    expect('error' in r && r.error.message).toMatch(/1000/);
    expect(await tcpCall(d.port!, reader, 'audit.list', { limit: 1_000 })).toHaveProperty('result.entries');
    const cli = await cpcmd(['audit:list', '--limit', '5000'], { url: d.url, token: reader });
    expect(cli.code).not.toBe(0);
    expect(cli.stderr).toMatch(/1000/);
    const help = await cpcmd(['audit:list', '--help']);
    expect(help.stdout).toMatch(/at most 1000/);
  });
});
