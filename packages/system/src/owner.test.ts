/**
 * FileChange.owner: a file written for a daemon's user is that user's (uid and primary gid) and
 * has its mode from its first byte, never a root-owned copy first; a rollback puts back the owner
 * a file had before, as it does its bytes and mode.
 */
import { spawnSync } from 'node:child_process';
import { chown, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Change } from '@scoped/sdk';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { userIds } from './daemons.js';
import { HostSystem, parseSnapshot, serializeSnapshot } from './host.js';

const nobody = userIds('nobody')!;
const key = (content: string, owner?: string): Change => ({
  kind: 'file',
  path: '/var/lib/rspamd/dkim/example.test.key',
  content,
  mode: 0o600,
  ...(owner ? { owner } : {}),
  current: null,
});

describe('FileChange.owner', () => {
  let root: string;
  let system: HostSystem;
  const file = () => path.join(root, 'var/lib/rspamd/dkim/example.test.key');
  beforeEach(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'scoped-owner-'));
    system = new HostSystem({ root, kernelHostname: false });
  });
  afterEach(async () => {
    system.close();
    await rm(root, { recursive: true, force: true });
  });

  it('writes the file as the user and its primary group, with its mode', async () => {
    await system.apply([key('secret\n', 'nobody')]);
    const st = await stat(file());
    expect({ uid: st.uid, gid: st.gid, mode: st.mode & 0o7777 }).toEqual({ ...nobody, mode: 0o600 });
    expect(await readFile(file(), 'utf8')).toBe('secret\n');
  });

  it('the temp file already has its owner and mode when its bytes are written (a crash there leaves no root-owned copy)', async () => {
    const dist = fileURLToPath(new URL('../dist/files.js', import.meta.url));
    const script = `import { writeFileAtomic } from ${JSON.stringify(dist)}; await writeFileAtomic(${JSON.stringify(file())}, 'secret\\n', 0o600, undefined, ${JSON.stringify(nobody)});`;
    // Killed at the second crash point: right after the bytes are written, before the rename.
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, SCOPED_CRASH_AT: '2' } });
    expect(run.signal).toBe('SIGKILL');
    const dir = path.dirname(file());
    const [tmp] = (await readdir(dir)).filter((n) => n.endsWith('.tmp'));
    expect(tmp).toBeDefined();
    const st = await stat(path.join(dir, tmp!));
    expect({ uid: st.uid, gid: st.gid, mode: st.mode & 0o7777 }).toEqual({ ...nobody, mode: 0o600 });
    expect(await readFile(path.join(dir, tmp!), 'utf8')).toBe('secret\n');
  });

  it('a rollback puts back the owner, mode and bytes the file had, also through the journal', async () => {
    await mkdir(path.dirname(file()), { recursive: true });
    await writeFile(file(), 'old\n', { mode: 0o640 });
    await chown(file(), nobody.uid, nobody.gid);
    const changes = [key('new\n')];
    const snap = parseSnapshot(JSON.parse(JSON.stringify(serializeSnapshot(await system.snapshot(changes)))));
    await system.apply(changes);
    expect((await stat(file())).uid).toBe(0);
    await system.restore(snap);
    const st = await stat(file());
    expect({ uid: st.uid, gid: st.gid, mode: st.mode & 0o7777 }).toEqual({ ...nobody, mode: 0o640 });
    expect(await readFile(file(), 'utf8')).toBe('old\n');
  });

  it('an owner that is not a user is refused with a message, and nothing is written', async () => {
    await expect(system.apply([key('secret\n', 'no-such-user-here')])).rejects.toThrow(/its owner no-such-user-here is not a user on this machine/);
    await expect(stat(file())).rejects.toThrow(/ENOENT/);
  });
});
