/**
 * Attack (i12): a reader asks mail.deliverability about a domain whose DNS answers slowly (any
 * domain on the internet can: its owner runs the authoritative server). The report's 30 s
 * deadline cancels only the lookups pending when it fires; the SPF evaluations after it start
 * new ones, so the report runs past the scope's own limit (45 s), and a scope that overruns its
 * limit takes its plugin out of service: every mail scope (mail.smart-host, mail.transport, ...)
 * answers plugin-error until scoped restarts. Here the world's DNS is a tiny server on loopback
 * that answers after 1 s, each SPF record including the next.
 */
import { type RemoteInfo, type Socket, createSocket } from 'node:dgram';
import { describe, expect, it } from 'vitest';
import { expectExit } from '../helpers/expect.js';
import { scoped } from '../helpers/scoped.js';

/** Every answer takes this long (c-ares shortens its timeout to what a server has shown it, so the fast names are slow too). */
const DELAY_MS = 1_000;

function qname(msg: Buffer): { name: string; end: number } {
  const labels: string[] = [];
  let i = 12;
  for (let n = 0; n < 64 && i < msg.length && msg[i] !== 0; n++) {
    const len = msg[i]!;
    labels.push(msg.subarray(i + 1, i + 1 + len).toString('latin1'));
    i += 1 + len;
  }
  return { name: labels.join('.').toLowerCase(), end: i + 1 };
}

function answer(query: Buffer, rdatas: Buffer[], type: number, nxdomain: boolean): Buffer {
  const { end } = qname(query);
  const question = query.subarray(12, end + 4);
  const header = Buffer.alloc(12);
  query.copy(header, 0, 0, 2);
  header.writeUInt16BE(nxdomain ? 0x8183 : 0x8180, 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(rdatas.length, 6);
  const rrs = rdatas.map((rd) => {
    const rr = Buffer.alloc(12);
    rr.writeUInt16BE(0xc00c, 0);
    rr.writeUInt16BE(type, 2);
    rr.writeUInt16BE(1, 4);
    rr.writeUInt32BE(60, 6);
    rr.writeUInt16BE(rd.length, 10);
    return Buffer.concat([rr, rd]);
  });
  return Buffer.concat([header, question, ...rrs]);
}

const txt = (s: string) => Buffer.concat([Buffer.from([s.length]), Buffer.from(s)]);

/** The world's DNS: mail.example.test at once, every answer after DELAY_MS. */
async function slowDns(): Promise<{ server: string; queries: number } & AsyncDisposable> {
  const sock: Socket = createSocket('udp4');
  const timers = new Set<NodeJS.Timeout>();
  const state = { server: '', queries: 0 };
  sock.on('message', (msg: Buffer, from: RemoteInfo) => {
    if (msg.length < 17) return;
    state.queries++;
    const { name, end } = qname(msg);
    const type = msg.readUInt16BE(end);
    let reply: Buffer;
    const delay = DELAY_MS;
    if (name === 'mail.example.test') reply = answer(msg, type === 1 ? [1, 2, 3].map((i) => Buffer.from([192, 0, 2, i])) : [], 1, false);
    else if (name.endsWith('slow.test')) {
      const m = /^s(\d+)\.slow\.test$/.exec(name);
      const next = m ? Number(m[1]) + 1 : 1;
      reply =
        type === 16 && (m || name === 'slow.test')
          ? answer(msg, [txt(`v=spf1 include:s${next}.slow.test -all`)], 16, false)
          : answer(msg, [], type, !m && name !== 'slow.test');
    } else reply = answer(msg, [], type, true);
    const t = setTimeout(() => {
      timers.delete(t);
      sock.send(reply, from.port, from.address);
    }, delay);
    timers.add(t);
  });
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve));
  state.server = `127.0.0.1:${sock.address().port}`;
  return Object.assign(state, {
    [Symbol.asyncDispose]: async () => {
      for (const t of timers) clearTimeout(t);
      await new Promise<void>((resolve) => sock.close(() => resolve()));
    },
  });
}

describe('attack: a slow domain and mail.deliverability', { timeout: 150_000 }, () => {
  it("a reader's report on a domain with slow DNS ends by its deadline and never takes the mail plugin out of service", async () => {
    await using d = await scoped({ postfix: true });
    await using dns = await slowDns();
    expectExit(await d.cpcmd(['scope:set', 'cp.bootstrapper', 'mail_dns_servers', `['${dns.server}']`]), 'ok');
    expectExit(await d.cpcmd(['scope:set', 'net.hostname', 'mail.example.test']), 'ok');

    const made = await d.cpcmd(['token:create', '--role', 'reader', '--name', 'watcher']);
    expectExit(made, 'ok');
    const token = made.stdout.trim();

    const started = Date.now();
    const rep = await d.cpcmd(['-o', 'json', 'scope:get', 'mail.deliverability', 'slow.test'], { url: d.url, token });
    const took = Date.now() - started;

    // The mail plugin still serves its other scopes.
    const status = await d.ok<{ plugins: { name: string; status: string }[] }>('daemon.status');
    const after = await d.cpcmd(['scope:get', 'mail.transport']);
    expect({ code: after.code, stderr: after.stderr.slice(0, 300) }).toEqual({ code: 0, stderr: '' });
    expect(status.plugins.filter((p) => p.status !== 'loaded')).toEqual([]);
    expectExit(rep, 'ok');
    expect(took).toBeLessThan(40_000);
    // The report did ask the slow server, many times over (each include: a lookup of its own).
    expect(dns.queries).toBeGreaterThan(10);
    expect(rep.stdout).toContain('slow.test');
  });
});
