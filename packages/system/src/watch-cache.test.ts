import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WatchCache } from './watch-cache.js';

describe('WatchCache', () => {
  let top: string;
  let cache: WatchCache;
  let loads: number;
  const read = (file: string) =>
    cache.get(file, 'text', async () => {
      loads++;
      try {
        return readFileSync(file, 'utf8');
      } catch {
        return null;
      }
    });

  beforeEach(() => {
    top = mkdtempSync(path.join(tmpdir(), 'scoped-watch-'));
    cache = new WatchCache(top);
    loads = 0;
  });
  afterEach(() => {
    cache.close();
    rmSync(top, { recursive: true, force: true });
  });

  it('reads a file once while nothing changes, and again after it is written', async () => {
    const file = path.join(top, 'etc/hostname');
    mkdirSync(path.dirname(file));
    writeFileSync(file, 'one\n');
    expect(await read(file)).toBe('one\n');
    expect(await read(file)).toBe('one\n');
    expect(loads).toBe(1);
    writeFileSync(file, 'two\n');
    await expect.poll(() => read(file)).toBe('two\n');
  });

  it('caches a file under a directory that does not exist yet as absent, and sees it once created', async () => {
    const file = path.join(top, 'etc/postfix/main.cf');
    expect(await read(file)).toBeNull();
    expect(await read(file)).toBeNull();
    expect(loads).toBe(1);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, 'relayhost =\n');
    await expect.poll(() => read(file)).toBe('relayhost =\n');
  });

  it('sees a whole directory replaced by another (a restore from backup)', async () => {
    const file = path.join(top, 'etc/postfix/main.cf');
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, 'old\n');
    expect(await read(file)).toBe('old\n');
    mkdirSync(path.join(top, 'restored/postfix'), { recursive: true });
    writeFileSync(path.join(top, 'restored/postfix/main.cf'), 'restored\n');
    renameSync(path.join(top, 'etc'), path.join(top, 'etc.old'));
    renameSync(path.join(top, 'restored'), path.join(top, 'etc'));
    await expect.poll(() => read(file)).toBe('restored\n');
  });
});
