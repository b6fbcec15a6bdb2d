/**
 * mail.dkim end to end: the real cpcmd and scoped on a sandbox root with a private, running
 * Postfix whose mail goes to a real SMTP sink, and the host's rspamd linked into the root,
 * where scoped runs it as Postfix's milter. What reaches the sink is checked by verifiers
 * independent of rspamd (Mail::DKIM for RSA, dkimpy for ed25519) against the record that
 * `cpcmd scope:get mail.dkim DOMAIN` printed, never against anything read from the key file.
 *
 * One sandbox serves the whole file: rspamd's first start on a root compiles its regexp cache
 * (about 10 s), later ones take under a second.
 */
import { readFileSync, readdirSync, readlinkSync, statSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyDkim } from '../helpers/dkim.js';
import { expectExit, expectRefused } from '../helpers/expect.js';
import { linkFilterPrograms } from '../helpers/filters.js';
import { CPCMD_BIN, type RunResult, cleanEnv, mustRun, run } from '../helpers/proc.js';
import { RelaySink, type ReceivedMessage } from '../helpers/relay.js';
import { type Postfix, type Scoped, scoped, waitFor } from '../helpers/scoped.js';

const KEY_DIR = 'var/lib/rspamd/dkim';

let daemon: Scoped;
let box: Postfix;
let relay: RelaySink;

/** Processes holding a file under the root open (rspamd renames itself, so its command line says nothing of the root). */
function pidsWithFilesUnder(root: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readdirSync(`/proc/${entry}/fd`).some((fd) => readlinkSync(`/proc/${entry}/fd/${fd}`).startsWith(`${root}/`))) out.push(Number(entry));
    } catch {
      // gone, or not ours to read
    }
  }
  return out;
}

/** rspamd processes running for this root. */
const rspamdUnder = (root: string) => pidsWithFilesUnder(root).filter((pid) => /^rspamd/.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8')));

/**
 * cpcmd, waiting as long as rspamd's first start on a fresh root may take on a busy machine
 * (it compiles its regexp cache: 10 s alone, a minute beside other tests), beyond the fixture's 60 s.
 */
function cpcmdSlow(args: readonly string[]): Promise<RunResult> {
  return run(process.execPath, [CPCMD_BIN, ...args], { env: cleanEnv({ SCOPED_SOCKET: daemon.socket }), timeoutMs: 170_000 });
}

/** Send a message from `from` through the private Postfix and wait for it at the sink. */
async function sendFrom(from: string, subject = 'dkim e2e'): Promise<ReceivedMessage> {
  const id = await box.sendmail({ from, to: 'someone@remote.test', subject });
  return waitFor(`the message ${id} at the sink`, () => relay.messages.find((m) => m.raw.includes(id)), 30_000);
}

/** The record scope:get prints, as a user copies it into the zone. */
async function record(...args: string[]): Promise<string> {
  const r = await daemon.cpcmd(['scope:get', 'mail.dkim', ...args]);
  expectExit(r, 'ok');
  return r.stdout.trim();
}

/** The DKIM-Signature header fields of a message (unfolded). */
function signatures(raw: string): string[] {
  const head = raw.split(/\r?\n\r?\n/)[0]!.replace(/\r?\n[ \t]+/g, ' ');
  return head.split(/\r?\n/).filter((l) => /^DKIM-Signature:/i.test(l));
}

/** The message with one word of its body changed, headers and signature untouched. */
function tampered(raw: string): string {
  const at = raw.search(/\r?\n\r?\n/);
  const body = raw.slice(at);
  expect(body).toContain('Hello');
  return raw.slice(0, at) + body.replace('Hello', 'Jello');
}

describe('mail.dkim signs outbound mail with rspamd', { timeout: 240_000 }, () => {
  beforeAll(async () => {
    relay = await RelaySink.start({ auth: false });
    daemon = await scoped({ postfix: { smtpd: true, running: true }, listen: 'none', setup: (root) => linkFilterPrograms(root, ['rspamd', 'redis-server']) });
    box = daemon.postfix;
    expectExit(await daemon.cpcmd(['scope:set', 'mail.smart-host', relay.relayhostWord]), 'ok');
  }, 120_000);

  afterAll(async () => {
    const root = daemon?.root;
    try {
      // Turning signing off is what stops the rspamd scoped started for it.
      if (daemon) for (const domain of ['example.com', 'example.org']) await daemon.cpcmd(['scope:set', 'mail.dkim', domain, 'false']);
      await daemon?.close();
    } finally {
      await relay?.close();
      // Nothing of this root may outlive the test.
      if (root) for (const pid of pidsWithFilesUnder(root)) process.kill(pid, 'SIGKILL');
    }
  });

  it('signs mail from each domain with its key; the record scope:get printed verifies it, and a changed body does not', async () => {
    // The first domain starts rspamd as Postfix's milter.
    expectExit(await cpcmdSlow(['scope:set', 'mail.dkim', 'example.com', 's1']), 'ok');
    expectExit(await daemon.cpcmd(['scope:set', 'mail.dkim', 'example.org', 'ed1', 'ed25519']), 'ok');
    expect(rspamdUnder(daemon.root).length).toBeGreaterThan(0);

    for (const [domain, selector, algorithm] of [
      ['example.com', 's1', 'rsa-sha256'],
      ['example.org', 'ed1', 'ed25519-sha256'],
    ] as const) {
      const txt = await record(domain);
      expect(txt).toMatch(new RegExp(`^${selector}\\._domainkey\\.${domain.replace('.', '\\.')}\\. IN TXT \\( "v=DKIM1; k=${algorithm.split('-')[0]}; " "p=`));
      const key = path.join(daemon.root, KEY_DIR, `${domain}.${selector}.key`);
      expect(statSync(key).mode & 0o7777).toBe(0o600);
      expect(statSync(key).uid).toBe(Number((await mustRun('id', ['-u', '_rspamd'])).trim()));

      const message = await sendFrom(`someone@${domain}`);
      const sigs = signatures(message.raw);
      expect(sigs).toHaveLength(1);
      expect(sigs[0]).toMatch(new RegExp(`\\bd=${domain.replace('.', '\\.')};`));
      expect(sigs[0]).toMatch(new RegExp(`\\bs=${selector};`));
      expect(sigs[0]).toMatch(new RegExp(`\\ba=${algorithm};`));
      const good = await verifyDkim(message.raw, txt);
      expect(good.pass, good.output).toBe(true);
      const bad = await verifyDkim(tampered(message.raw), txt);
      expect(bad.pass, bad.output).toBe(false);
    }
    // A domain nobody configured is not signed.
    expect(signatures((await sendFrom('someone@elsewhere.test')).raw)).toEqual([]);
  });

  it('rotation: the new selector signs from then on, and the old key stays so its record can stay published', async () => {
    const oldKey = path.join(daemon.root, KEY_DIR, 'example.com.s1.key');
    const before = readFileSync(oldKey, 'utf8');
    const oldRecord = await record('example.com', 's1');
    expectExit(await daemon.cpcmd(['scope:set', 'mail.dkim', 'example.com', 's2']), 'ok');
    const listed = await daemon.cpcmd(['-o', 'json', 'scope:get', 'mail.dkim']);
    expect(JSON.parse(listed.stdout)).toMatchObject({ 'example.com': { signing: 's2', algorithm: 'rsa', kept: ['s1'] } });

    const message = await sendFrom('someone@example.com');
    expect(signatures(message.raw)[0]).toMatch(/\bs=s2;/);
    const verdict = await verifyDkim(message.raw, await record('example.com'));
    expect(verdict.pass, verdict.output).toBe(true);
    expect((await verifyDkim(message.raw, oldRecord)).pass).toBe(false);
    expect(readFileSync(oldKey, 'utf8')).toBe(before);
    expect(await record('example.com', 's1')).toBe(oldRecord);
  });

  it('the private key never appears in output, plans, drift, the audit trail or the daemon log', async () => {
    const keys = readdirSync(path.join(daemon.root, KEY_DIR)).map((f) => readFileSync(path.join(daemon.root, KEY_DIR, f), 'utf8'));
    // Every line of key material, so a key shown in part is caught too (ed25519 keys are one line).
    const material = keys.flatMap((k) => k.split('\n').filter((l) => l.length >= 40 && !l.startsWith('-----')));
    expect(material.length).toBeGreaterThan(keys.length);

    const outputs = [
      await daemon.cpcmd(['scope:set', 'mail.dkim', 'example.net', '--dry-run']),
      await daemon.cpcmd(['-o', 'json', 'scope:set', 'mail.dkim', 'example.net', '--dry-run']),
      await daemon.cpcmd(['-o', 'json', 'scope:get', 'mail.dkim']),
      await daemon.cpcmd(['-o', 'json', 'scope:get', 'mail.dkim', 'example.com']),
      await daemon.cpcmd(['-o', 'json', 'scope:check']),
      await daemon.cpcmd(['-o', 'json', 'var:list']),
      await daemon.cpcmd(['-o', 'json', 'audit:list']),
    ];
    expect(outputs[0]!.stdout).toMatch(/create \/var\/lib\/rspamd\/dkim\/example\.net\.dkim\.key \(mode 0600, content redacted\)/);
    // A key deleted by hand is drift, and converge makes a new one; neither shows it.
    unlinkSync(path.join(daemon.root, KEY_DIR, 'example.com.s2.key'));
    const drift = await daemon.cpcmd(['scope:check', 'mail.dkim']);
    expectExit(drift, 'drift');
    expect(drift.stdout).toMatch(/example\.com\.s2\.key/);
    outputs.push(drift, await daemon.cpcmd(['converge', 'mail/dkim']));
    expectExit(outputs.at(-1)!, 'ok');
    material.push(
      ...readFileSync(path.join(daemon.root, KEY_DIR, 'example.com.s2.key'), 'utf8')
        .split('\n')
        .filter((l) => l.length >= 40 && !l.startsWith('-----')),
    );

    const said = [...outputs.flatMap((r) => [r.stdout, r.stderr]), daemon.stdout(), daemon.stderr()].join('\n');
    for (const line of material) expect(said).not.toContain(line);
  });

  it('false stops signing and keeps the keys; --purge deletes them; other scopes refuse --purge', async () => {
    const keyDir = path.join(daemon.root, KEY_DIR);
    expectExit(await daemon.cpcmd(['scope:set', 'mail.dkim', 'example.org', 'false']), 'ok');
    expect(signatures((await sendFrom('someone@example.org')).raw)).toEqual([]);
    expect(readdirSync(keyDir)).toContain('example.org.ed1.key');
    const listed = JSON.parse((await daemon.cpcmd(['-o', 'json', 'scope:get', 'mail.dkim'])).stdout);
    expect(listed['example.org']).toEqual({ signing: false, kept: ['ed1'] });

    expectRefused(await daemon.cpcmd(['scope:set', 'mail.smart-host', 'false', '--purge']), 'invalid', /--purge applies to scopes .* such as mail\.dkim/);

    expectExit(await daemon.cpcmd(['scope:set', 'mail.dkim', 'example.com', 'false', '--purge']), 'ok');
    expect(readdirSync(keyDir).filter((f) => f.startsWith('example.com.'))).toEqual([]);
    expect(readdirSync(keyDir)).toContain('example.org.ed1.key');
    expect(signatures((await sendFrom('someone@example.com')).raw)).toEqual([]);
    // No domain signs: the rspamd scoped ran for signing is stopped.
    await waitFor('rspamd to stop', () => (rspamdUnder(daemon.root).length === 0 ? true : undefined), 20_000);
    expectRefused(
      await daemon.cpcmd(['scope:get', 'mail.dkim', 'example.com']),
      'notFound',
      /example\.com has no DKIM key: create one with cpcmd scope:set mail\.dkim example\.com/,
    );
  });
});

describe('scope:set --purge', () => {
  it('is refused, changing nothing, by a scope that keeps nothing to purge', async () => {
    await using d = await scoped({ listen: 'none' });
    const before = (await d.cpcmd(['scope:get', 'net.hostname'])).stdout;
    expectRefused(
      await d.cpcmd(['scope:set', 'net.hostname', 'mail.example.com', '--purge']),
      'invalid',
      /^cpcmd: net\.hostname keeps nothing to purge; --purge applies to scopes that delete what they stop using, such as mail\.dkim/,
    );
    expect((await d.cpcmd(['scope:get', 'net.hostname'])).stdout).toBe(before);
  });
});
