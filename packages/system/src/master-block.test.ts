import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type Change, managedBlock } from '@scoped/sdk';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HostSystem } from './host.js';

const OPERATOR = 'smtp inet n - y - - smtpd\nmine unix - n n - - pipe\n  argv=/bin/true\n';

describe('master.block changes', () => {
  let root: string;
  let master: string;
  beforeEach(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'scoped-master-block-'));
    await mkdir(path.join(root, 'etc/postfix'), { recursive: true });
    master = path.join(root, 'etc/postfix/master.cf');
    await writeFile(master, OPERATOR, { mode: 0o640 });
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  it('two units planning blocks from the same master.cf both land, the rest stays, and a restore puts the file back', async () => {
    const system = new HostSystem({ root, kernelHostname: false });
    const changes: Change[] = [
      { kind: 'master.block', name: 'spam filter', lines: ['a unix - n n - - pipe'], current: null },
      { kind: 'master.block', name: 'transport', lines: ['relaylim unix - - n - - smtp'], current: null },
    ];
    const snap = await system.snapshot(changes);
    await system.apply(changes);
    const text = await readFile(master, 'utf8');
    expect(text.startsWith(OPERATOR)).toBe(true);
    expect(managedBlock(text)).toEqual(['a unix - n n - - pipe']);
    expect(managedBlock(text, 'transport')).toEqual(['relaylim unix - - n - - smtp']);
    expect((await stat(master)).mode & 0o777).toBe(0o640);

    await system.apply([{ kind: 'master.block', name: 'spam filter', lines: null, current: ['a unix - n n - - pipe'] }]);
    expect(await readFile(master, 'utf8')).toBe(
      `${OPERATOR}# scoped: transport (managed by scoped; do not edit)\nrelaylim unix - - n - - smtp\n# scoped: end of transport\n`,
    );

    await system.restore(snap);
    expect(await readFile(master, 'utf8')).toBe(OPERATOR);
    system.close();
  });
});
