/**
 * Attack: stealing the stored relay password with scope.adopt (issue 9, item 2).
 *
 * Before the fix, when main.cf's relayhost had no entry in the credentials map, adopt took the
 * map's only entry (or kept the stored credentials) and re-keyed it to that host: the real
 * password moved to whatever relayhost a hand edit named, and Postfix logged in there with it.
 *
 * From the attacker's side: the admin stores credentials for relay A; relayhost is then
 * hand-edited to B, a relay the attacker runs (a real SMTP sink that records every login);
 * an operator limited to mail.* runs `cpcmd scope:check --adopt mail.smart-host`. The
 * credentials stay with A: B has no map entry and no stored password, the user is told, and
 * the running Postfix delivers to B without ever sending the password there.
 */
import { existsSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RELAY_PASSWORD, RELAY_USER, RelaySink } from '../helpers/relay.js';
import { expectExit } from '../helpers/expect.js';
import { type Postfix, type RunResult, type Scoped, cpcmd, mustRun, scoped, waitFor } from '../helpers/scoped.js';

let box: Postfix;
let d: Scoped;
/** Where the admin's credentials belong (never contacted here). */
const HOST_A = '[relay-a.example.test]:587';
let relayB: RelaySink;
let operator = '';

const expectOk = (r: RunResult) => expectExit(r, 'ok');

/** The credentials map's lines, or none when it does not exist. */
const authLines = () => (existsSync(box.authMap) ? readFileSync(box.authMap, 'utf8').split('\n').filter(Boolean) : []);
const relayhost = async () => (await box.postconf(['-h', 'relayhost'])).trim();
const stored = async () => (await d.ok('var.get', { name: 'postfix_smarthost' })).value;

/** Submit a message through the sandbox's sendmail. */
async function sendmail(): Promise<void> {
  const body = ['From: sender@sandbox.test', 'To: rcpt@remote.test', 'Subject: adopt attack', '', 'hello', ''].join('\n');
  await mustRun('sendmail', ['-C', box.dir, '-f', 'sender@sandbox.test', 'rcpt@remote.test'], { input: body });
}

afterAll(async () => {
  await d?.close();
  await relayB?.close();
}, 60_000);

describe('scope.adopt never moves the relay password to another host', { timeout: 90_000 }, () => {
  beforeAll(async () => {
    relayB = await RelaySink.start();
    d = await scoped({ postfix: { running: true } });
    box = d.postfix;
    const t = await d.cpcmd(['token:create', '--role', 'operator', '--scopes', 'mail.*', '-o', 'json']);
    expectOk(t);
    operator = JSON.parse(t.stdout).token;
    expectOk(await d.cpcmd(['scope:set', 'mail.smart-host', `'${HOST_A}'`, RELAY_USER, RELAY_PASSWORD]));
    expect(authLines()).toEqual([`${HOST_A} ${RELAY_USER}:${RELAY_PASSWORD}`]);
  });

  it('adopting a hand-edited relayhost with no map entry adopts no credentials and says so; Postfix never logs in to it', async () => {
    await box.postconf(['-e', `relayhost=${relayB.relayhost}`]);
    box.backdateMainCf();

    // The answer carries the note for scripts too.
    const dry = await cpcmd(['scope:check', '--adopt', 'mail.smart-host', '--dry-run', '-o', 'json'], { url: d.url, token: operator });
    expectOk(dry);
    expect(JSON.parse(dry.stdout)).toMatchObject({ status: 'planned', notes: [expect.stringMatching(/^credentials were not adopted/)] });

    const adopt = await cpcmd(['scope:check', '--adopt', 'mail.smart-host'], { url: d.url, token: operator });
    expectOk(adopt);
    expect(adopt.stderr).toMatch(/^note: credentials were not adopted: the credentials map has no entry for "\[127\.0\.0\.1\]:\d+"/m);
    expect(adopt.stdout + adopt.stderr).not.toContain(RELAY_PASSWORD);

    expect(await relayhost()).toBe(relayB.relayhost);
    expect(authLines().filter((l) => l.startsWith(relayB.relayhost))).toEqual([]);
    expect(authLines().join('\n')).not.toContain(RELAY_PASSWORD);
    expect(await stored()).toEqual({ host: relayB.relayhost, username: '', password: '' });

    // The running Postfix reaches B (which offers AUTH and wants it) and never logs in there.
    await sendmail();
    const reached = new RegExp(`relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${relayB.port}, .*status=`);
    await waitFor('Postfix to reach B', async () => (reached.test(await box.maillog()) ? true : undefined), 30_000);
    expect(relayB.auths).toEqual([]);
  });

  it('a new host without USER PASS stores no credentials: the password must be given again', async () => {
    expectOk(await d.cpcmd(['scope:set', 'mail.smart-host', `'${HOST_A}'`, RELAY_USER, RELAY_PASSWORD]));
    const set = await cpcmd(['scope:set', 'mail.smart-host', relayB.relayhostWord], { url: d.url, token: operator });
    expectOk(set);
    expect(await stored()).toEqual({ host: relayB.relayhost, username: '', password: '' });
    expect(authLines()).toEqual([]);
    expect(relayB.auths).toEqual([]);
  });

  it('with the relayhost unchanged and only the map removed by hand, adopt keeps the credentials with their own host and converge writes the map again', async () => {
    expectOk(await d.cpcmd(['scope:set', 'mail.smart-host', `'${HOST_A}'`, RELAY_USER, RELAY_PASSWORD]));
    await rm(box.authMap);
    await rm(box.authDb, { force: true });
    const adopt = await cpcmd(['scope:check', '--adopt', 'mail.smart-host'], { url: d.url, token: operator });
    expectOk(adopt);
    expect(adopt.stderr).not.toMatch(/note:/);
    expect(await stored()).toEqual({ host: HOST_A, username: RELAY_USER, password: '[redacted]' });
    expectOk(await d.cpcmd(['converge', 'mail/configure-postfix']));
    expect(authLines()).toEqual([`${HOST_A} ${RELAY_USER}:${RELAY_PASSWORD}`]);
  });
});
