import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Change } from '@scoped/sdk';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HostSystem } from './host.js';

const rewrite = (p: string, current: string): Change => ({ kind: 'file', path: p, content: 'new\n', mode: 0o644, current });

describe('HostSystem.restore', () => {
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'scoped-restore-'));
    await mkdir(path.join(root, 'etc'));
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  it('puts back every file it can when one cannot be written, then names the one that failed', async () => {
    await writeFile(path.join(root, 'etc/a'), 'A\n');
    await writeFile(path.join(root, 'etc/b'), 'B\n');
    const system = new HostSystem({ root, kernelHostname: false });
    const snap = await system.snapshot([rewrite('/etc/a', 'A\n'), rewrite('/etc/b', 'B\n')]);
    // /etc/a becomes a directory with something in it, which no file can replace; /etc/b is simply changed.
    await rm(path.join(root, 'etc/a'));
    await mkdir(path.join(root, 'etc/a'));
    await writeFile(path.join(root, 'etc/a/inside'), 'x');
    await writeFile(path.join(root, 'etc/b'), 'changed\n');

    await expect(system.restore(snap)).rejects.toThrow(/^restore \/etc\/a: /);
    expect(await readFile(path.join(root, 'etc/b'), 'utf8')).toBe('B\n');
  });
});
