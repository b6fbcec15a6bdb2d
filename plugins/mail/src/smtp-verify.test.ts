import { type Socket as UdpSocket, createSocket } from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { type AddressInfo, type Server, type Socket, createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { RELAY_TEXT_MAX, VERIFY_DEADLINE_MS, describeReply, relayTargets, sanitizeRelayText, verifyDeadlineMs, verifyRelay } from './smtp-verify.js';

const PRINTABLE = /^[\x20-\x7e]*$/;

describe('sanitizeRelayText', () => {
  it('keeps plain text as it is', () => {
    expect(sanitizeRelayText('5.7.8 Authentication credentials invalid')).toBe('5.7.8 Authentication credentials invalid');
  });

  it.each([
    ['CSI cursor moves and colours', 'a\x1b[2J\x1b[1;31mb\x1b[0mc', 'abc'],
    ['8-bit CSI', 'a\x9b2Jb', 'ab'],
    ['OSC title ended by BEL', 'a\x1b]0;pwned\x07b', 'ab'],
    ['OSC 52 clipboard write ended by ST', 'a\x1b]52;c;ZWNobyBwd25lZA==\x1b\\b', 'ab'],
    ['8-bit OSC ended by 8-bit ST', 'a\x9d0;pwned\x9cb', 'ab'],
    ['DCS string', 'a\x1bPq#0;2;0;0;0\x1b\\b', 'ab'],
    ['an unterminated OSC to the end', 'a\x1b]0;pwned', 'a'],
    ['ESC c (reset)', 'a\x1bcb', 'ab'],
    ['a lone ESC', 'a\x1b', 'a'],
    ['BEL, backspace, NUL and DEL', 'a\x07\x08\x00\x7fb', 'ab'],
    ['other C1 controls', 'a\x85\x8eb', 'ab'],
    ['line breaks and tabs', 'a\r\n\tb', 'a b'],
    ['non-ASCII', 'Grüße', 'Gr??e'],
  ])('removes %s', (_what, text, shown) => {
    expect(sanitizeRelayText(text)).toBe(shown);
  });

  it(`clips to ${RELAY_TEXT_MAX} characters`, () => {
    const shown = sanitizeRelayText('x'.repeat(10_000));
    expect(shown).toHaveLength(RELAY_TEXT_MAX);
    expect(shown.endsWith('...')).toBe(true);
  });

  it('answers printable ASCII whatever it is given', () => {
    let all = '';
    for (let c = 0; c < 0x200; c++) all += String.fromCharCode(c);
    expect(sanitizeRelayText(all, 10_000)).toMatch(PRINTABLE);
    expect(sanitizeRelayText('\ud800\u2028\u2029\ufeff', 10_000)).toMatch(PRINTABLE);
  });
});

describe('describeReply', () => {
  it('shows the code and the text of the last line, never the whole reply', () => {
    expect(describeReply('535-5.7.8 first\n535-second\n535 5.7.8 Username and Password not accepted')).toBe('535 5.7.8 Username and Password not accepted');
    expect(describeReply('554')).toBe('554');
    expect(describeReply('220 \x1b]0;owned\x07relay ready')).toBe('220 relay ready');
    expect(describeReply('hello\x1b[2J')).toBe('(not an SMTP reply) hello');
  });
});

describe('verifyDeadlineMs', () => {
  it('takes SCOPED_VERIFY_DEADLINE_MS between 1 and 120 seconds, else the default', () => {
    expect(verifyDeadlineMs({ SCOPED_VERIFY_DEADLINE_MS: '2500' })).toBe(2_500);
    for (const bad of ['', '0', '999', '120001', '2e3', '-5', 'soon']) expect(verifyDeadlineMs({ SCOPED_VERIFY_DEADLINE_MS: bad })).toBe(VERIFY_DEADLINE_MS);
    expect(verifyDeadlineMs({})).toBe(VERIFY_DEADLINE_MS);
  });
});

describe('verifyRelay against relays that misbehave', () => {
  const servers: Server[] = [];
  const sockets = new Set<Socket>();
  afterEach(async () => {
    for (const s of sockets) s.destroy();
    sockets.clear();
    await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  });

  /** A TCP server on a free loopback port that runs `talk` on each connection; its relayhost. */
  async function relay(talk: (s: Socket) => void): Promise<string> {
    const server = createServer((s) => {
      sockets.add(s);
      s.on('error', () => undefined);
      talk(s);
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return `[127.0.0.1]:${(server.address() as AddressInfo).port}`;
  }

  const PASSWORD = 'Pw-verify-7f3a';
  const login = (host: string) => ({ host, username: 'alice', password: PASSWORD });

  it('rejects when the relay closes before its greeting', async () => {
    const host = await relay((s) => s.destroy());
    await expect(verifyRelay(login(host), { tlsLevel: 'may', timeoutMs: 5_000 })).rejects.toThrow(/closed the connection before its greeting/);
  });

  it('rejects at its deadline when the relay never speaks', async () => {
    const host = await relay(() => undefined);
    const started = Date.now();
    await expect(verifyRelay(login(host), { tlsLevel: 'may', timeoutMs: 1_000 })).rejects.toThrow(
      /no answer from 127\.0\.0\.1:\d+ within 1 s \(waiting for its greeting\)/,
    );
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it('rejects at its deadline when the relay stalls halfway through a reply', async () => {
    const host = await relay((s) => s.write('220-relay\r\n220-still going'));
    await expect(verifyRelay(login(host), { tlsLevel: 'may', timeoutMs: 1_000 })).rejects.toThrow(/within 1 s/);
  });

  it('shows a hostile refusal only as its code and sanitized text, and never the credentials it echoes', async () => {
    const host = await relay((s) => {
      s.write(`220-${'\x1b]0;owned\x07'.repeat(50)}${'y'.repeat(10_000)}\r\n220 ready\x9b2J\r\n`);
      s.on('data', (d: Buffer) => {
        const line = d.toString();
        if (line.startsWith('EHLO')) s.write('250-relay\r\n250 AUTH PLAIN LOGIN\r\n');
        else if (line.startsWith('AUTH PLAIN '))
          s.write(`535-\x1b[2Jfirst line\r\n535 5.7.8 \x1b]52;c;cHduZWQ=\x07no ${line.slice(11).trim()} ${PASSWORD}\r\n`);
      });
    });
    const err = (await verifyRelay(login(host), { tlsLevel: 'may', timeoutMs: 5_000 }).catch((e: unknown) => e)) as Error;
    expect(err.message).toBe('login as alice refused: 535 (text withheld: it repeats the credentials)');
  });

  it('reports a hostile refusal without credentials as code plus clipped printable text', async () => {
    const host = await relay((s) => {
      s.write('220 ok\r\n');
      s.on('data', (d: Buffer) => {
        if (d.toString().startsWith('EHLO')) s.write('250-relay\r\n250 AUTH PLAIN\r\n');
        else s.write(`535 \x1b[31mdenied\x1b[0m\x07 ${'z'.repeat(10_000)}\r\n`);
      });
    });
    const err = (await verifyRelay(login(host), { tlsLevel: 'may', timeoutMs: 5_000 }).catch((e: unknown) => e)) as Error;
    expect(err.message).toMatch(/^login as alice refused: 535 denied z+\.\.\.$/);
    expect(err.message).toMatch(PRINTABLE);
    expect(err.message.length).toBeLessThan(250);
  });

  it('survives a relay that sends an endless line and then hangs up', async () => {
    const host = await relay((s) => {
      s.write('220 '.padEnd(200_000, 'w'));
      setTimeout(() => s.destroy(), 50);
    });
    await expect(verifyRelay(login(host), { tlsLevel: 'may', timeoutMs: 5_000 })).rejects.toThrow(/closed the connection before its greeting/);
  });
});

/** Records of one name in the test's DNS zone; a name in the zone without a type answers NODATA, a name outside it NXDOMAIN. */
interface ZoneEntry {
  A?: string[];
  AAAA?: string[];
  MX?: [priority: number, exchange: string][];
}

const TYPES: Record<number, keyof ZoneEntry> = { 1: 'A', 28: 'AAAA', 15: 'MX' };

/** A name in DNS wire form (labels, no compression). */
function wireName(name: string): Buffer {
  return Buffer.concat([
    ...name
      .split('.')
      .filter(Boolean)
      .map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])),
    Buffer.from([0]),
  ]);
}

function rdata(type: keyof ZoneEntry, value: string | [number, string]): Buffer {
  if (type === 'A') return Buffer.from((value as string).split('.').map(Number));
  if (type === 'AAAA') {
    const [head = '', tail = ''] = (value as string).split('::');
    const h = head ? head.split(':') : [];
    const t = tail ? tail.split(':') : [];
    const groups = [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
    return Buffer.from(groups.flatMap((g) => [parseInt(g, 16) >> 8, parseInt(g, 16) & 0xff]));
  }
  const [priority, exchange] = value as [number, string];
  return Buffer.concat([Buffer.from([priority >> 8, priority & 0xff]), wireName(exchange)]);
}

/**
 * A real DNS server on a loopback UDP port answering from `zone` (or SERVFAIL for every query
 * when `zone` is 'servfail'), and node's Resolver pointed at it: the lookups verifyRelay makes
 * run over the network as in production, without the machine's own DNS. Records each query.
 */
async function dnsServer(zone: Record<string, ZoneEntry> | 'servfail'): Promise<{ resolver: Resolver; queries: string[]; close: () => Promise<void> }> {
  const queries: string[] = [];
  const server: UdpSocket = createSocket('udp4');
  server.on('message', (q, peer) => {
    const labels: string[] = [];
    let at = 12;
    while (q[at]) {
      labels.push(q.subarray(at + 1, at + 1 + q[at]!).toString());
      at += q[at]! + 1;
    }
    const question = q.subarray(12, at + 5);
    const name = labels.join('.').toLowerCase();
    const type = TYPES[q.readUInt16BE(at + 1)];
    queries.push(`${type ?? q.readUInt16BE(at + 1)} ${name}`);
    const entry = zone === 'servfail' ? undefined : zone[name];
    const rcode = zone === 'servfail' ? 2 : entry ? 0 : 3;
    const values = (entry && type ? (entry[type] ?? []) : []) as (string | [number, string])[];
    const answers = values.map((v) => {
      const data = rdata(type!, v);
      const head = Buffer.alloc(12);
      head.writeUInt16BE(0xc00c, 0);
      head.writeUInt16BE(q.readUInt16BE(at + 1), 2);
      head.writeUInt16BE(1, 4);
      head.writeUInt32BE(60, 6);
      head.writeUInt16BE(data.length, 10);
      return Buffer.concat([head, data]);
    });
    const header = Buffer.alloc(12);
    q.copy(header, 0, 0, 2);
    header.writeUInt16BE(0x8180 | rcode, 2);
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(answers.length, 6);
    server.send(Buffer.concat([header, question, ...answers]), peer.port, peer.address);
  });
  await new Promise<void>((r) => server.bind(0, '127.0.0.1', r));
  const resolver = new Resolver({ timeout: 1_000, tries: 1 });
  resolver.setServers([`127.0.0.1:${server.address().port}`]);
  return { resolver, queries, close: () => new Promise((r) => server.close(() => r())) };
}

describe('verifyRelay looks the relay up in DNS only, as Postfix does (smtp_host_lookup = dns)', () => {
  const closers: (() => Promise<void>)[] = [];
  afterEach(async () => {
    await Promise.all(closers.splice(0).map((c) => c()));
  });

  /** A loopback listener that counts connections; its port. */
  async function listener(): Promise<{ port: number; connections: () => number }> {
    let count = 0;
    const sockets = new Set<Socket>();
    const server = createServer((s) => {
      count++;
      sockets.add(s);
      s.on('error', () => undefined);
      s.write('220 listener\r\n');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    closers.push(async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    });
    return { port: (server.address() as AddressInfo).port, connections: () => count };
  }

  async function dns(zone: Record<string, ZoneEntry> | 'servfail') {
    const d = await dnsServer(zone);
    closers.push(d.close);
    return d;
  }

  const login = (host: string) => ({ host, username: 'alice', password: 'Pw-dns-51c2' });

  it('never connects to a name only /etc/hosts knows (localhost), bracketed or not', async () => {
    const { port, connections } = await listener();
    const { resolver } = await dns({});
    for (const host of [`[localhost]:${port}`, `localhost:${port}`]) {
      await expect(verifyRelay(login(host), { tlsLevel: 'may', timeoutMs: 3_000, resolver })).rejects.toThrow(
        /DNS has no address \(A or AAAA record\) for localhost, so Postfix would not find it either/,
      );
    }
    expect(connections()).toBe(0);
  });

  it('refuses a name DNS maps to a loopback address (a local resolver serving /etc/hosts), without connecting', async () => {
    const { port, connections } = await listener();
    const { resolver } = await dns({ 'relay.example.com': { A: ['127.0.1.1'] }, 'six.example.com': { AAAA: ['::1'] } });
    await expect(verifyRelay(login(`[relay.example.com]:${port}`), { tlsLevel: 'may', timeoutMs: 3_000, resolver })).rejects.toThrow(
      /DNS gives relay\.example\.com the loopback address 127\.0\.1\.1.*\[127\.0\.0\.1\]/,
    );
    await expect(verifyRelay(login(`[six.example.com]:${port}`), { tlsLevel: 'may', timeoutMs: 3_000, resolver })).rejects.toThrow(/loopback address ::1/);
    expect(connections()).toBe(0);
  });

  it("refuses this machine's own hostname and its short name before any lookup", async () => {
    const { port, connections } = await listener();
    const { resolver, queries } = await dns({});
    for (const host of [`[relay.example.com]:${port}`, `relay.example.com:${port}`, `[RELAY]:${port}`, `relay.example.com.:${port}`]) {
      await expect(verifyRelay(login(host), { tlsLevel: 'may', timeoutMs: 3_000, resolver, hostname: 'relay.example.com' })).rejects.toThrow(
        /is this machine's own hostname \(net\.hostname\)/,
      );
    }
    expect(queries).toEqual([]);
    expect(connections()).toBe(0);
  });

  it("refuses an MX that names this machine's own hostname", async () => {
    const { resolver } = await dns({ 'example.com': { MX: [[10, 'mail.example.com']] }, 'mail.example.com': { A: ['192.0.2.7'] } });
    await expect(relayTargets('example.com', resolver, 'mail.example.com')).rejects.toThrow(/mail\.example\.com is this machine's own hostname/);
  });

  it('asks for MX records of a bare name, in order of preference, and keeps each exchange name for TLS', async () => {
    const { resolver, queries } = await dns({
      'example.com': {
        MX: [
          [20, 'backup.example.com'],
          [10, 'mx.example.com'],
        ],
      },
      'mx.example.com': { A: ['192.0.2.10'], AAAA: ['2001:db8::10'] },
      'backup.example.com': { A: ['192.0.2.20'] },
    });
    expect(await relayTargets('example.com:587', resolver)).toEqual([
      { address: '192.0.2.10', servername: 'mx.example.com' },
      { address: '2001:db8::10', servername: 'mx.example.com' },
      { address: '192.0.2.20', servername: 'backup.example.com' },
    ]);
    expect(queries[0]).toBe('MX example.com');
  });

  it('falls back to the A and AAAA records of a bare name without MX, and never asks MX for a bracketed one', async () => {
    const { resolver, queries } = await dns({ 'smtp.example.com': { A: ['192.0.2.30'] } });
    expect(await relayTargets('smtp.example.com', resolver)).toEqual([{ address: '192.0.2.30', servername: 'smtp.example.com' }]);
    expect(queries.sort()).toEqual(['A smtp.example.com', 'AAAA smtp.example.com', 'MX smtp.example.com']);
    queries.length = 0;
    expect(await relayTargets('[smtp.example.com]:587', resolver)).toEqual([{ address: '192.0.2.30', servername: 'smtp.example.com' }]);
    expect(queries.sort()).toEqual(['A smtp.example.com', 'AAAA smtp.example.com']);
  });

  it('connects to a literal address as it is, without any lookup', async () => {
    const { resolver, queries } = await dns({});
    expect(await relayTargets('[192.0.2.1]:587', resolver)).toEqual([{ address: '192.0.2.1' }]);
    expect(await relayTargets('[ipv6:2001:db8::1]', resolver)).toEqual([{ address: '2001:db8::1' }]);
    expect(queries).toEqual([]);
  });

  it('refuses a null MX, and says when the lookup itself failed', async () => {
    const nullMx = await dns({ 'example.net': { MX: [[0, '']] } });
    await expect(relayTargets('example.net', nullMx.resolver)).rejects.toThrow(/example\.net publishes a null MX/);
    const broken = await dns('servfail');
    await expect(relayTargets('[relay.example.org]', broken.resolver)).rejects.toThrow(/the DNS lookup of relay\.example\.org failed \(ESERVFAIL\)/);
  });
});
