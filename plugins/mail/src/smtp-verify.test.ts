import { type AddressInfo, type Server, type Socket, createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { RELAY_TEXT_MAX, VERIFY_DEADLINE_MS, describeReply, sanitizeRelayText, verifyDeadlineMs, verifyRelay } from './smtp-verify.js';

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
    await expect(verifyRelay(login(host), { tlsLevel: 'may', timeoutMs: 1_000 })).rejects.toThrow(/no answer from 127\.0\.0\.1:\d+ within 1 s \(waiting for its greeting\)/);
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
        else if (line.startsWith('AUTH PLAIN ')) s.write(`535-\x1b[2Jfirst line\r\n535 5.7.8 \x1b]52;c;cHduZWQ=\x07no ${line.slice(11).trim()} ${PASSWORD}\r\n`);
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
