/**
 * Attack: a redaction oracle. Messages used to be scrubbed by searching them for the current
 * secrets, and error messages echoed the name a caller gave, so a reader could test password
 * guesses: `scope.get name=GUESS` answered "no scope named [redacted]" exactly when GUESS was
 * the relay password. A short password was also cut out of unrelated words (postfi[redacted]).
 *
 * From the attacker's side, with a real scoped on a Postfix config: an admin stores a relay
 * password; a reader (and an operator limited to net.*) send the password and a wrong guess
 * of the same shape as names to every method that takes one. The answers must be the same for
 * both, nothing may say [redacted] where no secret field is, and words that contain a short
 * password come out whole in answers, plans and the audit trail.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Scoped, scoped, tcpCall } from '../helpers/scoped.js';

const REDACTED = '[redacted]';
const HOST = '[relay.example.test]:587';

/** Each way a caller can put a name in front of the daemon; G is the guess. */
const probes: [string, (g: string) => Record<string, unknown>][] = [
  ['scope.get', (g) => ({ name: g })],
  ['scope.info', (g) => ({ name: g })],
  ['scope.check', (g) => ({ name: g })],
  ['scope.get', (g) => ({ name: 'cp.bootstrapper', args: [g] })],
  ['var.get', (g) => ({ name: g })],
  ['scope.set', (g) => ({ name: g, args: ['x.example.test'] })],
  ['scope.set', (g) => ({ name: 'cp.bootstrapper', value: { var: g, value: 1 } })],
  ['scope.reset', (g) => ({ name: g })],
  ['scope.adopt', (g) => ({ name: g })],
  ['var.set', (g) => ({ name: g, value: 1 })],
  ['unit.converge', (g) => ({ units: [g] })],
  ['job.get', (g) => ({ id: g })],
  ['job.cancel', (g) => ({ id: g })],
  ['audit.list', (g) => ({ since: g })],
];

/** The same guess, one character off: same length, same kind of character. */
const wrongGuess = (pw: string) => pw.slice(0, -1) + (pw.at(-1) === 'x' ? 'z' : pw.at(-1) === '3' ? '4' : 'x');

describe('attack: guessing the relay password through redacted error messages', { timeout: 120_000 }, () => {
  let d: Scoped;
  const tok = { reader: '', netOperator: '', operator: '' };

  beforeAll(async () => {
    d = await scoped({ postfix: true });
    tok.reader = (await d.ok('token.create', { role: 'reader', name: 'guesser' })).token;
    tok.netOperator = (await d.ok('token.create', { role: 'operator', name: 'net-op', scopes: ['net.*'] })).token;
    tok.operator = (await d.ok('token.create', { role: 'operator', name: 'op' })).token;
  });
  afterAll(() => d?.close(), 60_000);

  for (const password of ['Tr0ub4dor&3', 'fix']) {
    it(`answers the right and a wrong guess of ${JSON.stringify(password)} alike, for every token and method`, async () => {
      await d.ok('scope.set', { name: 'mail.smart-host', value: { host: HOST, username: 'alice', password } });
      const wrong = wrongGuess(password);
      for (const [who, token] of Object.entries(tok)) {
        for (const [method, params] of probes) {
          const right = await tcpCall(d.port!, token, method, params(password));
          const other = await tcpCall(d.port!, token, method, params(wrong));
          const rightText = JSON.stringify(right).split(password).join('GUESS');
          const otherText = JSON.stringify(other).split(wrong).join('GUESS');
          expect(rightText, `${who} ${method} ${JSON.stringify(params('GUESS'))}`).toBe(otherText);
          expect(rightText, `${who} ${method}`).not.toContain(REDACTED);
        }
      }
    });
  }

  it('keeps words that contain a short password whole: answers, plans, errors, the audit trail', async () => {
    await d.ok('scope.set', { name: 'mail.smart-host', value: { host: HOST, username: 'alice', password: 'fix' } });
    // A plan names /etc/postfix/smarthost-auth.
    const dry = await tcpCall(d.port!, tok.operator, 'scope.set', {
      name: 'mail.smart-host',
      value: { host: '[other.example.test]:587', username: 'bob', password: 'fix' },
      dryRun: true,
    });
    expect(JSON.stringify(dry)).toMatch(/\/etc\/postfix\/smarthost-auth/);
    // A did-you-mean hint names postfix_smarthost.
    const hint = await tcpCall(d.port!, tok.reader, 'scope.get', { name: 'cp.bootstrapper', args: ['postfix_smarthos'] });
    expect(JSON.stringify(hint)).toMatch(/did you mean postfix_smarthost\?/);
    // A refused set of a postfix_ var, recorded with its reason.
    const refused = await tcpCall(d.port!, tok.operator, 'var.set', { name: 'postfix_relay_mynetworks', value: 'yes please' });
    expect(refused).toMatchObject({ error: { message: expect.stringMatching(/postfix_relay_mynetworks/) } });
    const audit = await tcpCall(d.port!, tok.reader, 'audit.list', { limit: 1_000, refused: true });
    const entry = (audit as { result: { refusals: { action: string; target: string; reason?: string }[] } }).result.refusals.findLast(
      (e) => e.action === 'var.set' && e.target === 'postfix_relay_mynetworks',
    );
    expect(entry?.reason).toMatch(/postfix_relay_mynetworks/);
    // Nothing anywhere is cut: [redacted] stands only for the password field itself.
    for (const text of [JSON.stringify(dry), JSON.stringify(hint), JSON.stringify(refused), JSON.stringify(audit)]) {
      expect(text).not.toMatch(/\w\[redacted\]|\[redacted\]\w/);
    }
    const got = await tcpCall(d.port!, tok.reader, 'scope.get', { name: 'mail.smart-host' });
    expect(got).toMatchObject({ result: { value: { host: HOST, username: 'alice', password: REDACTED } } });
  });

  it('never echoes a name that fails the name grammar', async () => {
    const hostile = 'x\u001b[2J\n<script>' + 'y'.repeat(5_000);
    for (const [method, params] of probes) {
      const a = await tcpCall(d.port!, tok.reader, method, params(hostile));
      const text = JSON.stringify(a);
      expect(text, method).not.toContain('<script>');
      expect(text, method).not.toContain('yyyyyyyy');
    }
  });
});
