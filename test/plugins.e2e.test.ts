/**
 * Third-party plugins end to end: the real scoped loads plugin packages from a directory
 * outside the repository (with `--plugin DIR` and a `pluginDir` in its YAML config), and the
 * real cpcmd drives them. A good plugin serves its scope; a plugin that throws at load, one
 * with the wrong API version and one that takes a first-party scope's name are refused with
 * the reason; a plugin whose unit never returns is stopped at its time limit and disabled.
 * Through all of it the first-party scopes keep working.
 */
import { readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PluginDirs } from './helpers/plugin-dir.js';
import { ExitCodes, expectExit } from './helpers/expect.js';
import { CPCMD_BIN, type Scoped, cleanEnv, run, scoped } from './helpers/scoped.js';

const HANG_MS = 500;

const DEMO_PLUGIN = `
import { ScopeInputError, definePlugin, defineScope, defineUnit, defineVar, z } from '@scoped/sdk';

const FILE = '/etc/demo/banner';
const Text = z.string().min(1).max(80).regex(/^[^\\r\\n\\0]*$/, 'one line of text');

const bannerVar = defineVar({ name: 'demo_banner', description: 'the login banner, or false for none', schema: z.union([Text, z.literal(false)]), default: false });

const bannerUnit = defineUnit({
  name: 'demo/banner',
  description: 'writes /etc/demo/banner',
  reads: ['demo_banner'],
  async observe({ system }) {
    return system.readFile(FILE);
  },
  plan(vars, current) {
    const v = vars.demo_banner;
    if (v === false) return current === null ? [] : [{ kind: 'file.remove', path: FILE, current }];
    const content = v + '\\n';
    return current === content ? [] : [{ kind: 'file', path: FILE, content, mode: 0o644, current }];
  },
});

const bannerScope = defineScope({
  name: 'demo.banner',
  summary: 'The login banner in /etc/demo/banner',
  help: 'Sets the one-line banner shown at login, or removes it with false.',
  usage: 'TEXT | false',
  examples: ["cpcmd scope:set demo.banner \\"'Authorized use only'\\"", 'cpcmd scope:set demo.banner false'],
  schema: z.union([Text, z.literal(false)]),
  vars: ['demo_banner'],
  parseArgs(args) {
    if (args.length !== 1) throw new ScopeInputError('demo.banner takes one TEXT (quote it) or false');
    return args[0] === false ? false : String(args[0]);
  },
  toVars: (value) => ({ demo_banner: value }),
  async get({ system }) {
    const t = await system.readFile(FILE);
    return t === null ? false : t.replace(/\\n$/, '');
  },
});

export default definePlugin({ name: 'scoped-plugin-demo', version: '1.0.0', apiVersion: 1, vars: [bannerVar], units: [bannerUnit], scopes: [bannerScope] });
`;

/** A plugin with one var, unit and scope; options vary the names, the API version and the unit's observe. */
function simplePlugin(o: {
  name: string;
  scope: string;
  varName: string;
  unit: string;
  apiVersion?: number;
  observe?: string;
  timeoutMs?: number;
  /** Vars of other plugins the unit reads too. */
  alsoReads?: string[];
  dependsOn?: string[];
}): string {
  return `
import { definePlugin, defineScope, defineUnit, defineVar, z } from '@scoped/sdk';

const v = defineVar({ name: '${o.varName}', description: 'a test var', schema: z.string(), default: '' });
const u = defineUnit({
  name: '${o.unit}',
  description: 'a test unit',
  reads: ${JSON.stringify([o.varName, ...(o.alsoReads ?? [])])},
  ${o.timeoutMs !== undefined ? `timeoutMs: ${o.timeoutMs},` : ''}
  observe: ${o.observe ?? 'async () => null'},
  plan: () => [],
});
const s = defineScope({
  name: '${o.scope}',
  summary: 'a test scope of ${o.name}',
  help: 'test',
  usage: 'VALUE',
  examples: [],
  schema: z.string(),
  vars: ['${o.varName}'],
  parseArgs: (args) => String(args[0]),
  toVars: (value) => ({ '${o.varName}': value }),
  get: () => 'unused',
});
export default definePlugin({ name: '${o.name}', version: '1.0.0', apiVersion: ${o.apiVersion ?? 1}, ${o.dependsOn ? `dependsOn: ${JSON.stringify(o.dependsOn)}, ` : ''}vars: [v], units: [u], scopes: [s] });
`;
}

let plugins: PluginDirs | undefined;
let d: Scoped;
const dirs: Record<string, string> = {};

const cp = (...args: string[]) => d.cpcmd(args);

async function pluginStatus(): Promise<{ name: string; version: string; status: string; scopes: string[]; error?: string; source?: string }[]> {
  const r = await cp('daemon:status', '-o', 'json');
  expectExit(r, 'ok');
  return JSON.parse(r.stdout).plugins;
}

describe('third-party plugins loaded from outside the repository (real scoped, real cpcmd)', () => {
  beforeAll(async () => {
    plugins = await PluginDirs.create();
    dirs.demo = await plugins.write('demo', DEMO_PLUGIN);
    dirs.api2Manifest = await plugins.write(
      'future-manifest',
      simplePlugin({ name: 'scoped-plugin-future-manifest', scope: 'future.manifest', varName: 'future_manifest', unit: 'future/manifest' }),
      { apiVersion: 2 },
    );
    dirs.api2Module = await plugins.write(
      'future-module',
      simplePlugin({ name: 'scoped-plugin-future-module', scope: 'future.module', varName: 'future_module', unit: 'future/module', apiVersion: 2 }),
    );
    dirs.collide = await plugins.write(
      'collide',
      simplePlugin({ name: 'scoped-plugin-collide', scope: 'net.hostname', varName: 'collide_value', unit: 'collide/hostname' }),
    );
    // A plugin directory (pluginDir): every subdirectory is a plugin.
    dirs.broken = await plugins.write('plugin-dir/broken', `throw new Error('broken on purpose: cannot reach its license server');\n`, {
      name: 'scoped-plugin-broken',
    });
    dirs.hang = await plugins.write(
      'plugin-dir/hang',
      simplePlugin({
        name: 'scoped-plugin-hang',
        scope: 'hang.forever',
        varName: 'hang_value',
        unit: 'hang/forever',
        timeoutMs: HANG_MS,
        observe: '() => new Promise(() => {})',
      }),
      { name: 'scoped-plugin-hang' },
    );
    d = await scoped({
      args: ['--plugin', dirs.demo, '--plugin', dirs.api2Manifest, '--plugin', dirs.api2Module, '--plugin', dirs.collide],
      config: { pluginDir: path.join(plugins.dir, 'plugin-dir') },
    });
  });

  afterAll(async () => {
    await d?.close();
    await plugins?.remove();
  });

  it('a plugin from a directory outside the repository serves its scope: scope:list, scope:info, scope:set, scope:get, plugin:list', async () => {
    const list = await cp('scope:list');
    expectExit(list, 'ok');
    expect(list.stdout).toMatch(/^demo\.banner\s+The login banner in \/etc\/demo\/banner$/m);
    expect(list.stdout).toMatch(/^net\.hostname\s/m);
    const demoOnly = await cp('scope:list', 'demo.*');
    expectExit(demoOnly, 'ok');
    expect(demoOnly.stdout.trim().split('\n')).toEqual([expect.stringMatching(/^demo\.banner\s/)]);

    const info = await cp('scope:info', 'demo.banner');
    expectExit(info, 'ok');
    expect(info.stdout).toContain('usage: cpcmd scope:set demo.banner TEXT | false');
    expect(info.stdout).toContain('Sets the one-line banner shown at login');
    expect(info.stdout).toContain('cpcmd scope:set demo.banner false');
    expect(info.stdout).toMatch(/^vars: demo_banner$/m);
    expect(info.stdout).toMatch(/^units: demo\/banner$/m);

    const banner = path.join(d.root, 'etc/demo/banner');
    const set = await cp('scope:set', 'demo.banner', "'Authorized use only'");
    expectExit(set, 'ok');
    expect(set.stdout).toMatch(/^demo\.banner: applied \(revision \d+\)$/m);
    expect(set.stdout).toContain('demo/banner: create /etc/demo/banner (mode 0644)');
    expect(await readFile(banner, 'utf8')).toBe('Authorized use only\n');
    expect((await stat(banner)).mode & 0o777).toBe(0o644);

    const get = await cp('scope:get', 'demo.banner');
    expectExit(get, 'ok');
    expect(get.stdout).toBe('Authorized use only\n');
    expect(get.stderr).toBe('');
    expect((await cp('scope:set', 'demo.banner', "'Authorized use only'")).stdout).toMatch(/^demo\.banner: unchanged$/m);

    // The plugin's own validation refuses a second line; nothing is written.
    const bad = await cp('scope:set', 'demo.banner', 'one\nsecond line');
    expectExit(bad, 'invalid');
    expect(bad.stderr).toMatch(/^cpcmd: .*one line of text/);
    expect(await readFile(banner, 'utf8')).toBe('Authorized use only\n');

    expectExit(await cp('scope:check', 'demo.banner'), 'ok');
    expectExit(await cp('scope:set', 'demo.banner', 'false'), 'ok');
    await expect(stat(banner)).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await cp('scope:get', 'demo.banner')).stdout).toBe('false\n');

    const pl = await cp('plugin:list');
    expect(pl.stdout).toMatch(/^scoped-plugin-demo@1\.0\.0\s+loaded {2}demo\.banner$/m);
    expect(pl.stdout).toMatch(/^@scoped\/plugin-net@\S+\s+loaded {2}net\.hostname$/m);
    const json = await cp('plugin:list', '-o', 'json');
    expect(JSON.parse(json.stdout)).toContainEqual({
      name: 'scoped-plugin-demo',
      version: '1.0.0',
      scopes: ['demo.banner'],
      status: 'loaded',
      source: dirs.demo,
    });
  });

  it('a plugin that throws at load, one for another API version and one that takes a first-party scope name are refused with the reason; first-party scopes work', async () => {
    const pl = await cp('plugin:list');
    // Any plugin not loaded makes plugin:list exit 11, so a script can notice.
    expectExit(pl, 'plugin');
    expect(pl.stdout).toMatch(/^scoped-plugin-broken\s+failed {2}broken on purpose: cannot reach its license server$/m);
    expect(pl.stdout).toMatch(/^scoped-plugin-future-manifest\s+failed {2}.*needs plugin API 2; this daemon speaks 1$/m);
    expect(pl.stdout).toMatch(
      /^scoped-plugin-future-module@1\.0\.0\s+failed {2}future\.module {2}plugin API version 2 is not supported \(this daemon speaks 1\)$/m,
    );
    expect(pl.stdout).toMatch(/^scoped-plugin-collide@1\.0\.0\s+failed {2}net\.hostname {2}.*scope net\.hostname is already declared by @scoped\/plugin-net/m);
    // The hanging plugin loads fine: it only hangs once its unit runs.
    expect(pl.stdout).toMatch(/^scoped-plugin-hang@1\.0\.0\s+loaded {2}hang\.forever$/m);

    const status = await pluginStatus();
    const byName = Object.fromEntries(status.map((p) => [p.name, p]));
    expect(byName['scoped-plugin-broken']).toMatchObject({ status: 'failed', source: dirs.broken, error: expect.stringContaining('broken on purpose') });
    expect(byName['scoped-plugin-future-manifest']).toMatchObject({
      status: 'failed',
      source: dirs.api2Manifest,
      error: expect.stringContaining('plugin API 2'),
    });
    expect(byName['scoped-plugin-future-module']).toMatchObject({ status: 'failed', error: expect.stringContaining('plugin API version 2') });
    expect(byName['scoped-plugin-collide']).toMatchObject({ status: 'failed', error: expect.stringContaining('net.hostname') });
    // A clear reason says who already has the name, not only that it is taken.
    expect.soft(byName['scoped-plugin-collide']!.error, 'the refusal names the plugin that already declares net.hostname').toContain('@scoped/plugin-net');
    for (const first of ['@scoped/plugin-net', '@scoped/plugin-mail', '@scoped/plugin-cp']) expect(byName[first], first).toMatchObject({ status: 'loaded' });
    const log = d.stderr();
    expect(log).toMatch(/"msg":"plugin failed to load","plugin":"scoped-plugin-broken","error":"broken on purpose/);

    // Nothing of a refused plugin is registered, not even its parts that did not collide.
    const scopes = await cp('scope:list', '-o', 'json');
    const names = (JSON.parse(scopes.stdout) as { name: string }[]).map((s) => s.name);
    expect(names.filter((n) => n === 'net.hostname')).toHaveLength(1);
    for (const n of ['future.manifest', 'future.module']) expect(names).not.toContain(n);
    const vars = JSON.parse((await cp('var:list', '-o', 'json')).stdout) as { name: string }[];
    expect(vars.map((v) => v.name)).not.toContain('collide_value');
    expectExit(await cp('converge', 'collide/hostname'), 'notFound');
    const info = await cp('scope:info', 'net.hostname');
    expect(info.stdout).toMatch(/^units: net\/hostname/m);
    expectExit(await cp('scope:get', 'future.module'), 'notFound');

    const set = await cp('scope:set', 'net.hostname', 'Mail.Example.TEST.');
    expectExit(set, 'ok');
    expect(await readFile(path.join(d.root, 'etc/hostname'), 'utf8')).toBe('mail.example.test\n');
    expect((await cp('scope:get', 'net.hostname')).stdout).toBe('mail.example.test\n');
  });

  it('a unit that never returns is stopped at its time limit and its plugin disabled; net.hostname works during and after', async () => {
    const t0 = Date.now();
    const hanging = cp('scope:set', 'hang.forever', 'x');
    // While the hanging unit holds the converge, a first-party set waits its turn, then applies.
    await new Promise((r) => setTimeout(r, 200));
    const during = cp('scope:set', 'net.hostname', 'during.example.test');
    const [h, s] = await Promise.all([hanging, during]);
    expectExit(h, 'plugin');
    expect(h.stderr).toMatch(
      new RegExp(`^cpcmd: unit hang/forever did not observe and plan within ${HANG_MS} ms; its plugin is disabled until scoped restarts`),
    );
    expect(Date.now() - t0).toBeLessThan(15_000);
    expectExit(s, 'ok');
    expect(await readFile(path.join(d.root, 'etc/hostname'), 'utf8')).toBe('during.example.test\n');

    const pl = await cp('plugin:list');
    expectExit(pl, 'plugin');
    expect(pl.stdout).toMatch(
      new RegExp(`^scoped-plugin-hang@1\\.0\\.0\\s+disabled {2}hang\\.forever {2}unit hang/forever did not observe and plan within ${HANG_MS} ms`, 'm'),
    );
    expect((await pluginStatus()).find((p) => p.name === 'scoped-plugin-hang')).toMatchObject({
      status: 'disabled',
      source: dirs.hang,
      error: expect.stringContaining('did not observe and plan'),
    });

    // Disabled: refused at once with the reason, without waiting for the unit again.
    const again = await cp('scope:set', 'hang.forever', 'y');
    expectExit(again, 'plugin');
    expect(again.stderr).toMatch(/^cpcmd: plugin scoped-plugin-hang is disabled: /);
    expectExit(await cp('scope:get', 'hang.forever'), 'plugin');

    // Everything else keeps working, whole-system commands included.
    const after = await cp('scope:set', 'net.hostname', 'after.example.test');
    expectExit(after, 'ok');
    expect(await readFile(path.join(d.root, 'etc/hostname'), 'utf8')).toBe('after.example.test\n');
    expect((await cp('scope:get', 'net.hostname')).stdout).toBe('after.example.test\n');
    const check = await cp('scope:check');
    expectExit(check, 'ok');
    expect(check.stdout.trim()).toBe('ok: no drift');
    expectExit(await cp('converge'), 'ok');
    expectExit(await cp('scope:set', 'demo.banner', "'still here'"), 'ok');
    expect(await readFile(path.join(d.root, 'etc/demo/banner'), 'utf8')).toBe('still here\n');
    expect(d.running).toBe(true);
  });
});

/** A scope whose get() never returns: scope:get and the value a set replaces both call it. */
const HANGING_GET_PLUGIN = `
import { definePlugin, defineScope, defineUnit, defineVar, z } from '@scoped/sdk';

const v = defineVar({ name: 'stuck_value', description: 'a test var', schema: z.string(), default: '' });
const u = defineUnit({ name: 'stuck/unit', description: 'a test unit', reads: ['stuck_value'], timeoutMs: ${HANG_MS}, observe: async () => null, plan: () => [] });
const s = defineScope({
  name: 'stuck.get',
  summary: 'a scope whose get never returns',
  help: 'test',
  usage: 'VALUE',
  examples: [],
  schema: z.string(),
  vars: ['stuck_value'],
  parseArgs: (args) => String(args[0]),
  toVars: (value) => ({ stuck_value: value }),
  get: () => new Promise(() => {}),
});
export default definePlugin({ name: 'scoped-plugin-stuck', version: '1.0.0', apiVersion: 1, vars: [v], units: [u], scopes: [s] });
`;

describe('a plugin whose scope code never returns', () => {
  let stuckDirs: PluginDirs | undefined;
  let sd: Scoped;
  /** cpcmd with a deadline: a call that never answers is killed and shows as exit null. */
  const cpWithin = (ms: number, ...args: string[]) =>
    run(process.execPath, [CPCMD_BIN, ...args], { env: cleanEnv({ SCOPED_SOCKET: sd.socket }), timeoutMs: ms });

  beforeAll(async () => {
    stuckDirs = await PluginDirs.create();
    const dir = await stuckDirs.write('stuck', HANGING_GET_PLUGIN);
    sd = await scoped({ args: ['--plugin', dir] });
  });

  afterAll(async () => {
    await sd?.close();
    await stuckDirs?.remove();
  });

  it('does not hold up first-party scopes: scope:set net.hostname applies while a set of the stuck scope hangs', async () => {
    const stuck = cpWithin(25_000, 'scope:set', 'stuck.get', 'x');
    await new Promise((r) => setTimeout(r, 300));
    const host = await cpWithin(20_000, 'scope:set', 'net.hostname', 'unblocked.example.test');
    expect(host.code, `net.hostname was held up by the stuck plugin (exit ${host.code ?? host.signal})\nstdout: ${host.stdout}\nstderr: ${host.stderr}`).toBe(
      ExitCodes.ok,
    );
    expect(await readFile(path.join(sd.root, 'etc/hostname'), 'utf8')).toBe('unblocked.example.test\n');
    // The stuck call itself should end with a plugin error or a timeout, the plugin reported.
    const s = await stuck;
    expect.soft([ExitCodes.plugin, ExitCodes.busy], `the stuck set ended with exit ${s.code ?? s.signal}: ${s.stderr}`).toContain(s.code);
  });
});

describe('every plugin, first-party or not, loads through one loader in the order its dependsOn gives', () => {
  let depDirs: PluginDirs | undefined;
  let dd: Scoped;
  const dirOf: Record<string, string> = {};
  const simple = (name: string, extra: Partial<Parameters<typeof simplePlugin>[0]> = {}) =>
    simplePlugin({
      name: `scoped-plugin-${name}`,
      scope: `${name.replace(/-/g, '')}.value`,
      varName: `${name.replace(/-/g, '_')}_value`,
      unit: `${name.replace(/-/g, '')}/value`,
      ...extra,
    });
  /** Rewrite a written plugin's package.json `main`. */
  const withMain = async (dir: string, main: string) => {
    const file = path.join(dir, 'package.json');
    await writeFile(file, JSON.stringify({ ...JSON.parse(await readFile(file, 'utf8')), main }));
  };

  beforeAll(async () => {
    depDirs = await PluginDirs.create();
    const inDir = (folder: string, source: string) => depDirs!.write(`plugin-dir/${folder}`, source, { name: `scoped-plugin-${folder}` });
    // Sorted first in the directory, but registered after the plugin it depends on, whose var its unit reads.
    dirOf.early = await inDir('aa-early', simple('aa-early', { alsoReads: ['zz_base_value'], dependsOn: ['scoped-plugin-zz-base'] }));
    dirOf.base = await inDir('zz-base', simple('zz-base'));
    // Reads net's var with dependsOn, and without it.
    dirOf.host = await inDir('host-reader', simple('host-reader', { alsoReads: ['system_hostname'], dependsOn: ['@scoped/plugin-net'] }));
    dirOf.sneaky = await inDir('sneaky', simple('sneaky', { alsoReads: ['system_hostname'] }));
    dirOf.orphan = await inDir('orphan', simple('orphan', { dependsOn: ['scoped-plugin-absent'] }));
    dirOf.cycleA = await inDir('cycle-a', simple('cycle-a', { dependsOn: ['scoped-plugin-cycle-b'] }));
    dirOf.cycleB = await inDir('cycle-b', simple('cycle-b', { dependsOn: ['scoped-plugin-cycle-a'] }));
    dirOf.afterCycle = await inDir('after-cycle', simple('after-cycle', { dependsOn: ['scoped-plugin-cycle-a'] }));
    // The README's mistakes: a TypeScript entry, and a built entry that was never built.
    dirOf.tsEntry = await inDir('ts-entry', simple('ts-entry'));
    await withMain(dirOf.tsEntry, './src/index.ts');
    dirOf.unbuilt = await inDir('unbuilt', simple('unbuilt'));
    await withMain(dirOf.unbuilt, './dist/index.js');
    dd = await scoped({ config: { pluginDir: path.join(depDirs.dir, 'plugin-dir') } });
  });

  afterAll(async () => {
    await dd?.close();
    await depDirs?.remove();
  });

  async function statusByName() {
    const r = await dd.cpcmd(['daemon:status', '-o', 'json']);
    expectExit(r, 'ok');
    const list = JSON.parse(r.stdout).plugins as { name: string; status: string; error?: string; source?: string }[];
    return Object.fromEntries(list.map((p) => [p.name, p]));
  }

  it('the first-party plugins are loaded from their package directories by the same loader, each after what it depends on', async () => {
    const byName = await statusByName();
    for (const name of ['@scoped/plugin-net', '@scoped/plugin-mail', '@scoped/plugin-cp']) {
      const p = byName[name];
      expect(p, name).toMatchObject({ status: 'loaded' });
      // Its source is the package directory the loader read the manifest of.
      const manifest = JSON.parse(await readFile(path.join(p!.source!, 'package.json'), 'utf8'));
      expect(manifest).toMatchObject({ name, scoped: { apiVersion: 1 } });
    }
    const log = dd.stderr();
    const order = [...log.matchAll(/"msg":"plugin loaded","plugin":"([^"]+)"/g)].map((m) => m[1]);
    expect(order.indexOf('@scoped/plugin-net')).toBeLessThan(order.indexOf('@scoped/plugin-mail'));
    expect(order.indexOf('scoped-plugin-zz-base')).toBeLessThan(order.indexOf('scoped-plugin-aa-early'));
    expect(byName['scoped-plugin-aa-early']).toMatchObject({ status: 'loaded', source: dirOf.early });
    expect(byName['scoped-plugin-host-reader']).toMatchObject({ status: 'loaded' });
    const set = await dd.cpcmd(['scope:set', 'aaearly.value', 'x']);
    expectExit(set, 'ok');
  });

  it("a plugin that reads another plugin's var without declaring it in dependsOn is refused, naming what to add", async () => {
    const pl = await dd.cpcmd(['plugin:list']);
    expectExit(pl, 'plugin');
    expect(pl.stdout).toMatch(
      /^scoped-plugin-sneaky@1\.0\.0\s+failed {2}sneaky\.value {2}unit sneaky\/value reads var system_hostname of @scoped\/plugin-net, which it does not depend on: add '@scoped\/plugin-net' to the plugin's dependsOn$/m,
    );
    expectExit(await dd.cpcmd(['scope:get', 'sneaky.value']), 'notFound');
  });

  it('a missing or cyclic dependency refuses that plugin with the reason; everything else loads', async () => {
    const byName = await statusByName();
    expect(byName['scoped-plugin-orphan']).toMatchObject({
      status: 'failed',
      source: dirOf.orphan,
      error: 'it depends on scoped-plugin-absent, which is not loaded: load scoped-plugin-absent too (--plugin DIR|PACKAGE), or remove it from dependsOn',
    });
    for (const [name, cycle] of [
      ['scoped-plugin-cycle-a', 'scoped-plugin-cycle-a → scoped-plugin-cycle-b → scoped-plugin-cycle-a'],
      ['scoped-plugin-cycle-b', 'scoped-plugin-cycle-b → scoped-plugin-cycle-a → scoped-plugin-cycle-b'],
    ] as const) {
      expect(byName[name]).toMatchObject({
        status: 'failed',
        error: `its dependsOn makes a cycle (${cycle}): a plugin cannot come before itself; remove one of these dependencies`,
      });
    }
    expect(byName['scoped-plugin-after-cycle']).toMatchObject({
      status: 'failed',
      error: 'it depends on scoped-plugin-cycle-a, which did not load (see its own entry)',
    });
    for (const scope of ['orphan.value', 'cyclea.value', 'aftercycle.value']) expectExit(await dd.cpcmd(['scope:get', scope]), 'notFound');
    expect(dd.running).toBe(true);
    expectExit(await dd.cpcmd(['scope:set', 'net.hostname', 'deps.example.test']), 'ok');
  });

  it('a plugin whose entry is TypeScript, or not built yet, is refused with what to do', async () => {
    const byName = await statusByName();
    expect(byName['scoped-plugin-ts-entry']).toMatchObject({
      status: 'failed',
      error:
        'its entry src/index.ts is TypeScript, which node cannot load: build it (npx tsc) and point "main" in package.json at the built .js file, such as ./dist/index.js',
    });
    expect(byName['scoped-plugin-unbuilt']).toMatchObject({
      status: 'failed',
      error: 'its entry dist/index.js does not exist: build the plugin first (npx tsc), or fix "main" in package.json',
    });
  });
});
