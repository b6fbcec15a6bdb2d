/**
 * A script captures a new token with T=$(cpcmd token:create ...) and uses it at once: the token
 * alone on stdout, the "shown once" note on stderr. A SCOPED_TOKEN that holds more than a token
 * (a line break, a control character) is refused by cpcmd with a usage error that says what to
 * do, never Node's header error. Real cpcmd in a real shell, a real scoped.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectExit, expectRefused } from '../helpers/expect.js';
import { CPCMD_BIN, type Scoped, cleanEnv, run, scoped } from '../helpers/scoped.js';

const TOKEN = /^scoped_[A-Za-z0-9_-]+$/;

describe('capturing a new token in a script', { timeout: 60_000 }, () => {
  // Each test creates tokens of its own and reads the hostname, which none changes.
  let d: Scoped;
  beforeAll(async () => {
    d = await scoped({ files: { 'etc/hostname': 'capture.example.org\n' } });
  });
  afterAll(() => d?.close(), 60_000);

  it('prints the token alone on stdout and the note on stderr', async () => {
    const r = await d.cpcmd(['token:create', '--role', 'reader', '--name', 'alone']);
    expectExit(r, 'ok');
    const lines = r.stdout.split('\n');
    expect(lines, r.stdout).toHaveLength(2);
    expect(lines[0]).toMatch(TOKEN);
    expect(lines[1]).toBe('');
    expect(r.stderr).toBe('(alone, reader; shown once: store it now)\n');
  });

  it('T=$(cpcmd token:create ...) then SCOPED_TOKEN=$T cpcmd works in a shell', async () => {
    const script = [
      'set -e',
      'T=$(SCOPED_SOCKET="$SOCK" "$NODE" "$CPCMD" token:create --role reader --name script)',
      'SCOPED_URL="$URL" SCOPED_TOKEN="$T" "$NODE" "$CPCMD" scope:get net.hostname',
    ].join('\n');
    const r = await run('sh', ['-c', script], { env: cleanEnv({ SOCK: d.socket, NODE: process.execPath, CPCMD: CPCMD_BIN, URL: d.url }) });
    expectExit(r, 'ok');
    expect(r.stdout).toBe('capture.example.org\n');
    expect(r.stderr).toBe('(script, reader; shown once: store it now)\n');
  });

  it('-o json is unchanged: the whole answer on stdout, nothing on stderr', async () => {
    const r = await d.cpcmd(['token:create', '--role', 'reader', '--name', 'json', '-o', 'json']);
    expectExit(r, 'ok');
    expect(JSON.parse(r.stdout)).toMatchObject({ token: expect.stringMatching(TOKEN), name: 'json', role: 'reader' });
    expect(r.stderr).toBe('');
  });

  it.each([
    ['a line break (the token and its note, as captured before)', '\n(old, reader; shown once: store it now)', 'a line break'],
    ['a trailing line break', '\n', 'a line break'],
    ['an escape character', '\u001b[2J', 'a control character'],
    ['a space', ' x', 'a space'],
  ])('refuses a SCOPED_TOKEN with %s with a usage error, on both paths', async (_name, tail, what) => {
    const created = await d.cpcmd(['token:create', '--role', 'reader', '-o', 'json']);
    expectExit(created, 'ok');
    const good = (JSON.parse(created.stdout) as { token: string }).token;
    for (const oclif of [false, true]) {
      const r = await d.cpcmd(['scope:get', 'net.hostname'], { url: d.url, token: `${good}${tail}`, oclif });
      expectRefused(r, 'usage');
      expect(r.stderr).toBe(
        `cpcmd: SCOPED_TOKEN holds more than a token: it has ${what}, which no token has\n` +
          'hint: set it to the token alone, as cpcmd token:create prints it on stdout: export SCOPED_TOKEN=$(cpcmd token:create --role reader)\n',
      );
    }
  });
});
