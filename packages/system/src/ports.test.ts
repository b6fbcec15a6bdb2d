/**
 * A sandbox root's ports file is read back into rspamd's UCL files, master.cf's pipe argv and
 * main.cf: an entry whose host is not an IP address (quotes, spaces, newlines, a name) is not
 * trusted, and its endpoint is chosen again.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PORTS_FILE, sandboxEndpoints } from './daemons.js';

let root: string | undefined;
afterEach(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

describe('sandboxEndpoints', () => {
  it('chooses again an endpoint whose host in ports.json is not an IP address', async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'scoped-ports-'));
    const file = path.join(root, PORTS_FILE);
    await mkdir(path.dirname(file), { recursive: true });
    const hostile = {
      'rspamd.milter': { host: '127.0.0.1";\nupstream "evil" {', port: 21000 },
      spamd: { host: '127.0.0.1 --rspamc /tmp/x --controller 127.0.0.1', port: 21001 },
      redis: { host: 'redis.attacker.example', port: 21002 },
      'rspamd.normal': { host: '127.0.0.1', port: 21003 },
    };
    await writeFile(file, JSON.stringify(hostile));
    const e = await sandboxEndpoints(root);
    for (const name of Object.keys(e) as (keyof typeof e)[]) expect(e[name].host, name).toBe('127.0.0.1');
    expect(e['rspamd.normal'].port).toBe(21003);
    expect(JSON.parse(await readFile(file, 'utf8'))['rspamd.milter'].host).toBe('127.0.0.1');
  });
});
