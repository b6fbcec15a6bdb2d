/**
 * What the spam filter tests share: a scoped on a sandbox root with a running, private Postfix
 * (its smtpd on loopback), the host's filter programs linked into the root, and a local SMTP sink
 * as the smart host every accepted message is delivered to. The filter daemons scoped starts
 * there are found by their pid files under the root and by their command lines, and whatever
 * is left of them when a test ends is stopped.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import path from 'node:path';
import { expectExit } from '../helpers/expect.js';
import { linkFilterPrograms } from '../helpers/filters.js';
import { alive, killPids, pidsMentioning } from '../helpers/proc.js';
import { RelaySink } from '../helpers/relay.js';
import { type Scoped, mustRun, scoped, waitFor } from '../helpers/scoped.js';

/** SpamAssassin's and rspamd's test pattern: any filter calls a message with it spam. */
export const GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X';

/** An ordinary text with enough words for a Bayes learner (rspamd wants at least 11 tokens). */
export const HAM_TEXT =
  'Hello Sam, the minutes of yesterday afternoon meeting are attached below. We agreed to move the quarterly review ' +
  'to Thursday morning, and Maria will book the small room on the second floor. Please send me your slides by Wednesday.';

export interface FilterBox extends AsyncDisposable {
  d: Scoped;
  relay: RelaySink;
  root: string;
}

/** A scoped with a running Postfix under its root, the filter programs linked in, and outbound mail going to a sink. */
export async function filterBox(opts: { config?: Record<string, unknown> } = {}): Promise<FilterBox> {
  const relay = await RelaySink.start({ auth: false });
  let d: Scoped | undefined;
  try {
    d = await scoped({
      postfix: { smtpd: true, running: true },
      listen: 'none',
      setup: (root) => linkFilterPrograms(root),
      ...(opts.config ? { config: opts.config } : {}),
    });
    expectExit(await d.cpcmd(['scope:set', 'mail.smart-host', relay.relayhostWord]), 'ok');
    // The test client on 127.0.0.1 relays without logging in, as a trusted host on the network would.
    expectExit(await d.cpcmd(['scope:set', 'cp.bootstrapper', 'postfix_relay_mynetworks', 'true']), 'ok');
  } catch (err) {
    await d?.close().catch(() => undefined);
    await relay.close();
    throw err;
  }
  const box: Scoped = d;
  return {
    d: box,
    relay,
    root: box.root,
    async [Symbol.asyncDispose]() {
      try {
        // scoped first (its supervisor would start again a filter daemon stopped under it), then
        // the daemons it left (found by the pid files under the root), then the root itself.
        await box.stop();
        await stopFilterDaemons(box.root);
        await box.close();
      } finally {
        await relay.close();
      }
    },
  };
}

/** The pid files of the daemons scoped runs on a sandbox root. */
const PID_FILES = ['run/rspamd/rspamd.pid', 'run/spamd.pid', 'run/redis/redis-server.pid'];

/** A process that exists and has not exited (a zombie waits only for its parent to collect its status). */
function live(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

function parentOf(pid: number): number | undefined {
  try {
    // The command name in parentheses may hold spaces; the parent pid follows the closing one.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

/**
 * Every live process of the root's filter daemons: the ones their pid files name, the ones whose
 * command line names the root's filter config or pid files, and all their children (rspamd's and
 * spamd's workers rename themselves).
 */
export function filterPids(root: string): number[] {
  const mains = new Set<number>();
  for (const f of PID_FILES) {
    try {
      const pid = Number(readFileSync(path.join(root, f), 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0 && alive(pid)) mains.add(pid);
    } catch {
      // no pid file
    }
  }
  for (const needle of ['etc/rspamd', 'run/spamd.pid', 'run/redis']) for (const pid of pidsMentioning(path.join(root, needle))) mains.add(pid);
  const all = new Set(mains);
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const parent = parentOf(Number(entry));
    if (parent !== undefined && mains.has(parent)) all.add(Number(entry));
  }
  return [...all].filter(live).sort((a, b) => a - b);
}

/** The filter daemons' processes as `pid command line`, for a readable failure. */
export function filterProcesses(root: string): string[] {
  return filterPids(root).map((pid) => {
    try {
      return `${pid} ${readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0+/g, ' ').trim()}`;
    } catch {
      return `${pid} (gone)`;
    }
  });
}

/** Stop whatever of the root's filter daemons still runs: SIGTERM, then SIGKILL after 10 s. */
export async function stopFilterDaemons(root: string): Promise<void> {
  const pids = filterPids(root);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // gone
    }
  }
  await waitFor('the filter daemons to exit', () => (pids.some(alive) ? undefined : true), 10_000).catch(() => killPids(pids));
}

/** The sandbox root's private endpoints, as scoped chose them. */
export async function endpoints(root: string): Promise<Record<string, { host: string; port: number }>> {
  return JSON.parse(await readFile(path.join(root, 'var/lib/scoped/ports.json'), 'utf8'));
}

/** rspamd's learned-message count, from `rspamc stat` against the root's controller. */
export async function rspamdLearned(root: string): Promise<number> {
  const { 'rspamd.controller': c } = await endpoints(root);
  const out = await mustRun(path.join(root, 'usr/bin/rspamc'), ['-h', `${c!.host}:${c!.port}`, 'stat'], { timeoutMs: 30_000 });
  const m = /^Messages learned: (\d+)/m.exec(out);
  if (!m) throw new Error(`rspamc stat printed no learned count:\n${out}`);
  return Number(m[1]);
}

export interface Submission {
  /** Every final reply line, in order (the last ones answer DATA and QUIT). */
  replies: string[];
  /** The reply to the end of DATA: where a milter's verdict shows. */
  dataReply: string | undefined;
  id: string;
}

/** Submit one message over SMTP to the root's smtpd, as a client on 127.0.0.1 would; the replies are the caller's to judge. */
export function submit(port: number, opts: { body: string; subject?: string; from?: string; to?: string }): Promise<Submission> {
  const from = opts.from ?? 'sender@sandbox.test';
  const to = opts.to ?? 'rcpt@remote.test';
  const id = `<${Date.now()}.${Math.random().toString(36).slice(2)}@sandbox.test>`;
  const date = new Date().toUTCString().replace('GMT', '+0000');
  const headers = [`From: Sender <${from}>`, `To: <${to}>`, `Subject: ${opts.subject ?? 'spam filter e2e'}`, `Message-ID: ${id}`, `Date: ${date}`];
  const body = opts.body.replace(/\r?\n/g, '\r\n').replace(/^\./gm, '..');
  const data = `${headers.join('\r\n')}\r\n\r\n${body}\r\n.`;
  const script = ['EHLO client.sandbox.test', `MAIL FROM:<${from}>`, `RCPT TO:<${to}>`, 'DATA', data, 'QUIT'];
  return new Promise((resolve, reject) => {
    const replies: string[] = [];
    let dataReply: string | undefined;
    const sock = connect({ host: '127.0.0.1', port });
    const timer = setTimeout(() => sock.destroy(new Error(`no complete SMTP dialogue within 60 s: ${replies.join(' | ')}`)), 60_000);
    let buffer = '';
    let step = 0;
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => {
      buffer += chunk;
      for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
        const line = buffer.slice(0, nl).replace(/\r$/, '');
        buffer = buffer.slice(nl + 1);
        if (/^\d{3}-/.test(line)) continue;
        replies.push(line);
        if (step === 5) dataReply = line;
        const code = Number(line.slice(0, 3));
        if (step >= script.length) continue;
        if (code >= 400 && script[step] !== 'QUIT') step = script.length - 1;
        sock.write(`${script[step++]}\r\n`);
      }
    });
    sock.once('error', (err) => (clearTimeout(timer), reject(err)));
    sock.once('close', () => (clearTimeout(timer), resolve({ replies, dataReply, id })));
  });
}

/** The message with this Message-ID at the sink, once it arrives. */
export function delivered(relay: RelaySink, id: string, timeoutMs = 60_000) {
  return waitFor(`the message ${id} at the sink`, () => relay.messages.find((m) => m.raw.includes(id)), timeoutMs);
}

/** The header block of a raw message. */
export function headersOf(raw: string): string {
  return raw.split(/\r?\n\r?\n/, 1)[0]!;
}
