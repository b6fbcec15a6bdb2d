/**
 * A private authoritative DNS server on loopback for the tests: Debian's dnsmasq, run in the
 * foreground on a free port with no upstream, no /etc/hosts and no configuration but the test's
 * zone, answering NXDOMAIN for any other name under the zone's domains.
 *
 *     await using dns = await TestDns.start({ hosts: { 'mail.example.test': ['127.0.0.1'] }, txt: { 'example.test': ['v=spf1 a ~all'] } });
 *     dns.server; // '127.0.0.1:PORT', for mail_dns_servers
 *
 * scripts/prepare.mjs --test installs dnsmasq; its host service is never started.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { promises as dnsPromises } from 'node:dns';
import { existsSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { freePort, makeTempDir, waitFor } from './proc.js';

const DNSMASQ = '/usr/sbin/dnsmasq';

/** What the server answers. Every name must lie under one of `domains` (default: test, in-addr.arpa, ip6.arpa). */
export interface Zone {
  /** A/AAAA records with the matching PTR records (dnsmasq's host-record). */
  hosts?: Record<string, string[]>;
  /** A/AAAA records without PTR (dnsmasq's address). */
  addresses?: Record<string, string>;
  /** PTR records: the address, and the name it points at. */
  ptr?: Record<string, string>;
  /** TXT records: each name's records, each one text (split into 255-octet strings here). */
  txt?: Record<string, string[]>;
  /** MX records: the domain, and its exchange (preference 10). */
  mx?: Record<string, string>;
  /** The domains the server is the authority for; names under them that are not listed do not exist. */
  domains?: string[];
}

/** The PTR name of an IPv4 address. */
const arpa = (address: string) => `${address.split('.').reverse().join('.')}.in-addr.arpa`;

/** A TXT value as dnsmasq's txt-record wants it: quoted character-strings of at most 255 octets. */
function strings(text: string): string {
  if (/["\\\n]/.test(text)) throw new Error(`a test TXT record may not hold quotes, backslashes or newlines: ${text}`);
  const parts: string[] = [];
  for (let i = 0; i < text.length || i === 0; i += 255) parts.push(`"${text.slice(i, i + 255)}"`);
  return parts.join(',');
}

function config(zone: Zone, port: number): string {
  const lines = [`port=${port}`, 'listen-address=127.0.0.1', 'bind-interfaces', 'no-resolv', 'no-hosts', 'no-poll', 'cache-size=0'];
  for (const d of zone.domains ?? ['test', 'in-addr.arpa', 'ip6.arpa']) lines.push(`local=/${d}/`);
  for (const [name, addrs] of Object.entries(zone.hosts ?? {})) lines.push(`host-record=${name},${addrs.join(',')}`);
  for (const [name, addr] of Object.entries(zone.addresses ?? {})) lines.push(`address=/${name}/${addr}`);
  for (const [addr, name] of Object.entries(zone.ptr ?? {})) lines.push(`ptr-record=${arpa(addr)},${name}`);
  for (const [name, records] of Object.entries(zone.txt ?? {})) for (const r of records) lines.push(`txt-record=${name},${strings(r)}`);
  for (const [name, exchange] of Object.entries(zone.mx ?? {})) lines.push(`mx-host=${name},${exchange},10`);
  return `${lines.join('\n')}\n`;
}

export class TestDns implements AsyncDisposable {
  private constructor(
    private readonly dir: string,
    private child: ChildProcess,
    readonly port: number,
    private log: string[],
  ) {}

  /** The server as mail_dns_servers takes it. */
  get server(): string {
    return `127.0.0.1:${this.port}`;
  }

  static async start(zone: Zone): Promise<TestDns> {
    if (!existsSync(DNSMASQ)) throw new Error(`${DNSMASQ} is missing: install dnsmasq (npm test installs it: node scripts/prepare.mjs --test)`);
    const dir = await makeTempDir('scoped-dns-');
    try {
      const port = await freePort();
      const { child, log } = await TestDns.run(dir, zone, port);
      return new TestDns(dir, child, port, log);
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
  }

  private static async run(dir: string, zone: Zone, port: number): Promise<{ child: ChildProcess; log: string[] }> {
    const conf = path.join(dir, 'dnsmasq.conf');
    await writeFile(conf, config(zone, port));
    // -k: in the foreground, so this process owns it; no pid file; its log on stderr.
    const child = spawn(DNSMASQ, ['-k', `--conf-file=${conf}`, '--pid-file=', '--user=nobody', '--log-facility=-'], { stdio: ['ignore', 'ignore', 'pipe'] });
    const log: string[] = [];
    child.stderr!.on('data', (d: Buffer) => log.push(d.toString()));
    let exited = false;
    child.once('exit', () => (exited = true));
    const probe = new dnsPromises.Resolver({ timeout: 500, tries: 1 });
    probe.setServers([`127.0.0.1:${port}`]);
    try {
      await waitFor(`dnsmasq answering on 127.0.0.1:${port}`, async () => {
        if (exited) throw new Error(`dnsmasq exited: ${log.join('')}`);
        // Any answer, even "no such name", means it serves.
        return probe.resolve('ready.probe.test', 'A').then(
          () => true,
          (e: NodeJS.ErrnoException) => (e.code === 'ENOTFOUND' || e.code === 'ENODATA' ? true : undefined),
        );
      });
    } catch (err) {
      child.kill('SIGKILL');
      throw err;
    }
    return { child, log };
  }

  /** Serve another zone on the same port (dnsmasq reads its records only when it starts). */
  async serve(zone: Zone): Promise<void> {
    await this.stop();
    ({ child: this.child, log: this.log } = await TestDns.run(this.dir, zone, this.port));
  }

  private async stop(): Promise<void> {
    const child = this.child;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    await gone;
  }

  async close(): Promise<void> {
    await this.stop();
    await rm(this.dir, { recursive: true, force: true });
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
