/**
 * net.hostname end to end: the real cpcmd binary (its fast path and its oclif path) against a
 * real scoped on a temp root, checking what a user sees on stdout, stderr and in the exit
 * code, and the bytes of /etc/hostname, /etc/hosts and /etc/mailname under the root.
 */
import { execFileSync } from 'node:child_process';
import { copyFile, cp, mkdir, rename } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { type RunResult, type Scoped, run, scoped, treeDigest, writeUnder } from './helpers/scoped.js';

const HOSTS_BEFORE = '127.0.0.1\tlocalhost\n# The following lines are desirable for IPv6 capable hosts\n::1\tlocalhost ip6-localhost ip6-loopback\n';

/** What each step of the main flow printed, per path, to compare the two paths at the end. */
const transcripts = new Map<string, { args: string[]; code: number | null; stdout: string; stderr: string }[]>();

describe.each([
  ['fast path', false],
  ['oclif path (CPCMD_OCLIF=1)', true],
] as const)('cpcmd scope:set/get net.hostname, %s', (pathName, oclif) => {
  let d: Scoped;
  const steps: { args: string[]; code: number | null; stdout: string; stderr: string }[] = [];
  // cpcmd shows a change's progress once it has waited ~300 ms, which a loaded machine can reach: those lines are left out.
  const step = async (...args: string[]): Promise<RunResult> => {
    const r = await d.cpcmd(args, { oclif });
    const stderr = r.stderr.replace(/^\d+\/\d+ .*\n/gm, '');
    steps.push({ args, code: r.code, stdout: r.stdout, stderr });
    return { ...r, stderr };
  };

  beforeAll(async () => {
    d = await scoped({ listen: 'none', files: { 'etc/hosts': HOSTS_BEFORE } });
    transcripts.set(pathName, steps);
  });
  afterAll(() => d?.close());

  it('sets Mail.Example.TEST. and exits 0', async () => {
    const r = await step('scope:set', 'net.hostname', 'Mail.Example.TEST.');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^net\.hostname: applied/);
  });

  it('prints exactly the normalized name on scope:get', async () => {
    const r = await step('scope:get', 'net.hostname');
    expect(r).toMatchObject({ code: 0, stdout: 'mail.example.test\n', stderr: '' });
  });

  it('wrote /etc/hostname, /etc/mailname and the 127.0.1.1 line of /etc/hosts, keeping its other lines', async () => {
    expect(await d.file('etc/hostname')).toBe('mail.example.test\n');
    expect(await d.file('etc/mailname')).toBe('mail.example.test\n');
    const hosts = (await d.file('etc/hosts'))!;
    expect(hosts.endsWith('\n')).toBe(true);
    const lines = hosts.split('\n').slice(0, -1);
    expect(lines.filter((l) => l.startsWith('127.0.1.1'))).toEqual(['127.0.1.1\tmail.example.test mail']);
    expect(lines.filter((l) => !l.startsWith('127.0.1.1'))).toEqual(HOSTS_BEFORE.split('\n').slice(0, -1));
  });

  it('prints "unchanged" on a repeated set and leaves the files untouched (bytes, mtime, inode)', async () => {
    const before = await treeDigest(path.join(d.root, 'etc'), { times: true });
    const r = await step('scope:set', 'net.hostname', 'Mail.Example.TEST.');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('unchanged');
    expect(r.stderr).toBe('');
    const after = await treeDigest(path.join(d.root, 'etc'), { times: true });
    for (const f of ['hostname', 'hosts', 'mailname']) expect(after[f], f).toBeDefined();
    expect(after).toEqual(before);
  });

  it('gives the same value with -o json, --json and -o yaml', async () => {
    const json = await step('scope:get', 'net.hostname', '-o', 'json');
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toBe('mail.example.test');
    const flag = await step('scope:get', 'net.hostname', '--json');
    expect(flag.code).toBe(0);
    expect(JSON.parse(flag.stdout)).toBe('mail.example.test');
    const yaml = await step('scope:get', 'net.hostname', '-o', 'yaml');
    expect(yaml.code).toBe(0);
    expect(parseYaml(yaml.stdout)).toBe('mail.example.test');
  });

  it('prints the plan with --dry-run and writes nothing', async () => {
    const before = await treeDigest(path.join(d.root, 'etc'), { times: true });
    const r = await step('scope:set', 'net.hostname', 'other.example.org', '--dry-run');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/dry run/);
    expect(r.stdout).toContain('/etc/hostname');
    expect(r.stdout).toContain('/etc/mailname');
    expect(r.stdout).toContain('other.example.org');
    expect(await treeDigest(path.join(d.root, 'etc'), { times: true })).toEqual(before);
    // nor was the desired state stored
    const stored = await step('scope:get', 'cp.bootstrapper', 'system_hostname');
    expect(stored).toMatchObject({ code: 0, stdout: 'mail.example.test\n' });
    const check = await step('scope:check');
    expect(check).toMatchObject({ code: 0 });
  });

  it('refuses an invalid name with exit 6 and an unknown scope with exit 7', async () => {
    const bad = await step('scope:set', 'net.hostname', 'mail');
    expect(bad.code).toBe(6);
    expect(bad.stderr).toMatch(/^cpcmd: .*mail/);
    const unknown = await step('scope:get', 'net.hostnam');
    expect(unknown.code).toBe(7);
  });
});

describe('the fast path and the oclif path', () => {
  it('print the same stdout, stderr and exit code at every step of the flow', () => {
    const fast = transcripts.get('fast path');
    const oclif = transcripts.get('oclif path (CPCMD_OCLIF=1)');
    expect(fast?.length).toBeGreaterThan(8);
    expect(oclif).toEqual(fast);
  });
});

describe('/etc/hosts with an old 127.0.1.1 line', () => {
  it('replaces that line instead of adding a second one', async () => {
    await using d = await scoped({
      listen: 'none',
      files: { 'etc/hosts': '127.0.0.1\tlocalhost\n127.0.1.1\told.example.org old\n# end\n' },
    });
    try {
      const r = await d.cpcmd(['scope:set', 'net.hostname', 'new.example.org']);
      expect(r.code, r.stderr).toBe(0);
      expect(await d.file('etc/hosts')).toBe('127.0.0.1\tlocalhost\n127.0.1.1\tnew.example.org new\n# end\n');
    } finally {
      await d.stop();
    }
  });
});

describe('refused hostnames', () => {
  let d: Scoped;
  beforeAll(async () => {
    d = await scoped({ listen: 'none', files: { 'etc/hosts': HOSTS_BEFORE } });
    const r = await d.cpcmd(['scope:set', 'net.hostname', 'good.example.com']);
    expect(r.code, r.stderr).toBe(0);
  });
  afterAll(() => d?.close());

  const refused: [string, string[], number][] = [
    ['no dot', ['mail'], 6],
    ['an empty label', ['mail..example.com'], 6],
    ['a 64-character label', [`${'a'.repeat(64)}.example.com`], 6],
    ['an underscore', ['mail_x.example.com'], 6],
    ['a leading hyphen, after --', ['--', '-mail.example.com'], 6],
    ['a leading hyphen (taken for a flag)', ['-mail.example.com'], 2],
    ['a newline inside the word', ['mail.example.com\nx'], 6],
    ['an empty word', [''], 6],
    ['two words', ['a.example.com', 'b.example.com'], 6],
    ['a 254-character name', [`${Array.from({ length: 4 }, () => 'a'.repeat(62)).join('.')}.com`], 6],
  ];

  it.each(refused)('refuses %s: exit code, one-line error, every file under etc unchanged', async (_what, words, code) => {
    const before = await treeDigest(path.join(d.root, 'etc'), { times: true });
    const r = await d.cpcmd(['scope:set', 'net.hostname', ...words]);
    expect(r.code).toBe(code);
    expect(r.stdout).toBe('');
    // One line: "cpcmd: ...", and at most a hint line; no stack trace.
    expect(r.stderr).toMatch(/^cpcmd: [^\n]+\n(hint: [^\n]+\n)?$/);
    expect(r.stderr).not.toMatch(/^\s+at /m);
    expect(await treeDigest(path.join(d.root, 'etc'), { times: true })).toEqual(before);
  });

  it('stops at the unquoted bracket trap with exit 2 and shows the quoted form', async () => {
    const before = await treeDigest(path.join(d.root, 'etc'), { times: true });
    const r = await d.cpcmd(['scope:set', 'net.hostname', '[relay]:587']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`"'[relay]:587'"`);
    expect(r.stderr).not.toMatch(/^\s+at /m);
    expect(await treeDigest(path.join(d.root, 'etc'), { times: true })).toEqual(before);
  });

  it('still has the name set before them', async () => {
    expect(await d.cpcmd(['scope:get', 'net.hostname'])).toMatchObject({ code: 0, stdout: 'good.example.com\n' });
    expect(await d.file('etc/hostname')).toBe('good.example.com\n');
  });
});

describe('drift', () => {
  let d: Scoped;
  beforeAll(async () => {
    d = await scoped({ listen: 'none', files: { 'etc/hosts': HOSTS_BEFORE } });
  });
  afterAll(() => d?.close());

  it('reports no drift right after a set', async () => {
    expect((await d.cpcmd(['scope:set', 'net.hostname', 'mail.example.test'])).code).toBe(0);
    const r = await d.cpcmd(['scope:check']);
    expect(r).toMatchObject({ code: 0, stderr: '' });
  });

  it('exits 3 on a hand edit of /etc/hostname, naming the file, the expected and the actual content', async () => {
    await writeUnder(d.root, 'etc/hostname', 'hand.example.com\n');
    const r = await d.cpcmd(['scope:check']);
    expect(r.code).toBe(3);
    const line = r.stdout.split('\n').find((l) => l.includes('/etc/hostname'));
    expect(line, r.stdout).toBeDefined();
    expect(line).toContain('mail.example.test');
    expect(line).toContain('hand.example.com');
    expect(line!.indexOf('mail.example.test')).toBeLessThan(line!.indexOf('hand.example.com'));
    const json = await d.cpcmd(['scope:check', '-o', 'json']);
    expect(json.code).toBe(3);
    expect(JSON.parse(json.stdout)).toMatchObject({
      ok: false,
      drift: expect.arrayContaining([expect.objectContaining({ target: '/etc/hostname', expected: 'mail.example.test\n', actual: 'hand.example.com\n' })]),
    });
  });

  it('shows what the system has on scope:get, with the drift on stderr', async () => {
    const r = await d.cpcmd(['scope:get', 'net.hostname']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('hand.example.com\n');
    expect(r.stderr).toContain('/etc/hostname');
  });

  it('reverts the hand edit on converge, and scope:check exits 0 after', async () => {
    const r = await d.cpcmd(['converge']);
    expect(r.code, r.stderr).toBe(0);
    expect(await d.file('etc/hostname')).toBe('mail.example.test\n');
    const check = await d.cpcmd(['scope:check']);
    expect(check.code, check.stdout).toBe(0);
    expect(await d.cpcmd(['scope:get', 'net.hostname'])).toMatchObject({ code: 0, stdout: 'mail.example.test\n', stderr: '' });
  });

  it('sees a hand edit made by renaming a file over /etc/mailname', async () => {
    await writeUnder(d.root, 'etc/.mailname.new', 'renamed.example.com\n');
    execFileSync('mv', [path.join(d.root, 'etc/.mailname.new'), path.join(d.root, 'etc/mailname')]);
    const r = await d.cpcmd(['scope:check', 'net.hostname', '-o', 'json']);
    expect(r.code).toBe(3);
    expect(JSON.parse(r.stdout).drift).toEqual([expect.objectContaining({ target: '/etc/mailname', actual: 'renamed.example.com\n' })]);
    expect((await d.cpcmd(['converge', 'net/hostname'])).code).toBe(0);
    expect(await d.file('etc/mailname')).toBe('mail.example.test\n');
  });

  it('still sees hand edits after the whole /etc directory was replaced by a copy', async () => {
    // e.g. restoring /etc from a backup: the old directory moves away and a new one takes its place
    await rename(path.join(d.root, 'etc'), path.join(d.root, 'etc.old'));
    await cp(path.join(d.root, 'etc.old'), path.join(d.root, 'etc'), { recursive: true, preserveTimestamps: true });
    await writeUnder(d.root, 'etc/hostname', 'restored.example.com\n');
    const get = await d.cpcmd(['scope:get', 'net.hostname']);
    expect(get.stdout).toBe('restored.example.com\n');
    const check = await d.cpcmd(['scope:check']);
    expect(check.code, check.stdout).toBe(3);
    expect(check.stdout).toContain('restored.example.com');
    expect((await d.cpcmd(['converge'])).code).toBe(0);
    expect(await d.file('etc/hostname')).toBe('mail.example.test\n');
  });
});

describe('concurrent sets', () => {
  it('are serialized: after six parallel sets every file and the stored var name the same host, with no drift', async () => {
    await using d = await scoped({ listen: 'none', files: { 'etc/hosts': HOSTS_BEFORE } });
    try {
      const names = Array.from({ length: 6 }, (_, i) => `host${i}.example.com`);
      const results = await Promise.all(names.map((n) => d.cpcmd(['scope:set', 'net.hostname', n])));
      for (const r of results) expect(r.code, r.stderr).toBe(0);
      const hostname = (await d.file('etc/hostname'))!.trim();
      expect(names).toContain(hostname);
      expect(await d.file('etc/mailname')).toBe(`${hostname}\n`);
      expect(await d.file('etc/hosts')).toBe(`${HOSTS_BEFORE}127.0.1.1\t${hostname} ${hostname.split('.')[0]}\n`);
      expect(await d.cpcmd(['scope:get', 'cp.bootstrapper', 'system_hostname'])).toMatchObject({ code: 0, stdout: `${hostname}\n` });
      expect((await d.cpcmd(['scope:check'])).code).toBe(0);
    } finally {
      await d.stop();
    }
  });
});

describe('with Postfix configured under the root', () => {
  let d: Scoped;
  const postfixDir = () => path.join(d.root, 'etc/postfix');
  const postconf = (...args: string[]) => run('postconf', ['-c', postfixDir(), ...args]);
  beforeAll(async () => {
    d = await scoped({
      listen: 'none',
      setup: async (root) => {
        await mkdir(path.join(root, 'etc/postfix'), { recursive: true });
        await copyFile('/usr/share/postfix/main.cf.debian', path.join(root, 'etc/postfix/main.cf'));
        await copyFile('/usr/share/postfix/master.cf.dist', path.join(root, 'etc/postfix/master.cf'));
        await writeUnder(root, 'etc/hosts', HOSTS_BEFORE);
      },
    });
  });
  afterAll(() => d?.close());

  it('does not report drift of other vars under net.hostname (scope:check)', async () => {
    const r = await d.cpcmd(['scope:check', '-o', 'json']);
    const drift = (JSON.parse(r.stdout) as { drift: { scope?: string; var?: string; target: string }[] }).drift;
    const misattributed = drift.filter((x) => x.scope === 'net.hostname' && x.var !== 'system_hostname');
    expect(misattributed).toEqual([]);
  });

  it('does not warn about unrelated Postfix parameters on scope:get net.hostname', async () => {
    const r = await d.cpcmd(['scope:get', 'net.hostname']);
    expect(r.code).toBe(0);
    expect(r.stderr).not.toMatch(/smtp_tls_security_level|smtpd_relay_restrictions/);
  });

  it('propagates the hostname to Postfix myhostname', async () => {
    const r = await d.cpcmd(['scope:set', 'net.hostname', 'Mail.Example.TEST.']);
    expect(r.code, r.stderr).toBe(0);
    const p = await postconf('-h', 'myhostname');
    expect(p).toMatchObject({ code: 0, stdout: 'mail.example.test\n' });
    expect(await d.file('etc/mailname')).toBe('mail.example.test\n');
    expect((await d.cpcmd(['scope:check'])).code).toBe(0);
  });

  it('reports a myhostname changed with postconf -e as drift, and converge puts it back', async () => {
    expect((await postconf('-e', 'myhostname=hand.example.org')).code).toBe(0);
    const check = await d.cpcmd(['scope:check']);
    expect(check.code).toBe(3);
    const line = check.stdout.split('\n').find((l) => l.includes('myhostname'));
    expect(line, check.stdout).toMatch(/mail\.example\.test.*hand\.example\.org/);
    expect((await d.cpcmd(['converge', 'mail/configure-postfix'])).code).toBe(0);
    expect((await postconf('-h', 'myhostname')).stdout).toBe('mail.example.test\n');
    expect((await d.cpcmd(['scope:check'])).code).toBe(0);
  });

  it('still sees a hand edit after /etc/postfix was replaced by a restored copy', async () => {
    await rename(postfixDir(), `${postfixDir()}.old`);
    await cp(`${postfixDir()}.old`, postfixDir(), { recursive: true, preserveTimestamps: true });
    expect((await postconf('-e', 'myhostname=restored.example.org')).code).toBe(0);
    const check = await d.cpcmd(['scope:check']);
    expect(check.code, check.stdout).toBe(3);
    expect(check.stdout).toContain('restored.example.org');
    expect((await d.cpcmd(['converge', 'mail/configure-postfix'])).code).toBe(0);
    expect((await postconf('-h', 'myhostname')).stdout).toBe('mail.example.test\n');
  });
});

describe('the kernel hostname, inside a UTS namespace', () => {
  it('is set by scope:set net.hostname when scoped runs with --kernel-hostname, and the host keeps its own', async () => {
    const hostBefore = os.hostname();
    await using d = await scoped({ wrapper: ['unshare', '--uts'], listen: 'none', args: ['--kernel-hostname'] });
    try {
      // unshare execs node, so the daemon's pid is the child's pid
      expect(d.pid).toBe(d.child.pid);
      const inside = () => run('nsenter', ['--uts', '--target', String(d.pid), 'hostname']);
      expect((await inside()).stdout).toBe(`${hostBefore}\n`);
      const r = await d.cpcmd(['scope:set', 'net.hostname', 'NS.Example.ORG.']);
      expect(r.code, r.stderr).toBe(0);
      expect(await inside()).toMatchObject({ code: 0, stdout: 'ns.example.org\n' });
      expect(await d.file('etc/hostname')).toBe('ns.example.org\n');
      expect(await d.cpcmd(['scope:get', 'net.hostname'])).toMatchObject({ code: 0, stdout: 'ns.example.org\n' });
      expect((await d.cpcmd(['scope:check'])).code).toBe(0);
      // A kernel hostname changed behind scoped's back is drift, and converge puts it back.
      expect((await run('nsenter', ['--uts', '--target', String(d.pid), 'hostname', 'other-name'])).code).toBe(0);
      const check = await d.cpcmd(['scope:check']);
      expect(check.code).toBe(3);
      expect(check.stdout).toContain('other-name');
      expect((await d.cpcmd(['converge', 'net/hostname'])).code).toBe(0);
      expect((await inside()).stdout).toBe('ns.example.org\n');
    } finally {
      await d.stop();
      expect(os.hostname()).toBe(hostBefore);
      expect((await run('hostname', [])).stdout).toBe(`${hostBefore}\n`);
    }
  });
});
