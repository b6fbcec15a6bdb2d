import { createPublicKey, createSign, createVerify, sign as cryptoSign, verify as cryptoVerify, createPrivateKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type Change, type ScopeContext, type VarValues, describeChange } from '@scoped/sdk';
import { rootSystem } from '@scoped/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SIGNING_CONF, dkimScope, dkimUnit, keyPath, signingConf } from './dkim.js';
import { keyAlgorithm, newKey, txtRecord } from './dkim-keys.js';

/** The strings of a zone-file TXT record, joined as a resolver hands them to a verifier. */
function txtValue(record: string): { owner: string; strings: string[]; tags: Map<string, string> } {
  const m = /^(\S+) IN TXT \( (.*) \)$/.exec(record);
  if (!m) throw new Error(`not a TXT record: ${record}`);
  const strings = [...m[2]!.matchAll(/"([^"]*)"/g)].map((s) => s[1]!);
  const tags = new Map(
    strings
      .join('')
      .split(';')
      .map((t) => t.trim())
      .filter(Boolean)
      .map((t) => [t.slice(0, t.indexOf('=')), t.slice(t.indexOf('=') + 1)] as [string, string]),
  );
  return { owner: m[1]!, strings, tags };
}

describe('DKIM keys and their records', () => {
  it('an RSA key is 2048-bit PKCS#8 PEM, and its record publishes the public half that verifies its signatures', async () => {
    const key = await newKey('rsa');
    expect(key).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(keyAlgorithm(key)).toBe('rsa');
    expect(createPrivateKey(key).asymmetricKeyDetails?.modulusLength).toBe(2048);
    const record = txtRecord('example.com', 's1', key)!;
    const { owner, strings, tags } = txtValue(record);
    expect(owner).toBe('s1._domainkey.example.com.');
    expect(strings[0]).toBe('v=DKIM1; k=rsa; ');
    // A 2048-bit key's p= is longer than one DNS string holds: split, each at most 255 characters.
    expect(strings.length).toBeGreaterThan(2);
    for (const s of strings) expect(s.length).toBeLessThanOrEqual(255);
    const pub = createPublicKey({ key: Buffer.from(tags.get('p')!, 'base64'), format: 'der', type: 'spki' });
    const signature = createSign('sha256').update('hello').sign(key);
    expect(createVerify('sha256').update('hello').verify(pub, signature)).toBe(true);
    expect(record).not.toContain('PRIVATE');
  });

  it("an ed25519 key is rspamd's base64 seed and public key, and its record is the bare 32-byte key (RFC 8463)", async () => {
    const key = await newKey('ed25519');
    expect(key).toMatch(/^[A-Za-z0-9+/]{86}==\n$/);
    expect(keyAlgorithm(key)).toBe('ed25519');
    const { strings, tags } = txtValue(txtRecord('example.org', 'ed', key)!);
    expect(strings[0]).toBe('v=DKIM1; k=ed25519; ');
    const raw = Buffer.from(tags.get('p')!, 'base64');
    expect(raw).toEqual(Buffer.from(key.trim(), 'base64').subarray(32));
    const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), raw]);
    const priv = createPrivateKey({
      key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), Buffer.from(key.trim(), 'base64').subarray(0, 32)]),
      format: 'der',
      type: 'pkcs8',
    });
    const signature = cryptoSign(null, Buffer.from('hello'), priv);
    expect(cryptoVerify(null, Buffer.from('hello'), createPublicKey({ key: spki, format: 'der', type: 'spki' }), signature)).toBe(true);
  });

  it('a file without a usable key has no algorithm and no record', () => {
    for (const text of ['', 'garbage', '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n', Buffer.alloc(10).toString('base64')]) {
      expect(keyAlgorithm(text)).toBeNull();
      expect(txtRecord('example.com', 's', text)).toBeNull();
    }
  });

  it('signingConf names each domain with its own key by host path, and no fallback', () => {
    const conf = signingConf('/srv/root', { 'b.example': { selector: 's2', algorithm: 'ed25519' }, 'a.example': { selector: 'dkim', algorithm: 'rsa' } });
    expect(conf).toContain('try_fallback = false;');
    expect(conf).toContain('use_domain = "header";');
    expect(conf).toContain('allow_hdrfrom_mismatch = false;');
    expect(conf.indexOf('"a.example"')).toBeLessThan(conf.indexOf('"b.example"'));
    expect(conf).toContain('selectors [ { path = "/srv/root/var/lib/rspamd/dkim/b.example.s2.key"; selector = "s2"; } ];');
  });
});

describe('mail.dkim on a sandbox root', () => {
  let root: string;
  let system: ReturnType<typeof rootSystem>;
  let vars: VarValues;

  beforeEach(() => {
    root = mkdtempSync(path.join(tmpdir(), 'scoped-dkim-'));
    system = rootSystem(root);
    vars = { dkim_domains: {}, dkim_old_keys: {} };
  });
  afterEach(() => {
    system.close();
    rmSync(root, { recursive: true, force: true });
  });

  const ctx = (extra: Partial<ScopeContext> = {}): ScopeContext => ({ system, vars, varDefs: new Map(), redactVar: (_n, v) => v, ...extra });
  const plan = async (): Promise<Change[]> =>
    dkimUnit.plan(vars, await dkimUnit.observe({ system, options: { kernelHostname: false } }), {
      system,
      options: { kernelHostname: false },
    });
  /** cpcmd scope:set mail.dkim WORDS [--purge], then converge: the vars it stores and the plan it applied. */
  async function set(words: unknown[], purge = false): Promise<Change[]> {
    const c = ctx(purge ? { purge } : {});
    const value = await dkimScope.parseArgs(words, c);
    vars = { ...vars, ...(await dkimScope.toVars(dkimScope.schema.parse(value), c)) };
    const changes = await plan();
    await system.apply(changes);
    return changes;
  }
  const file = (p: string) => path.join(root, p);

  it('creates a 0600 key that no plan shows, the signing settings and a reload; a second converge plans nothing', async () => {
    const changes = await set(['example.com']);
    expect(vars.dkim_domains).toEqual({ 'example.com': { selector: 'dkim', algorithm: 'rsa' } });
    expect(changes.map(describeChange)).toEqual([
      `create ${keyPath('example.com', 'dkim')} (mode 0600, content redacted)`,
      expect.stringMatching(/^create \/etc\/rspamd\/local\.d\/dkim_signing\.conf \(mode 0644\)/),
      'reload rspamd if running',
    ]);
    const key = readFileSync(file(keyPath('example.com', 'dkim')), 'utf8');
    expect(statSync(file(keyPath('example.com', 'dkim'))).mode & 0o7777).toBe(0o600);
    expect(changes.map(describeChange).join('\n')).not.toContain(key.split('\n')[1]!);
    expect(readFileSync(file(SIGNING_CONF), 'utf8')).toContain(`path = "${file(keyPath('example.com', 'dkim'))}"; selector = "dkim";`);
    expect(await plan()).toEqual([]);
    expect(await dkimScope.get(ctx(), ['example.com'])).toBe(txtRecord('example.com', 'dkim', key));
    expect(await dkimScope.get(ctx(), [])).toEqual({ 'example.com': { signing: 'dkim', algorithm: 'rsa', kept: [] } });
  });

  it('rotation: a new selector signs, the old key stays and its record can still be printed', async () => {
    await set(['example.com', 's1']);
    const old = readFileSync(file(keyPath('example.com', 's1')), 'utf8');
    await set(['Example.COM', 's2', 'ed25519']);
    expect(vars.dkim_domains).toEqual({ 'example.com': { selector: 's2', algorithm: 'ed25519' } });
    expect(readFileSync(file(keyPath('example.com', 's1')), 'utf8')).toBe(old);
    expect(readFileSync(file(SIGNING_CONF), 'utf8')).toContain('selector = "s2"');
    expect(readFileSync(file(SIGNING_CONF), 'utf8')).not.toContain('selector = "s1"');
    expect(await dkimScope.get(ctx(), [])).toEqual({ 'example.com': { signing: 's2', algorithm: 'ed25519', kept: ['s1'] } });
    expect(await dkimScope.get(ctx(), ['example.com', 's1'])).toBe(txtRecord('example.com', 's1', old));
    expect(String(await dkimScope.get(ctx(), ['example.com']))).toMatch(/^s2\._domainkey\.example\.com\. IN TXT \( "v=DKIM1; k=ed25519; " "p=/);
  });

  it('false stops signing and keeps the key; setting the domain again signs with that same key', async () => {
    await set(['example.com', 's1']);
    const key = readFileSync(file(keyPath('example.com', 's1')), 'utf8');
    const changes = await set(['example.com', false]);
    expect(changes.map(describeChange)).toEqual([`remove ${SIGNING_CONF}`, 'reload rspamd if running']);
    expect(vars).toEqual({ dkim_domains: {}, dkim_old_keys: { 'example.com': { kept: ['s1'], purged: [] } } });
    expect(existsSync(file(SIGNING_CONF))).toBe(false);
    expect(readFileSync(file(keyPath('example.com', 's1')), 'utf8')).toBe(key);
    expect(await dkimScope.get(ctx(), [])).toEqual({ 'example.com': { signing: false, kept: ['s1'] } });
    await set(['example.com']);
    expect(vars).toEqual({ dkim_domains: { 'example.com': { selector: 's1', algorithm: 'rsa' } }, dkim_old_keys: {} });
    expect(readFileSync(file(keyPath('example.com', 's1')), 'utf8')).toBe(key);
  });

  it('false --purge deletes every key of the domain, and only that domain', async () => {
    await set(['example.com', 's1']);
    await set(['example.com', 's2']);
    await set(['example.org']);
    const changes = await set(['example.com', false], true);
    expect(changes.map(describeChange)).toEqual([
      `remove ${keyPath('example.com', 's2')}`,
      `remove ${keyPath('example.com', 's1')}`,
      expect.stringMatching(/^rewrite \/etc\/rspamd\/local\.d\/dkim_signing\.conf/),
      'reload rspamd if running',
    ]);
    expect(existsSync(file(keyPath('example.com', 's1')))).toBe(false);
    expect(existsSync(file(keyPath('example.com', 's2')))).toBe(false);
    expect(existsSync(file(keyPath('example.org', 'dkim')))).toBe(true);
    expect(await dkimScope.get(ctx(), [])).toEqual({ 'example.org': { signing: 'dkim', algorithm: 'rsa', kept: [] } });
    expect(await plan()).toEqual([]);
    // A purged selector given again gets a new key.
    await set(['example.com', 's1']);
    expect(keyAlgorithm(readFileSync(file(keyPath('example.com', 's1')), 'utf8'))).toBe('rsa');
    expect(vars.dkim_old_keys).toEqual({});
  });

  it('a key deleted or damaged by hand is created again by converge', async () => {
    await set(['example.com']);
    rmSync(file(keyPath('example.com', 'dkim')));
    expect((await plan()).map(describeChange)).toEqual([`create ${keyPath('example.com', 'dkim')} (mode 0600, content redacted)`, 'reload rspamd if running']);
  });

  it('refuses what it cannot do, saying what to type instead', async () => {
    await set(['example.com', 's1']);
    await expect(set(['example.com', 's1', 'ed25519'])).rejects.toThrow(/already has an rsa key; .*NEW_SELECTOR ed25519/);
    await expect(set(['example.net', false])).rejects.toThrow(/example\.net has no DKIM key to stop; the domains that sign are example\.com/);
    await expect(set(['example.com', 'ed25519'])).rejects.toThrow(/rsa and ed25519 name algorithms, not selectors/);
    await expect(set(['example.com', 's3', 'dsa'])).rejects.toThrow(/the algorithm is rsa or ed25519, not dsa/);
    await expect(set(['not a domain'])).rejects.toThrow(/a domain is a lowercase DNS name/);
    await expect(set(['example.com', 'a b'])).rejects.toThrow(/a selector is one DNS label/);
    await expect(dkimScope.get(ctx(), ['example.net'])).rejects.toThrow(
      /example\.net has no DKIM key: create one with cpcmd scope:set mail\.dkim example\.net/,
    );
    await expect(dkimScope.get(ctx(), ['example.com', 'old'])).rejects.toThrow(/example\.com has no DKIM selector old; its selectors are s1/);
  });
});
