/**
 * cpcmd as a user runs it: cp.bootstrapper (raw vars, --no-converge, converge UNIT) and the
 * exit code of each class of error, on both the fast path and the oclif path.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import './helpers/expect.js';
import { type Scoped, cpcmd, scoped, tempDir, treeDigest } from './helpers/scoped.js';

const etc = (d: Scoped) => treeDigest(path.join(d.root, 'etc'), { times: true });

describe('cp.bootstrapper', () => {
  let d: Scoped;
  beforeAll(async () => {
    d = await scoped({ listen: 'none', files: { 'etc/hostname': 'old.example.org\n', 'etc/hosts': '127.0.0.1\tlocalhost\n' } });
  });
  afterAll(() => d?.close());

  it('lists nothing on a fresh store', async () => {
    expect(await d.cpcmd(['scope:get', 'cp.bootstrapper', '-o', 'json'])).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse((await d.cpcmd(['scope:get', 'cp.bootstrapper', '-o', 'json'])).stdout)).toEqual({});
  });

  it('lists only the vars that differ from their defaults', async () => {
    expect((await d.cpcmd(['scope:set', 'cp.bootstrapper', 'postfix_relay_mynetworks', 'true', '--no-converge'])).code).toBe(0);
    expect((await d.cpcmd(['scope:set', 'cp.bootstrapper', 'postfix_add_sasl_auth_header', 'false', '--no-converge'])).code).toBe(0);
    const r = await d.cpcmd(['scope:get', 'cp.bootstrapper', '-o', 'json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ postfix_relay_mynetworks: true });
    const cli = await d.cpcmd(['scope:get', 'cp.bootstrapper']);
    expect(cli).toMatchObject({ code: 0, stdout: 'postfix_relay_mynetworks: true\n' });
  });

  it('refuses a misspelt var, naming the right one, and writes nothing', async () => {
    const before = await etc(d);
    const r = await d.cpcmd(['scope:set', 'cp.bootstrapper', 'system_hostnam', 'x.example.com']);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^cpcmd: [^\n]*system_hostnam\b[^\n]*system_hostname/);
    expect(await etc(d)).toEqual(before);
    expect(JSON.parse((await d.cpcmd(['scope:get', 'cp.bootstrapper', '-o', 'json'])).stdout)).toEqual({ postfix_relay_mynetworks: true });
  });

  it('refuses a value of the wrong type with exit 6', async () => {
    const r = await d.cpcmd(['scope:set', 'cp.bootstrapper', 'postfix_relay_mynetworks', 'maybe']);
    expect(r.code).toBe(6);
    expect(r.stderr).toMatch(/^cpcmd: [^\n]*postfix_relay_mynetworks/);
    const host = await d.cpcmd(['scope:set', 'cp.bootstrapper', 'system_hostname', 'no_dots']);
    expect(host.code).toBe(6);
  });

  it('stores a var with --no-converge without touching /etc/hostname', async () => {
    const before = await etc(d);
    const r = await d.cpcmd(['scope:set', 'cp.bootstrapper', 'system_hostname', 'x.example.com', '--no-converge']);
    expect(r.code, r.stderr).toBe(0);
    expect(await d.cpcmd(['scope:get', 'cp.bootstrapper', 'system_hostname'])).toMatchObject({ code: 0, stdout: 'x.example.com\n' });
    expect(JSON.parse((await d.cpcmd(['scope:get', 'cp.bootstrapper', '-o', 'json'])).stdout)).toEqual({
      postfix_relay_mynetworks: true,
      system_hostname: 'x.example.com',
    });
    expect(await etc(d)).toEqual(before);
    expect(await d.file('etc/hostname')).toBe('old.example.org\n');
  });

  it('writes it on cpcmd converge net/hostname', async () => {
    const r = await d.cpcmd(['converge', 'net/hostname']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('/etc/hostname');
    expect(await d.file('etc/hostname')).toBe('x.example.com\n');
    expect(await d.file('etc/mailname')).toBe('x.example.com\n');
    expect(await d.file('etc/hosts')).toBe('127.0.0.1\tlocalhost\n127.0.1.1\tx.example.com x\n');
    expect(await d.cpcmd(['scope:get', 'net.hostname'])).toMatchObject({ code: 0, stdout: 'x.example.com\n' });
  });

  it('refuses --no-converge on a scope other than cp.bootstrapper, writing nothing', async () => {
    const before = await etc(d);
    const r = await d.cpcmd(['scope:set', 'net.hostname', 'y.example.com', '--no-converge']);
    expect(r.code).toBe(6);
    expect(r.stderr).toMatch(/^cpcmd: /);
    expect(await etc(d)).toEqual(before);
  });
});

describe.each([
  ['fast path', false],
  ['oclif path', true],
] as const)('exit codes by class, %s', (_name, oclif) => {
  let d: Scoped;
  beforeAll(async () => {
    d = await scoped({ listen: 'none' });
  });
  afterAll(() => d?.close());

  it('exits 4 when the daemon cannot be reached, saying to start scoped', async () => {
    await using dir = await tempDir();
    const r = await cpcmd(['scope:get', 'net.hostname'], { socket: path.join(dir.path, 'missing/scoped.sock'), oclif });
    expect(r).toExitWith('unreachable');
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^cpcmd: [^\n]*missing\/scoped\.sock[^\n]*start it with scoped/);
  });

  it('exits 4 on a socket file nobody listens on', async () => {
    await using dir = await tempDir();
    const sock = path.join(dir.path, 'dead.sock');
    // A socket file with nobody behind it, as a crashed daemon leaves: bound, never listening.
    execFileSync('python3', ['-c', `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(sock)})`]);
    const r = await cpcmd(['scope:get', 'net.hostname'], { socket: sock, oclif });
    expect(r).toExitWith('unreachable');
    expect(r.stderr).toMatch(/^cpcmd: [^\n]*start it with scoped/);
  });

  it('exits 7 for an unknown scope and an unknown unit', async () => {
    const scope = await d.cpcmd(['scope:get', 'net.no-such-scope'], { oclif });
    expect(scope.code).toBe(7);
    expect(scope.stderr).toMatch(/^cpcmd: [^\n]*net\.no-such-scope/);
    const set = await d.cpcmd(['scope:set', 'no.such-scope', 'x'], { oclif });
    expect(set.code).toBe(7);
    const unit = await d.cpcmd(['converge', 'net/no-such-unit'], { oclif });
    expect(unit.code).toBe(7);
    expect(unit.stderr).toMatch(/^cpcmd: [^\n]*net\/no-such-unit/);
  });

  it('exits 7 for an unknown var, as the README table says (7: no such scope, var, unit or method)', async () => {
    const get = await d.cpcmd(['scope:get', 'cp.bootstrapper', 'no_such_var'], { oclif });
    expect(get.code, get.stderr).toBe(7);
    const set = await d.cpcmd(['scope:set', 'cp.bootstrapper', 'system_hostnam', 'x.example.com'], { oclif });
    expect(set.code, set.stderr).toBe(7);
  });

  it('exits 6 for an invalid value', async () => {
    const r = await d.cpcmd(['scope:set', 'net.hostname', 'not_a_host'], { oclif });
    expect(r.code).toBe(6);
    expect(r.stderr).toMatch(/^cpcmd: [^\n]*not_a_host/);
  });

  it('exits 6, not 1 with "Internal error", for a glob that is not a valid pattern', async () => {
    const r = await d.cpcmd(['scope:list', 'mail.['], { oclif });
    expect(r.stderr).not.toMatch(/Internal error/);
    expect(r.code, r.stderr).toBe(6);
  });

  it('exits 2 for usage errors: unknown flag, missing argument, bad -o, unquoted brackets', async () => {
    for (const args of [
      ['scope:get', 'net.hostname', '--bogus'],
      ['scope:get'],
      ['scope:set', 'net.hostname'],
      ['scope:get', 'net.hostname', '-o', 'xml'],
      ['scope:set', 'net.hostname', '[relay]:587'],
      ['scope:set', 'net.hostname', 'x.example.com', '--if-revision', 'abc'],
    ]) {
      const r = await d.cpcmd(args, { oclif });
      expect(r.code, `${args.join(' ')}\n${r.stderr}`).toBe(2);
      expect(r.stdout, args.join(' ')).toBe('');
      expect(r.stderr, args.join(' ')).not.toMatch(/^\s+at /m);
    }
    expect(await d.file('etc/hostname')).toBeNull();
  });
});
