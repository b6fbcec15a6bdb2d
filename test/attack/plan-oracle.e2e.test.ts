/**
 * Attack: a password-guessing oracle through plans. An operator allowed mail.* sends
 * `scope.set mail.smart-host [relay.example.com]:2525 alice GUESS` with dryRun: a wrong guess
 * planned "rewrite /etc/postfix/smarthost-auth" and "postmap (credentials changed)", the right
 * guess an empty plan; without dryRun the right guess answered 'unchanged' and the wrong one
 * 'applied'. Hundreds of guesses a second, and a dry run is not even audited.
 *
 * From the attacker's side, with a real scoped on a Postfix config: the admin stores the relay
 * password; the operator tries the right one and a wrong one, with and without dryRun. The
 * answers must be the same apart from the revision they moved to. Sets without credentials,
 * reads and converges stay idempotent.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Scoped, scoped, tcpCall } from '../helpers/scoped.js';

const HOST = '[relay.example.com]:2525';
const RIGHT = 'Right-pw-4e1d';
const WRONG = 'Wrong-pw-9a07';

describe('attack: guessing the relay password from the plan of a set', { timeout: 120_000 }, () => {
  let d: Scoped;
  let operator = '';

  beforeAll(async () => {
    d = await scoped({ postfix: true });
    operator = (await d.ok('token.create', { role: 'operator', name: 'mail-guesser', scopes: ['mail.*'] })).token as string;
  });
  afterAll(() => d?.close(), 60_000);

  /** The admin stores the right password, as before every guess. */
  const storeRight = () => d.ok('scope.set', { name: 'mail.smart-host', args: [HOST, 'alice', RIGHT] });

  /** The operator's guess; the answer with the revision given relative to the one before. */
  async function guess(password: string, dryRun: boolean): Promise<unknown> {
    const before = (await d.ok<{ revision: number }>('scope.get', { name: 'mail.smart-host' })).revision;
    const a = await tcpCall(d.port!, operator, 'scope.set', { name: 'mail.smart-host', args: [HOST, 'alice', password], dryRun });
    expect(a.status).toBe(200);
    const result = (a as { result?: { revision: number } }).result;
    expect(result, JSON.stringify(a)).toBeDefined();
    expect(JSON.stringify(a)).not.toContain(password);
    return { ...result, revision: result!.revision - before };
  }

  it('a dry run answers the right and a wrong password alike', async () => {
    await storeRight();
    const right = await guess(RIGHT, true);
    await storeRight();
    const wrong = await guess(WRONG, true);
    expect(right).toEqual(wrong);
    // Both plan the credentials as new: written, postmapped, Postfix reloaded.
    const plan = (right as { plan: { summary: string }[] }).plan.map((c) => c.summary);
    expect(plan).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^rewrite \/etc\/postfix\/smarthost-auth \(mode 0600, content redacted\)$/),
        'postmap /etc/postfix/smarthost-auth (credentials given)',
      ]),
    );
    expect(plan.join('\n')).not.toMatch(/credentials changed/);
  });

  it('a set answers the right and a wrong password alike: applied, one revision on, the same plan', async () => {
    await storeRight();
    const right = await guess(RIGHT, false);
    await storeRight();
    const wrong = await guess(WRONG, false);
    expect(right).toEqual(wrong);
    expect(right).toMatchObject({ status: 'applied', revision: 1 });
  });

  it('after a set with credentials nothing drifts, and a converge or a set without credentials stays idempotent', async () => {
    await storeRight();
    const check = await d.ok<{ ok: boolean; drift: unknown[] }>('scope.check', { name: 'mail.smart-host' });
    expect(check).toEqual({ ok: true, drift: [] });
    expect(await d.ok('unit.converge', {})).toMatchObject({ status: 'unchanged', plan: [] });

    const first = await tcpCall(d.port!, operator, 'scope.set', { name: 'mail.smart-host', args: [HOST] });
    expect((first as { result?: { status: string } }).result?.status, JSON.stringify(first)).toBe('applied');
    const second = await tcpCall(d.port!, operator, 'scope.set', { name: 'mail.smart-host', args: [HOST] });
    expect((second as { result?: unknown }).result, JSON.stringify(second)).toMatchObject({ status: 'unchanged', plan: [] });
  });
});
