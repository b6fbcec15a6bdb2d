/**
 * What the user typed is what a scope that wants text gets: cpcmd sends the text of each word
 * beside its typed value, so `1.50` stays 1.50 in the credentials map and in /etc/hostname
 * (the grammar alone reads it as the number 1.5). A quoted 'false' is no relay host. Real
 * cpcmd, a real scoped on a root with a running private Postfix. Each test gets its own.
 */
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { expectExit, expectRefused, expectRpcError } from '../helpers/expect.js';
import { type RunResult, type Scoped, scoped, treeDigest } from '../helpers/scoped.js';

const RELAY = 'relay.example';
const FILES = { 'etc/hostname': 'old.example.org\n', 'etc/hosts': '127.0.0.1\tlocalhost\n' };

/** A daemon on a root with a running private Postfix. */
const withPostfix = () => scoped({ postfix: { running: true }, listen: 'none', files: FILES });

const cp = (d: Scoped, args: readonly string[], oclif = false): Promise<RunResult> => d.cpcmd(args, { oclif });
const authMap = (d: Scoped) => readFile(d.postfix.authMap, 'utf8');
const relayhost = (d: Scoped) => d.postfix.param('relayhost');

/** Point the smart host at RELAY (with a login), as the state the next step starts from. */
async function relayOn(d: Scoped): Promise<void> {
  expectExit(await cp(d, ['scope:set', 'mail.smart-host', RELAY, 'alice', 's3cret']), 'ok');
  expect(await relayhost(d)).toBe(RELAY);
}

describe('typed words reach the scope as they were typed', { timeout: 120_000 }, () => {
  it('stores the password 1.50 as typed, not 1.5', async () => {
    await using d = await withPostfix();
    expectExit(await cp(d, ['scope:set', 'mail.smart-host', RELAY, 'alice', '1.50']), 'ok');
    expect(await authMap(d)).toBe(`${RELAY} alice:1.50\n`);
    expect(await relayhost(d)).toBe(RELAY);
  });

  it.each([
    ['fast path', false],
    ['oclif path', true],
  ] as const)('keeps -0, 1.0 and TRUE as typed, %s', async (_name, oclif) => {
    await using d = await withPostfix();
    expectExit(await cp(d, ['scope:set', 'mail.smart-host', RELAY, '1.0', '-0'], oclif), 'ok');
    expect(await authMap(d)).toBe(`${RELAY} 1.0:-0\n`);
    expectExit(await cp(d, ['scope:set', 'mail.smart-host', RELAY, 'TRUE', '1.50'], oclif), 'ok');
    expect(await authMap(d)).toBe(`${RELAY} TRUE:1.50\n`);
  });

  it('still reads a quoted word as its content', async () => {
    await using d = await withPostfix();
    expectExit(await cp(d, ['scope:set', 'mail.smart-host', RELAY, "'bob'", '"1.50"']), 'ok');
    expect(await authMap(d)).toBe(`${RELAY} bob:1.50\n`);
  });

  it.each([
    ['a quoted false', ["'false'"]],
    ['a double-quoted FALSE', ['"FALSE"']],
    ['false with USER PASS', ['false', 'alice', 's3cret']],
  ])('refuses %s as a relay host, saying that false alone and unquoted turns it off; nothing changes', async (_name, words) => {
    await using d = await withPostfix();
    await relayOn(d);
    const before = await treeDigest(d.postfix.dir);
    const r = await cp(d, ['scope:set', 'mail.smart-host', ...words]);
    expectRefused(r, 'invalid', /^cpcmd: [^\n]*false[^\n]* is not a relay host: false turns the smart host off only unquoted and alone/i);
    expect(await treeDigest(d.postfix.dir)).toEqual(before);
    expect(await relayhost(d)).toBe(RELAY);
  });

  it('turns the smart host off with a bare false', async () => {
    await using d = await withPostfix();
    await relayOn(d);
    expectExit(await cp(d, ['scope:set', 'mail.smart-host', 'false']), 'ok');
    expect(await relayhost(d)).toBe('');
  });

  it('takes args alone from a JSON-RPC caller, and refuses words that are not the text of their args', async () => {
    await using d = await withPostfix();
    const plain = await d.call('scope.set', { name: 'mail.smart-host', args: [RELAY, 'carol', 's3cret'] });
    expect(plain).toMatchObject({ result: { status: 'applied' } });
    expect(await authMap(d)).toBe(`${RELAY} carol:s3cret\n`);
    // Without words, a number is its JSON text.
    expect(await d.call('scope.set', { name: 'mail.smart-host', args: [RELAY, 'carol', 2.5] })).toMatchObject({ result: { status: 'applied' } });
    expect(await authMap(d)).toBe(`${RELAY} carol:2.5\n`);

    const before = await treeDigest(d.postfix.dir);
    const forged = await d.call('scope.set', { name: 'mail.smart-host', args: [RELAY, 'carol', 1.5], words: [RELAY, 'carol', 'f0rged-w0rd'] });
    expectRpcError(forged, 'InvalidParams');
    expect(JSON.stringify(forged)).not.toContain('f0rged-w0rd');
    expect(await treeDigest(d.postfix.dir)).toEqual(before);
  });
});

// No Postfix on this root: the hostname scopes and vars alone.
describe('the hostname as typed', { timeout: 60_000 }, () => {
  const withoutPostfix = () => scoped({ listen: 'none', files: FILES });

  // A number-looking hostname reaches the check as typed (1.50, not 1.5), which refuses it for its all-digit last label.
  it('cp.bootstrapper checks system_hostname 1.50 as typed and refuses it', async () => {
    await using d = await withoutPostfix();
    const r = await d.cpcmd(['scope:set', 'cp.bootstrapper', 'system_hostname', '1.50']);
    expectExit(r, 'invalid');
    expect(r.stderr).toContain('"1.50" ends in the all-digit label "50"');
    expect(await d.file('etc/hostname')).toBe('old.example.org\n');
  });

  it('net.hostname checks 10.0 as typed and refuses it', async () => {
    await using d = await withoutPostfix();
    const r = await d.cpcmd(['scope:set', 'net.hostname', '10.0']);
    expectExit(r, 'invalid');
    expect(r.stderr).toContain('"10.0" ends in the all-digit label "0"');
    expect(await d.file('etc/hostname')).toBe('old.example.org\n');
  });

  it('a var that takes the typed value as it is keeps it: a boolean stays a boolean', async () => {
    await using d = await withoutPostfix();
    expectExit(await d.cpcmd(['scope:set', 'cp.bootstrapper', 'postfix_relay_mynetworks', 'TRUE', '--no-converge']), 'ok');
    expect(JSON.parse((await d.cpcmd(['scope:get', 'cp.bootstrapper', 'postfix_relay_mynetworks', '-o', 'json'])).stdout)).toBe(true);
  });
});
