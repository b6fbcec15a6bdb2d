/**
 * A mistyped scope name gets a did-you-mean, as mistyped commands and vars do: the user sees
 * the name they meant and can type it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectExit } from '../helpers/expect.js';
import { type Scoped, scoped } from '../helpers/scoped.js';

describe('a mistyped scope name', { timeout: 60_000 }, () => {
  // Every test is a refusal that changes nothing, so they share one daemon.
  let d: Scoped;
  beforeAll(async () => {
    d = await scoped({ listen: 'none' });
  });
  afterAll(() => d?.close(), 60_000);

  it.each([
    [['scope:get', 'net.hostnam'], 'net.hostnam', 'net.hostname'],
    [['scope:get', 'net.hsotname'], 'net.hsotname', 'net.hostname'],
    [['scope:info', 'mail.smarthost'], 'mail.smarthost', 'mail.smart-host'],
    [['scope:set', 'mail.smart-hots', 'relay.example.test'], 'mail.smart-hots', 'mail.smart-host'],
    [['scope:check', 'nte.hostname'], 'nte.hostname', 'net.hostname'],
  ])('%j names the scope it meant', async (args, typed, meant) => {
    const r = await d.cpcmd(args);
    expectExit(r, 'notFound');
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`no scope ${typed}; did you mean ${meant}?`);
  });

  it('a name close to none gets the list command instead of a guess', async () => {
    const r = await d.cpcmd(['scope:get', 'zzz.qqqqqq']);
    expectExit(r, 'notFound');
    expect(r.stderr).toContain('no scope zzz.qqqqqq');
    expect(r.stderr).not.toContain('did you mean');
    expect(r.stderr).toContain('cpcmd scope:list');
  });
});
