/**
 * Attack: `scope:set mail.smart-host … --verify` pointed by an operator at a relay the attacker
 * runs. The relay hangs up before its greeting (the verification used to wait forever), says
 * nothing at all (it has one deadline, shortened here with SCOPED_VERIFY_DEADLINE_MS), or
 * answers with terminal escapes, C1 controls and a 10 KB line, then (after STARTTLS: credentials
 * are never sent without TLS) refuses the login with more of them or with the credentials echoed back. Each time cpcmd exits with the
 * invalid-value code within the deadline, nothing under the root changes, and the error and
 * the audit entry carry the relay's code and sanitized text only.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HostileRelay, type HostileScript } from '../helpers/hostile-relay.js';
import { CPCMD_BIN, type RunResult, type Scoped, cleanEnv, run, scoped, treeDigest } from '../helpers/scoped.js';

const INVALID = 6;
const DEADLINE_MS = 2_000;
/** cpcmd's own start-up and the round trip, on top of the deadline. */
const SLACK_MS = 4_000;
const USER = 'alice';
const PASSWORD = 'Pw-attack-9c41e0';
const PRINTABLE_LINE = /^[\x20-\x7e]*$/;

/** Escapes a hostile relay puts in its text: clear screen, title (OSC 0), clipboard (OSC 52), 8-bit CSI and OSC, BEL, DEL. */
const HOSTILE = '\x1b[2J\x1b[H\x1b]0;pwned\x07\x1b]52;c;cm0gLXJmIC8=\x1b\\\x9b31m\x9d2;title\x9c\x07\x7f\x85';

describe('attack: --verify against a hostile relay', () => {
  let d: Scoped;
  let operator = '';
  const hostile: HostileRelay[] = [];

  beforeAll(async () => {
    d = await scoped({ postfix: true, env: { SCOPED_VERIFY_DEADLINE_MS: String(DEADLINE_MS) } });
    const made = await d.cpcmd(['token:create', '--role', 'operator', '--scopes', 'mail.*', '--name', 'relay-attacker', '-o', 'json']);
    operator = JSON.parse(made.stdout).token as string;
  });

  afterAll(async () => {
    await Promise.all(hostile.map((h) => h.close()));
    await d?.close();
  }, 60_000);

  /** The attacker's relay, following a script; its relayhost value. */
  async function relay(script: HostileScript): Promise<string> {
    const r = await HostileRelay.start(script);
    hostile.push(r);
    return r.relayhost;
  }

  /** A relay that offers STARTTLS (TLS level encrypt takes its self-signed certificate) and then refuses the login. */
  const refusingRelay = (greeting: string, auth: (authLine: string) => string) => relay({ greeting, auth });

  /** The attacker's cpcmd over TCP with the operator token; killed if it outlives the deadline. */
  async function verifyAgainst(relayhost: string, output: 'cli' | 'json'): Promise<RunResult & { ms: number }> {
    const env = cleanEnv({ SCOPED_URL: d.url, SCOPED_TOKEN: operator });
    const started = Date.now();
    const r = await run(process.execPath, [CPCMD_BIN, 'scope:set', 'mail.smart-host', `'${relayhost}'`, USER, PASSWORD, '--verify', '-o', output], {
      env,
      timeoutMs: DEADLINE_MS + SLACK_MS,
    });
    return { ...r, ms: Date.now() - started };
  }

  /** Everything under the root but the store, which records the refusal in the audit. */
  function rootFiles(): Promise<Record<string, string>> {
    return treeDigest(d.root, { skip: ['var/lib/scoped'] });
  }

  /** Every string in a JSON value. */
  function strings(v: unknown): string[] {
    if (typeof v === 'string') return [v];
    if (Array.isArray(v)) return v.flatMap(strings);
    if (v && typeof v === 'object') return Object.values(v).flatMap(strings);
    return [];
  }

  function expectSanitized(text: string, where: string): void {
    for (const line of text.split('\n')) {
      expect(line, `${where}: ${JSON.stringify(line)}`).toMatch(PRINTABLE_LINE);
      expect(line.length, `${where}: a line of ${line.length} characters`).toBeLessThan(500);
    }
    expect(text, where).not.toContain(PASSWORD);
    expect(text, where).not.toContain(Buffer.from(`\0${USER}\0${PASSWORD}`).toString('base64').replace(/=+$/, ''));
    expect(text, where).not.toMatch(/pwned|title|cm0gLXJmIC8/);
  }

  /**
   * Run the attack in both output forms: each exits 6 within the deadline, changes nothing
   * under the root, and its error line and its audit entry show only sanitized text.
   */
  async function attack(relayhost: string, why: RegExp): Promise<void> {
    for (const output of ['cli', 'json'] as const) {
      const before = await rootFiles();
      const since = new Date().toISOString();
      const r = await verifyAgainst(relayhost, output);
      expect(r.code, `exit ${r.code ?? r.signal} after ${r.ms} ms\nstdout: ${r.stdout}\nstderr: ${JSON.stringify(r.stderr)}`).toBe(INVALID);
      expect(r.ms).toBeLessThan(DEADLINE_MS + SLACK_MS);
      expect(await rootFiles()).toEqual(before);
      const shown = r.stderr;
      expect(shown).toMatch(/--verify failed, nothing was changed/);
      expect(shown).toMatch(why);
      expect(r.stdout).toBe('');
      expectSanitized(shown, `cpcmd -o ${output}`);

      // Refusals are kept apart from the history, one row per caller, action and target: this one was refused last.
      const audit = await d.cpcmd(['audit:list', '--refused', '--scope', 'mail.smart-host', '--since', since, '-o', 'json']);
      const entries = JSON.parse(audit.stdout) as { last: string; reason?: string }[];
      expect(entries, audit.stdout).toHaveLength(1);
      expect(entries[0]!.last >= since, audit.stdout).toBe(true);
      expect(entries[0]!.reason).toMatch(why);
      expectSanitized(strings(entries[0]).join('\n'), 'the audit entry');
    }
  }

  it('(a) a relay that hangs up before its greeting: refused at once, not a hang', async () => {
    const host = await relay({ hangUp: true });
    await attack(host, /closed the connection before its greeting/);
  });

  it('(b) a relay that accepts and says nothing: refused at the deadline', async () => {
    const host = await relay({});
    await attack(host, new RegExp(`no answer from 127\\.0\\.0\\.1:\\d+ within ${DEADLINE_MS / 1000} s`));
  });

  it('(c) a greeting stuffed with escapes, C1 controls and a 10 KB line, then a hostile refusal of AUTH: only the code and clipped printable text', async () => {
    const greeting = `220-${HOSTILE}${'G'.repeat(10_240)}\r\n220-${HOSTILE}\r\n220 ${HOSTILE}hostile.example.test ESMTP\r\n`;
    const host = await refusingRelay(greeting, () => `535-${HOSTILE}${'R'.repeat(10_240)}\r\n535 5.7.8 ${HOSTILE}go away ${'Z'.repeat(10_240)}\r\n`);
    await attack(host, /login as alice refused: 535 5\.7\.8 go away Z+\.\.\./);
  });

  it('(d) a refusal that echoes the login back: the credentials are withheld', async () => {
    const host = await refusingRelay('220 hostile.example.test ESMTP\r\n', (authLine) => `535 5.7.8 ${authLine} means user ${USER} password ${PASSWORD}\r\n`);
    await attack(host, /login as alice refused: 535 \(text withheld: it repeats the credentials\)/);
  });
});
