import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ExecError, exec } from './exec.js';

const dir = mkdtempSync(path.join(tmpdir(), 'scoped-exec-test-'));
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const pidFile = path.join(dir, 'bg.pid');

afterAll(() => {
  // The background process is stopped whatever happened to the test.
  const pid = Number(readFileSync(pidFile, { encoding: 'utf8', flag: 'a+' }));
  if (pid > 0 && alive(pid)) process.kill(pid, 'SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

/** A program that exits 0 at once, leaving a process in the background that holds its output for 60 s (as `postfix reload` leaves postsuper). */
const leavesBackground = (pidFile: string) => ['-c', `(sleep 60; echo late) & echo $! > ${pidFile}; echo started`];

describe('exec', () => {
  it('untilExit: done when the program exits 0, while what it left in the background still holds its output', async () => {
    await exec('sh', leavesBackground(pidFile), { untilExit: true, timeoutMs: 30_000 });
    const pid = Number(readFileSync(pidFile, 'utf8'));
    // Not cut off: the background process still runs, its output still open.
    expect(alive(pid)).toBe(true);
  }, 20_000);

  it('untilExit: a failure is still reported with its stderr', async () => {
    const err = await exec('sh', ['-c', 'echo "postfix/postfix-script: fatal: the Postfix mail system is not running" >&2; exit 1'], { untilExit: true }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ExecError);
    expect(err).toMatchObject({
      code: 1,
      message: expect.stringMatching(/exited with 1: postfix\/postfix-script: fatal: the Postfix mail system is not running/),
    });
  });

  it('without untilExit, the whole output of the program is collected', async () => {
    await expect(exec('sh', ['-c', 'printf "a\\nb\\n"; printf "warn\\n" >&2'])).resolves.toEqual({ stdout: 'a\nb\n', stderr: 'warn\n' });
  });
});
