/**
 * Attack: get code into a plugin that scoped (running as root) loads. The attacker is anyone
 * but root who can write somewhere along a plugin's path: a plugin directory left group- or
 * world-writable, an entry file that belongs to another user (uid 65534, nobody), a plugin
 * under a world-writable directory without the sticky bit (anyone could rename it away and put
 * their own in its place), and a --plugin-dir that everyone may write to (anyone could add a
 * plugin). Each planted plugin would write a marker file as root the moment it is imported.
 * scoped must refuse each before importing anything, say why in plugin:list (which path, the
 * owner or mode found, what to run), and register none of its scopes; a clean plugin, also
 * one below a sticky root-owned directory like /tmp, still loads.
 */
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PluginDirs } from '../helpers/plugin-dir.js';
import { expectExit } from '../helpers/expect.js';
import { type Scoped, scoped } from '../helpers/scoped.js';

const NOBODY = 65534;

/** A plugin with one scope that, when imported, writes `marker` (as whoever runs scoped). */
function planted(name: string, scope: string, marker: string): string {
  const v = scope.replace(/\W/g, '_');
  return `
import { writeFileSync } from 'node:fs';
import { definePlugin, defineScope, defineVar, z } from '@scoped/sdk';

writeFileSync(${JSON.stringify(marker)}, 'this ran as root\\n');
const v = defineVar({ name: '${v}', description: 'a test var', schema: z.string(), default: '' });
const s = defineScope({
  name: '${scope}',
  summary: 'a scope of ${name}',
  help: 'test',
  usage: 'VALUE',
  examples: [],
  schema: z.string(),
  vars: ['${v}'],
  parseArgs: (args) => String(args[0]),
  toVars: (value) => ({ '${v}': value }),
  get: () => 'served by ${name}',
});
export default definePlugin({ name: '${name}', version: '1.0.0', apiVersion: 1, vars: [v], scopes: [s] });
`;
}

interface Case {
  folder: string;
  scope: string;
  /** Make it untrusted after writing it; returns the path the refusal must name. */
  spoil?: (dir: string) => Promise<string>;
  found?: RegExp;
  fix?: RegExp;
}

const CASES: Record<string, Case> = {
  clean: { folder: 'clean', scope: 'trust.clean' },
  groupWritable: {
    folder: 'group-writable',
    scope: 'trust.group',
    spoil: async (dir) => (await chmod(dir, 0o775), dir),
    found: /is writable by its group \(mode 0775\)/,
    fix: /chmod go-w /,
  },
  worldWritable: {
    folder: 'world-writable',
    scope: 'trust.world',
    spoil: async (dir) => (await chmod(dir, 0o777), dir),
    found: /is writable by everyone \(mode 0777\)/,
    fix: /chmod go-w /,
  },
  foreignEntry: {
    folder: 'foreign-entry',
    scope: 'trust.foreign',
    spoil: async (dir) => {
      const entry = path.join(dir, 'index.js');
      await chown(entry, NOBODY, NOBODY);
      return entry;
    },
    found: new RegExp(`is owned by uid ${NOBODY}, not root \\(mode 0644\\)`),
    fix: /chown root /,
  },
  openParent: {
    folder: 'open/inside',
    scope: 'trust.open',
    spoil: async (dir) => {
      const parent = path.dirname(dir);
      await chmod(parent, 0o777);
      return parent;
    },
    found: /is writable by everyone \(mode 0777\)/,
    fix: /chmod go-w /,
  },
  stickyParent: { folder: 'sticky/inside', scope: 'trust.sticky' },
};

describe('attack: plugins that someone other than root could change are not loaded', () => {
  let plugins: PluginDirs;
  let d: Scoped;
  const dirs: Record<string, string> = {};
  const named: Record<string, string> = {};
  const marker = (key: string) => path.join(plugins.dir, `ran-${key}`);
  let openPluginDir = '';

  beforeAll(async () => {
    plugins = await PluginDirs.create();
    await mkdir(path.join(plugins.dir, 'sticky'), { mode: 0o755 });
    await chmod(path.join(plugins.dir, 'sticky'), 0o1777);
    for (const [key, c] of Object.entries(CASES)) {
      dirs[key] = await plugins.write(c.folder, planted(`scoped-plugin-${c.folder.replace('/', '-')}`, c.scope, marker(key)));
      if (c.spoil) named[key] = await c.spoil(dirs[key]!);
    }
    // A --plugin-dir that everyone may write to, holding a plugin that is itself clean.
    openPluginDir = path.join(plugins.dir, 'open-plugin-dir');
    await plugins.write('open-plugin-dir/added', planted('scoped-plugin-added', 'trust.added', marker('added')));
    await chmod(openPluginDir, 0o777);

    d = await scoped({
      args: Object.values(dirs).flatMap((dir) => ['--plugin', dir]),
      config: { pluginDir: openPluginDir },
    });
  });

  afterAll(async () => {
    await d?.close();
    await plugins?.remove();
  });

  it('a clean plugin loads, also below a sticky root-owned directory; its scope serves', async () => {
    for (const key of ['clean', 'stickyParent']) {
      expect(existsSync(marker(key)), key).toBe(true);
      const got = await d.cpcmd(['scope:get', CASES[key]!.scope]);
      expectExit(got, 'ok');
      expect(got.stdout).toBe(`served by scoped-plugin-${CASES[key]!.folder.replace('/', '-')}\n`);
    }
  });

  it.each(['groupWritable', 'worldWritable', 'foreignEntry', 'openParent'])(
    '%s: refused before any of it ran, the reason in plugin:list, its scope absent',
    async (key) => {
      const c = CASES[key]!;
      expect(existsSync(marker(key)), 'the planted code ran as root').toBe(false);

      const list = await d.cpcmd(['plugin:list']);
      expectExit(list, 'plugin');
      const line = list.stdout.split('\n').find((l) => l.startsWith(`${dirs[key]} `));
      expect(line, list.stdout).toBeDefined();
      expect(line).toMatch(/\sfailed\s/);
      expect(line).toContain(`untrusted: ${named[key]} `);
      expect(line).toMatch(c.found!);
      expect(line).toMatch(c.fix!);

      const json = JSON.parse((await d.cpcmd(['plugin:list', '-o', 'json'])).stdout) as {
        name: string;
        status: string;
        source?: string;
        error?: string;
        scopes: string[];
      }[];
      expect(json.find((p) => p.source === dirs[key])).toMatchObject({ status: 'failed', scopes: [], error: expect.stringMatching(c.found!) });

      expectExit(await d.cpcmd(['scope:info', c.scope]), 'notFound');
      const scopes = await d.cpcmd(['scope:list', '-o', 'json']);
      expect(scopes.stdout).not.toContain(c.scope);
      expect(d.stderr()).toMatch(new RegExp(`"msg":"plugin failed to load","plugin":"${dirs[key]}","error":"untrusted: ${named[key]} `));
    },
  );

  it('a --plugin-dir everyone may write to: none of its plugins load, the reason in plugin:list', async () => {
    expect(existsSync(marker('added')), 'the added plugin ran as root').toBe(false);
    const list = await d.cpcmd(['plugin:list']);
    const line = list.stdout.split('\n').find((l) => l.startsWith(`${openPluginDir} `));
    expect(line, list.stdout).toMatch(
      new RegExp(`failed\\s+untrusted: ${openPluginDir} is writable by everyone \\(mode 0777\\).*chmod go-w ${openPluginDir}$`),
    );
    expectExit(await d.cpcmd(['scope:info', 'trust.added']), 'notFound');
    expect(d.stderr()).toMatch(/"msg":"plugin directory refused"/);
  });
});
