/**
 * mail.deliverability end to end: the real cpcmd and scoped, asking a private authoritative DNS
 * server on loopback (dnsmasq, started here on a free port) that serves the test zones: each
 * check's pass, warn and fail as a user reads them, and cp.config's records that the report expects.
 */
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestDns, type Zone } from '../helpers/dns.js';
import { expectExit, expectRefused } from '../helpers/expect.js';
import { linkFilterPrograms } from '../helpers/filters.js';
import { type Scoped, scoped } from '../helpers/scoped.js';

interface Finding {
  check: string;
  subject: string;
  status: 'pass' | 'warn' | 'fail';
  detail: string;
  fix?: string;
}
interface Report {
  hostname: string;
  addresses: string[];
  summary: string;
  checks: Finding[];
}

/** A new RSA key: the PEM rspamd would sign with, and the p= value of its DKIM record. */
function rsaKey(): { pem: string; p: string } {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const p = createPublicKey(privateKey).export({ type: 'spki', format: 'der' }).toString('base64');
  return { pem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), p };
}
const signing = rsaKey();
const other = rsaKey();

/** An SPF record of ip4 terms, exactly `octets` long (terms may be parted by several spaces, RFC 7208 4.6.1). */
function longSpf(octets: number): string {
  const [head, tail] = ['v=spf1 ip4:127.0.0.1', ' ~all'];
  let mid = '';
  for (let i = 1; head.length + mid.length + tail.length + 20 < octets; i++) mid += ` ip4:10.0.${i}.0/24`;
  return head + mid + ' '.repeat(octets - head.length - mid.length - tail.length) + tail;
}

/** Names that exist (each lookup of them counts, none is void), at addresses no test sender uses. */
const filler = Object.fromEntries(Array.from({ length: 9 }, (_, i) => [`x${i + 1}.hosts.test`, [`192.0.2.${20 + i}`]]));

const ZONE: Zone = {
  hosts: { 'mail.example.test': ['127.0.0.1'], 'other.example.test': ['127.0.0.2'], ...filler },
  addresses: {
    'alias.example.test': '127.0.0.2',
    'noptr.example.test': '127.0.0.3',
    'broken.example.test': '127.0.0.4',
    'elsewhere.example.test': '127.0.0.5',
  },
  ptr: { '127.0.0.4': 'elsewhere.example.test' },
  mx: { 'good.test': 'mail.example.test' },
  txt: {
    'good.test': ['v=spf1 mx ~all'],
    '_dmarc.good.test': ['v=DMARC1; p=quarantine; pct=100;'],
    'twospf.test': ['v=spf1 mx ~all', 'v=spf1 -all'],
    'soft.test': ['v=spf1 ip4:192.0.2.99 ~all'],
    '_dmarc.soft.test': ['v=DMARC1; p=none'],
    'hard.test': ['v=spf1 -all'],
    '_dmarc.hard.test': ['v=DMARC1; p=bogus'],
    // include i1 (1) + 4 a (5) + include i2 (6) + 3 a (9): ten.test adds one (10), many.test two (11).
    'i1.chain.test': ['v=spf1 a:x1.hosts.test a:x2.hosts.test a:x3.hosts.test a:x4.hosts.test include:i2.chain.test ?all'],
    'i2.chain.test': ['v=spf1 a:x5.hosts.test a:x6.hosts.test a:x7.hosts.test ?all'],
    'ten.test': ['v=spf1 a:x8.hosts.test include:i1.chain.test ip4:127.0.0.1 ~all'],
    'many.test': ['v=spf1 a:x8.hosts.test a:x9.hosts.test include:i1.chain.test ip4:127.0.0.1 ~all'],
    'big.test': [longSpf(530)],
    'mid.test': [longSpf(470)],
    'signed.test': ['v=spf1 ip4:127.0.0.1 -all'],
    'routed.test': ['v=spf1 ip4:127.0.0.2 -all'],
    'misrouted.test': ['v=spf1 ip4:127.0.0.1 -all'],
    's1._domainkey.signed.test': [`v=DKIM1; k=rsa; p=${signing.p}`],
    's1._domainkey.wrongkey.test': [`v=DKIM1; k=rsa; p=${other.p}`],
  },
};

let d: Scoped;
let dns: TestDns;

/** The report as `cpcmd -o json` prints it. */
async function report(...args: string[]): Promise<Report> {
  const r = await d.cpcmd(['-o', 'json', 'scope:get', 'mail.deliverability', ...args]);
  expectExit(r, 'ok');
  return JSON.parse(r.stdout) as Report;
}

/** The one finding of a check for a subject. */
function find(rep: Report, check: string, subject: string): Finding {
  const found = rep.checks.filter((c) => c.check === check && c.subject === subject);
  expect(found, JSON.stringify(rep.checks, null, 1)).toHaveLength(1);
  return found[0]!;
}

async function hostname(name: string): Promise<void> {
  expectExit(await d.cpcmd(['scope:set', 'net.hostname', name]), 'ok');
}

describe('mail.deliverability reports the DNS a receiver sees', { timeout: 120_000 }, () => {
  beforeAll(async () => {
    const [a, b] = await Promise.allSettled([
      scoped({ postfix: true, listen: 'none', setup: (root) => linkFilterPrograms(root, ['rspamd']) }),
      TestDns.start(ZONE),
    ]);
    if (a.status === 'fulfilled') d = a.value;
    if (b.status === 'fulfilled') dns = b.value;
    if (a.status === 'rejected' || b.status === 'rejected') {
      await Promise.allSettled([d?.close(), dns?.close()]);
      throw a.status === 'rejected' ? a.reason : (b as PromiseRejectedResult).reason;
    }
    expectExit(await d.cpcmd(['scope:set', 'cp.bootstrapper', 'mail_dns_servers', `['${dns.server}']`]), 'ok');
    await hostname('mail.example.test');
  });

  afterAll(async () => {
    await Promise.allSettled([d?.close(), dns?.close()]);
  });

  it('FCrDNS: passes when the address names net.hostname and back; warns of another name; fails without PTR, without the way back, without an address', async () => {
    try {
      const good = await report('good.test');
      expect(good).toMatchObject({ hostname: 'mail.example.test', addresses: ['127.0.0.1'] });
      expect(find(good, 'fcrdns', '127.0.0.1')).toMatchObject({ status: 'pass', detail: '127.0.0.1 -> mail.example.test -> 127.0.0.1' });

      await hostname('alias.example.test');
      const alias = find(await report('good.test'), 'fcrdns', '127.0.0.2');
      expect(alias).toMatchObject({
        status: 'warn',
        detail: expect.stringContaining('127.0.0.2 -> other.example.test -> 127.0.0.2, but net.hostname is alias.example.test'),
      });
      expect(alias.fix).toContain('cpcmd scope:set net.hostname other.example.test');

      await hostname('noptr.example.test');
      expect(find(await report('good.test'), 'fcrdns', '127.0.0.3')).toMatchObject({
        status: 'fail',
        detail: '127.0.0.3 has no PTR record (3.0.0.127.in-addr.arpa)',
        fix: expect.stringContaining('set its PTR record to noptr.example.test'),
      });

      await hostname('broken.example.test');
      expect(find(await report('good.test'), 'fcrdns', '127.0.0.4')).toMatchObject({
        status: 'fail',
        detail: '127.0.0.4 -> elsewhere.example.test, which does not resolve back to 127.0.0.4',
      });

      await hostname('nowhere.example.test');
      const nowhere = await report('good.test');
      expect(nowhere.addresses).toEqual([]);
      expect(find(nowhere, 'fcrdns', 'nowhere.example.test')).toMatchObject({
        status: 'fail',
        fix: expect.stringContaining('publish nowhere.example.test. IN A'),
      });
      // With no address known, whether SPF permits the server cannot be said, and the report says so.
      expect(find(nowhere, 'spf-server', 'good.test').status).toBe('warn');
    } finally {
      // Restored whatever failed above: the tests after this one expect it.
      await hostname('mail.example.test');
    }
  });

  it('SPF: one record that permits the server passes; none, two, softfail and -all are reported with the fix', async () => {
    const good = await report('good.test');
    expect(find(good, 'spf', 'good.test')).toMatchObject({ status: 'pass', detail: 'one SPF record: v=spf1 mx ~all' });
    expect(find(good, 'spf-lookups', 'good.test')).toMatchObject({ status: 'pass', detail: '1 DNS lookup (at most 10)' });
    expect(find(good, 'spf-server', 'good.test from 127.0.0.1').status).toBe('pass');
    expect(good.summary).toMatch(/^\d+ pass, 1 warn, 0 fail$/); // the warn: good.test does not sign with DKIM

    expect(find(await report('nospf.test'), 'spf', 'nospf.test')).toMatchObject({
      status: 'fail',
      fix: 'publish nospf.test. IN TXT "v=spf1 a mx ~all"',
    });
    expect(find(await report('twospf.test'), 'spf', 'twospf.test')).toMatchObject({
      status: 'fail',
      detail: expect.stringContaining('publishes 2 SPF records'),
    });
    expect(find(await report('soft.test'), 'spf-server', 'soft.test from 127.0.0.1')).toMatchObject({
      status: 'warn',
      detail: expect.stringContaining('(softfail)'),
      fix: "add ip4:127.0.0.1 to soft.test's SPF record, before its all",
    });
    expect(find(await report('hard.test'), 'spf-server', 'hard.test from 127.0.0.1')).toMatchObject({
      status: 'fail',
      detail: expect.stringContaining('(fail'),
    });
  });

  it('SPF lookups are counted as RFC 7208 counts them: 10 pass, 11 fail', async () => {
    expect(find(await report('ten.test'), 'spf-lookups', 'ten.test')).toMatchObject({ status: 'pass', detail: '10 DNS lookups (at most 10)' });
    expect(find(await report('many.test'), 'spf-lookups', 'many.test')).toMatchObject({
      status: 'fail',
      detail: expect.stringContaining('takes 11 DNS lookups; RFC 7208 4.6.4 allows 10'),
    });
  });

  it('SPF size: over 512 octets fails, over 450 warns', async () => {
    const big = await report('big.test');
    expect(find(big, 'spf-size', 'big.test')).toMatchObject({ status: 'fail', detail: expect.stringContaining('the record is 530 octets; over 512') });
    // The record still arrives whole (over TCP), so the rest of its checks are made.
    expect(find(big, 'spf-server', 'big.test from 127.0.0.1').status).toBe('pass');
    expect(find(await report('mid.test'), 'spf-size', 'mid.test')).toMatchObject({ status: 'warn', detail: expect.stringContaining('470 octets') });
  });

  it('DMARC: a policy passes, p=none warns, none at all or no policy fails', async () => {
    expect(find(await report('good.test'), 'dmarc', 'good.test')).toMatchObject({
      status: 'pass',
      detail: 'v=DMARC1; p=quarantine; pct=100;: policy quarantine',
    });
    expect(find(await report('soft.test'), 'dmarc', 'soft.test')).toMatchObject({ status: 'warn', fix: expect.stringContaining('p=quarantine') });
    expect(find(await report('hard.test'), 'dmarc', 'hard.test')).toMatchObject({
      status: 'fail',
      detail: expect.stringContaining('p= must be none, quarantine or reject'),
    });
    expect(find(await report('nospf.test'), 'dmarc', 'nospf.test')).toMatchObject({
      status: 'fail',
      fix: 'publish _dmarc.nospf.test. IN TXT "v=DMARC1; p=quarantine; pct=100;"',
    });
  });

  it("DKIM: the selector's record must publish the key mail.dkim signs with", async () => {
    // Keys where mail.dkim keeps them, stored without converging: rspamd (linked into the root) is checked, never started.
    const dir = path.join(d.root, 'var/lib/rspamd/dkim');
    mkdirSync(dir, { recursive: true });
    for (const domain of ['signed.test', 'wrongkey.test', 'unpublished.test']) writeFileSync(path.join(dir, `${domain}.s1.key`), signing.pem, { mode: 0o600 });
    const domains = '[signed.test:[selector:s1,algorithm:rsa],wrongkey.test:[selector:s1,algorithm:rsa],unpublished.test:[selector:s1,algorithm:rsa]]';
    expectExit(await d.cpcmd(['scope:set', 'cp.bootstrapper', 'dkim_domains', domains, '--no-converge']), 'ok');

    // Without DOMAIN the report covers every domain mail.dkim signs for.
    const all = await report();
    expect(find(all, 'dkim', 'signed.test')).toMatchObject({ status: 'pass', detail: 's1._domainkey.signed.test publishes the key rspamd signs with' });
    const wrong = find(all, 'dkim', 'wrongkey.test');
    expect(wrong).toMatchObject({ status: 'fail', detail: expect.stringContaining('publishes another key') });
    // The fix is the record to publish: the signing key's, not the one published.
    expect(wrong.fix).toContain(signing.p.slice(0, 60));
    expect(wrong.fix).not.toContain(other.p.slice(0, 60));
    expect(find(all, 'dkim', 'unpublished.test')).toMatchObject({
      status: 'fail',
      detail: 's1._domainkey.unpublished.test has no DKIM record: receivers cannot verify the signatures',
    });
    expect(find(await report('good.test'), 'dkim', 'good.test')).toMatchObject({
      status: 'warn',
      fix: expect.stringContaining('cpcmd scope:set mail.dkim good.test'),
    });
  });

  it("a sender mail.sender-ip routes is checked from the route's address, against the route's HELO name", async () => {
    expectExit(await d.cpcmd(['scope:set', 'mail.sender-ip', 'routed.test', '127.0.0.2', 'other.example.test']), 'ok');
    expectExit(await d.cpcmd(['scope:set', 'mail.sender-ip', 'misrouted.test', '127.0.0.2', 'mx.misrouted.test']), 'ok');
    try {
      const routed = await report('routed.test');
      expect(find(routed, 'fcrdns', '127.0.0.2 (mail.sender-ip routed.test)')).toMatchObject({
        status: 'pass',
        detail: '127.0.0.2 -> other.example.test -> 127.0.0.2',
      });
      expect(find(routed, 'spf-server', 'routed.test from 127.0.0.2').status).toBe('pass');
      // The server's own address is not where routed.test's mail leaves from: it is not what SPF must permit.
      expect(routed.checks.some((c) => c.subject === 'routed.test from 127.0.0.1')).toBe(false);

      const mis = await report('misrouted.test');
      expect(find(mis, 'fcrdns', '127.0.0.2 (mail.sender-ip misrouted.test)')).toMatchObject({
        status: 'warn',
        detail: expect.stringContaining('but its HELO name is mx.misrouted.test'),
        fix: expect.stringContaining('cpcmd scope:set mail.sender-ip misrouted.test 127.0.0.2 other.example.test'),
      });
      expect(find(mis, 'spf-server', 'misrouted.test from 127.0.0.2')).toMatchObject({ status: 'fail', fix: expect.stringContaining('add ip4:127.0.0.2') });

      // Without DOMAIN, the routed domains are among those checked.
      const all = await report();
      expect(all.checks.filter((c) => c.check === 'spf-server').map((c) => c.subject)).toEqual(
        expect.arrayContaining(['routed.test from 127.0.0.2', 'misrouted.test from 127.0.0.2']),
      );
    } finally {
      expectExit(await d.cpcmd(['scope:set', 'mail.sender-ip', 'routed.test', 'false']), 'ok');
      expectExit(await d.cpcmd(['scope:set', 'mail.sender-ip', 'misrouted.test', 'false']), 'ok');
    }
  });

  it('cp.config mail default_spf / default_dmarc store the records the report expects', async () => {
    expect(JSON.parse((await d.cpcmd(['-o', 'json', 'scope:get', 'cp.config'])).stdout)).toEqual({ mail: { default_spf: '', default_dmarc: '' } });
    expectExit(await d.cpcmd(['scope:set', 'cp.config', 'mail', 'default_spf', 'v=spf1 a mx ~all']), 'ok');
    expectExit(await d.cpcmd(['scope:set', 'cp.config', 'mail', 'default_dmarc', 'v=DMARC1; p=reject;']), 'ok');
    const get = await d.cpcmd(['scope:get', 'cp.config', 'mail', 'default_spf']);
    expect(get).toMatchObject({ code: 0, stdout: 'v=spf1 a mx ~all\n' });
    expect((await d.cpcmd(['scope:get', 'cp.bootstrapper', 'mail_default_dmarc'])).stdout).toBe('v=DMARC1; p=reject;\n');

    const good = await report('good.test');
    expect(find(good, 'spf-default', 'good.test')).toMatchObject({
      status: 'warn',
      fix: 'publish good.test. IN TXT "v=spf1 a mx ~all", or cpcmd scope:set cp.config mail default_spf "v=spf1 mx ~all"',
    });
    expect(find(good, 'dmarc-default', 'good.test').status).toBe('warn');
    expect(find(await report('nospf.test'), 'dmarc', 'nospf.test').fix).toBe('publish _dmarc.nospf.test. IN TXT "v=DMARC1; p=reject;"');

    // Bad input is refused with what to type, and changes nothing.
    expectRefused(await d.cpcmd(['scope:set', 'cp.config', 'mail', 'default_spf', 'spf1 mx']), 'invalid', /starts v=spf1/);
    expectRefused(await d.cpcmd(['scope:set', 'cp.config', 'mail', 'default_dmarc', 'v=DMARC1; pct=5']), 'invalid', /p=none, p=quarantine or p=reject/);
    expectRefused(await d.cpcmd(['scope:set', 'cp.config', 'mail', 'default_spff', 'v=spf1 -all']), 'notFound', /did you mean default_spf/);
    expect((await d.cpcmd(['scope:get', 'cp.config', 'mail', 'default_spf'])).stdout).toBe('v=spf1 a mx ~all\n');

    // An empty value expects no record in particular.
    expectExit(await d.cpcmd(['scope:set', 'cp.config', 'mail', 'default_spf', '""']), 'ok');
    expectExit(await d.cpcmd(['scope:set', 'cp.config', 'mail', 'default_dmarc', '""']), 'ok');
    expect((await report('good.test')).checks.filter((c) => c.check.endsWith('-default'))).toEqual([]);
  });

  it('each report asks the DNS again: a record fixed in DNS shows at once', async () => {
    expect(find(await report('hard.test'), 'spf-server', 'hard.test from 127.0.0.1').status).toBe('fail');
    await dns.serve({ ...ZONE, txt: { ...ZONE.txt, 'hard.test': ['v=spf1 ip4:127.0.0.1 -all'] } });
    try {
      expect(find(await report('hard.test'), 'spf-server', 'hard.test from 127.0.0.1').status).toBe('pass');
    } finally {
      await dns.serve(ZONE);
    }
  });

  it('a DNS server that does not answer fails the checks with what to do, and the report still comes back', async () => {
    const silent = await TestDns.start({});
    const port = silent.port;
    await silent.close();
    expectExit(await d.cpcmd(['scope:set', 'cp.bootstrapper', 'mail_dns_servers', `['127.0.0.1:${port}']`]), 'ok');
    try {
      const rep = await report('good.test');
      expect(find(rep, 'fcrdns', 'mail.example.test')).toMatchObject({ status: 'fail', fix: expect.stringContaining('mail_dns_servers') });
    } finally {
      expectExit(await d.cpcmd(['scope:set', 'cp.bootstrapper', 'mail_dns_servers', `['${dns.server}']`]), 'ok');
    }
    expect(find(await report('good.test'), 'fcrdns', '127.0.0.1').status).toBe('pass');
  });

  it('is read-only, listed, and explains itself', async () => {
    expectRefused(await d.cpcmd(['scope:set', 'mail.deliverability', 'good.test']), 'invalid', /read-only report: run cpcmd scope:get mail.deliverability/);
    expectRefused(await d.cpcmd(['scope:get', 'mail.deliverability', 'not a domain']), 'invalid', /give a domain/);
    const rpc = await d.call('scope.set', { name: 'mail.deliverability', value: { anything: true } });
    expect(JSON.stringify(rpc)).toContain('read-only report');
    const list = await d.cpcmd(['scope:list']);
    expect(list.stdout).toMatch(/mail\.deliverability/);
    expect(list.stdout).toMatch(/cp\.config/);
    const info = await d.cpcmd(['scope:info', 'mail.deliverability']);
    expectExit(info, 'ok');
    expect(info.stdout).toContain('cpcmd scope:get mail.deliverability example.com');
    expect(info.stdout).toContain('usage: cpcmd scope:get mail.deliverability [DOMAIN]');
    const help = await d.cpcmd(['scope:info', 'cp.config']);
    expect(help.stdout).toContain('usage: cpcmd scope:set cp.config SECTION KEY VALUE');
    expect(help.stdout).toContain('cpcmd scope:set cp.config mail default_spf "v=spf1 a mx ~all"');
  });
});
