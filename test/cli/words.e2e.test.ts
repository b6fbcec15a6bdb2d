/**
 * What the user typed is what a scope that wants text gets: cpcmd sends the text of each word
 * beside its typed value, so `1.50` stays 1.50 in the credentials map and in /etc/hostname
 * (the grammar alone reads it as the number 1.5). A quoted 'false' is no relay host. Real
 * cpcmd, a real scoped on a root with a running private Postfix.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon, PostfixRoot, type RunResult, cleanupAll, cpcmd, hashTree, makeRoot, mustRun, pidsMentioning } from '../helpers/sandbox.js';

const EXIT = { ok: 0, invalid: 6 } as const;
const RELAY = 'relay.example';

let box: PostfixRoot;
let d: Daemon;

function expectExit(r: RunResult, code: number): void {
  expect(r.code, `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(code);
}

const cp = (args: readonly string[], oclif = false): Promise<RunResult> => cpcmd(args, { socket: d.socket, oclif });
const authMap = () => readFile(box.authMap, 'utf8');
const relayhost = async () => (await mustRun('postconf', ['-c', box.dir, '-h', 'relayhost'])).trim();

describe('typed words reach the scope as they were typed', { timeout: 120_000 }, () => {
  beforeAll(async () => {
    box = await PostfixRoot.create();
    await writeFile(path.join(box.root, 'etc/hostname'), 'old.example.org\n');
    await writeFile(path.join(box.root, 'etc/hosts'), '127.0.0.1\tlocalhost\n');
    await box.start();
    d = await Daemon.start(box.root, { listen: 'none' });
  });

  afterAll(async () => {
    const root = box?.root;
    await cleanupAll();
    if (root) expect(pidsMentioning(root)).toEqual([]);
  }, 60_000);

  it('stores the password 1.50 as typed, not 1.5', async () => {
    expectExit(await cp(['scope:set', 'mail.smart-host', RELAY, 'alice', '1.50']), EXIT.ok);
    expect(await authMap()).toBe(`${RELAY} alice:1.50\n`);
    expect(await relayhost()).toBe(RELAY);
  });

  it.each([
    ['fast path', false],
    ['oclif path', true],
  ] as const)('keeps -0, 1.0 and TRUE as typed, %s', async (_name, oclif) => {
    expectExit(await cp(['scope:set', 'mail.smart-host', RELAY, '1.0', '-0'], oclif), EXIT.ok);
    expect(await authMap()).toBe(`${RELAY} 1.0:-0\n`);
    expectExit(await cp(['scope:set', 'mail.smart-host', RELAY, 'TRUE', '1.50'], oclif), EXIT.ok);
    expect(await authMap()).toBe(`${RELAY} TRUE:1.50\n`);
  });

  it('still reads a quoted word as its content', async () => {
    expectExit(await cp(['scope:set', 'mail.smart-host', RELAY, "'bob'", '"1.50"']), EXIT.ok);
    expect(await authMap()).toBe(`${RELAY} bob:1.50\n`);
  });

  it.each([
    ['a quoted false', ["'false'"]],
    ['a double-quoted FALSE', ['"FALSE"']],
    ['false with USER PASS', ['false', 'alice', 's3cret']],
  ])('refuses %s as a relay host, saying that false alone and unquoted turns it off; nothing changes', async (_name, words) => {
    const before = await hashTree(box.dir);
    const r = await cp(['scope:set', 'mail.smart-host', ...words]);
    expectExit(r, EXIT.invalid);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^cpcmd: [^\n]*false[^\n]* is not a relay host: false turns the smart host off only unquoted and alone/i);
    expect(await hashTree(box.dir)).toEqual(before);
    expect(await relayhost()).toBe(RELAY);
  });

  it('turns the smart host off with a bare false', async () => {
    expectExit(await cp(['scope:set', 'mail.smart-host', 'false']), EXIT.ok);
    expect(await relayhost()).toBe('');
  });

  it('takes args alone from a JSON-RPC caller, and refuses words that are not the text of their args', async () => {
    const plain = await d.call('scope.set', { name: 'mail.smart-host', args: [RELAY, 'carol', 's3cret'] });
    expect(plain).toMatchObject({ result: { status: 'applied' } });
    expect(await authMap()).toBe(`${RELAY} carol:s3cret\n`);
    // Without words, a number is its JSON text.
    expect(await d.call('scope.set', { name: 'mail.smart-host', args: [RELAY, 'carol', 2.5] })).toMatchObject({ result: { status: 'applied' } });
    expect(await authMap()).toBe(`${RELAY} carol:2.5\n`);

    const before = await hashTree(box.dir);
    const forged = await d.call('scope.set', { name: 'mail.smart-host', args: [RELAY, 'carol', 1.5], words: [RELAY, 'carol', 'f0rged-w0rd'] });
    expect('error' in forged && forged.error).toMatchObject({ code: -32602 });
    expect(JSON.stringify(forged)).not.toContain('f0rged-w0rd');
    expect(await hashTree(box.dir)).toEqual(before);
  });
});

// No Postfix on this root: the hostname scopes and vars alone.
describe('the hostname as typed', { timeout: 60_000 }, () => {
  let h: Daemon;
  let root: string;
  beforeAll(async () => {
    root = await makeRoot();
    await mkdir(path.join(root, 'etc'));
    await writeFile(path.join(root, 'etc/hostname'), 'old.example.org\n');
    await writeFile(path.join(root, 'etc/hosts'), '127.0.0.1\tlocalhost\n');
    h = await Daemon.start(root, { listen: 'none' });
  });

  afterAll(async () => {
    await cleanupAll();
    if (root) expect(pidsMentioning(root)).toEqual([]);
  }, 60_000);

  const hcp = (args: readonly string[]) => cpcmd(args, { socket: h.socket });
  const hostnameFile = () => readFile(path.join(root, 'etc/hostname'), 'utf8');

  // A number-looking hostname reaches the check as typed (1.50, not 1.5), which refuses it for its all-digit last label.
  it('cp.bootstrapper checks system_hostname 1.50 as typed and refuses it', async () => {
    const r = await hcp(['scope:set', 'cp.bootstrapper', 'system_hostname', '1.50']);
    expectExit(r, EXIT.invalid);
    expect(r.stderr).toContain('"1.50" ends in the all-digit label "50"');
    expect(await hostnameFile()).toBe('old.example.org\n');
  });

  it('net.hostname checks 10.0 as typed and refuses it', async () => {
    const r = await hcp(['scope:set', 'net.hostname', '10.0']);
    expectExit(r, EXIT.invalid);
    expect(r.stderr).toContain('"10.0" ends in the all-digit label "0"');
    expect(await hostnameFile()).toBe('old.example.org\n');
  });

  it('a var that takes the typed value as it is keeps it: a boolean stays a boolean', async () => {
    expectExit(await hcp(['scope:set', 'cp.bootstrapper', 'postfix_relay_mynetworks', 'TRUE', '--no-converge']), EXIT.ok);
    expect(JSON.parse((await hcp(['scope:get', 'cp.bootstrapper', 'postfix_relay_mynetworks', '-o', 'json'])).stdout)).toBe(true);
  });
});
