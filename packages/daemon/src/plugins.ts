import { existsSync, readFileSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { API_VERSION, type PluginDef, z, zodText } from '@scoped/sdk';
import { type Logger, jsonLogger } from './log.js';
import { TrustChecker } from './plugin-trust.js';
import { Registry } from './registry.js';

const silentLog = jsonLogger({ level: 'silent' });

const isZod = (v: unknown) => v instanceof z.ZodType;
const fn = z.custom<(...args: never[]) => unknown>((v) => typeof v === 'function', 'a function');

/** What a plugin's default export must look like; checked before anything of it is registered. */
const PluginShape = z.object({
  name: z.string().min(1),
  version: z.string().min(1),
  apiVersion: z.number().int(),
  dependsOn: z.array(z.string().min(1)).optional(),
  vars: z
    .array(
      z.object({
        name: z.string().regex(/^[a-z][a-z0-9_]*$/, 'vars are snake_case'),
        description: z.string().min(1),
        schema: z.custom((v) => isZod(v), 'a zod schema made with the z the sdk exports'),
        default: z.unknown(),
      }),
    )
    .optional(),
  units: z.array(z.object({ name: z.string(), description: z.string(), reads: z.array(z.string()), observe: fn, plan: fn })).optional(),
  scopes: z
    .array(
      z.object({
        name: z.string(),
        summary: z.string().min(1),
        usage: z.string(),
        schema: z.custom((v) => isZod(v), 'a zod schema made with the z the sdk exports'),
        vars: z.array(z.string()),
        parseArgs: fn,
        toVars: fn,
        get: fn,
      }),
    )
    .optional(),
});

/** Problems of a plugin's shape, or undefined; includes a var whose default its own schema refuses. */
export function pluginProblem(plugin: unknown): string | undefined {
  const r = PluginShape.safeParse(plugin);
  if (!r.success) return `not a valid plugin: ${zodText(r.error, 'default export')}`;
  for (const v of (plugin as PluginDef).vars ?? []) {
    if (!v.schema.safeParse(v.default).success) return `var ${v.name}: its default does not pass its own schema`;
  }
  return undefined;
}

/** The plugins that ship with scoped, by package name: loaded like any other, before those the admin adds. */
export const FIRST_PARTY_PLUGINS: readonly string[] = ['@scoped/plugin-net', '@scoped/plugin-mail', '@scoped/plugin-cp'];

interface Manifest {
  name?: string;
  version?: string;
  main?: string;
  exports?: unknown;
  scoped?: { apiVersion?: unknown };
}

/** The entry file of a plugin package directory. */
function entryOf(dir: string, pkg: Manifest): string {
  const exp = pkg.exports;
  const fromExports = typeof exp === 'string' ? exp : exp && typeof exp === 'object' ? ((exp as Record<string, unknown>)['.'] as unknown) : undefined;
  const target =
    typeof fromExports === 'string'
      ? fromExports
      : fromExports && typeof fromExports === 'object'
        ? ((fromExports as Record<string, string>).import ?? (fromExports as Record<string, string>).default)
        : undefined;
  return path.resolve(dir, target ?? pkg.main ?? 'index.js');
}

/** Why node cannot import a plugin's entry file, phrased as what to do, or undefined. */
function entryProblem(dir: string, entry: string): string | undefined {
  const rel = path.relative(dir, entry) || entry;
  if (/\.[cm]?tsx?$/.test(entry))
    return `its entry ${rel} is TypeScript, which node cannot load: build it (npx tsc) and point "main" in package.json at the built .js file, such as ./dist/index.js`;
  if (!existsSync(entry)) return `its entry ${rel} does not exist: build the plugin first (npx tsc), or fix "main" in package.json`;
  return undefined;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not finish loading in ${ms} ms`)), ms))),
  ]).finally(() => clearTimeout(timer));
}

/** Where a plugin comes from, before any of it is read. */
interface Source {
  dir: string;
  /**
   * Part of scoped's own install (a first-party plugin, resolved from the daemon's own
   * dependencies): as trusted as the daemon's code, which is already running, so its owner
   * and modes are not checked again. Everything else the loader checks as for any plugin.
   */
  ownInstall: boolean;
}

/** A plugin read, checked and ready to register. */
interface Candidate {
  def: PluginDef;
  dir: string;
}

/**
 * Read one plugin package directory: trust, manifest, API version, entry, import and shape.
 * A failure is recorded in the registry, never thrown.
 * Nothing of it is read before its directory, every file in it and every directory above it
 * are found to be root's alone: a plugin runs as root.
 */
async function readDir(source: Source, registry: Registry, log: Logger, timeoutMs: number, trust: TrustChecker): Promise<Candidate | undefined> {
  const { dir } = source;
  let label = dir;
  try {
    const untrusted = source.ownInstall ? undefined : trust.plugin(dir);
    if (untrusted) throw new Error(untrusted);
    const manifestPath = path.join(dir, 'package.json');
    if (!existsSync(manifestPath)) throw new Error(`no package.json in ${dir}`);
    const pkg = JSON.parse(readFileSync(manifestPath, 'utf8')) as Manifest;
    label = pkg.name ?? dir;
    const api = pkg.scoped?.apiVersion;
    if (api === undefined) throw new Error('package.json does not declare "scoped": {"apiVersion": 1}');
    if (Number(String(api).replace(/^[\^~]/, '')) !== API_VERSION) throw new Error(`it needs plugin API ${String(api)}; this daemon speaks ${API_VERSION}`);
    const entry = entryOf(dir, pkg);
    const missing = entryProblem(dir, entry);
    if (missing) throw new Error(missing);
    const entryUntrusted = source.ownInstall ? undefined : trust.file(entry);
    if (entryUntrusted) throw new Error(entryUntrusted);
    const mod = (await withTimeout(import(pathToFileURL(entry).href), timeoutMs, label)) as { default?: unknown };
    const problem = pluginProblem(mod.default);
    if (problem) throw new Error(problem);
    return { def: mod.default as PluginDef, dir };
  } catch (err) {
    const error = (err as Error).message;
    registry.recordFailure(label, error, dir);
    log.error('plugin failed to load', { plugin: label, error });
    return undefined;
  }
}

/** A path of dependencies from `from` back to itself among `graph`, or undefined. */
function cycleThrough(from: string, graph: ReadonlyMap<string, readonly string[]>): string[] | undefined {
  const walk = (node: string, trail: string[]): string[] | undefined => {
    for (const next of graph.get(node) ?? []) {
      if (next === from) return [...trail, next];
      if (!trail.includes(next)) {
        const found = walk(next, [...trail, next]);
        if (found) return found;
      }
    }
    return undefined;
  };
  return walk(from, [from]);
}

/**
 * The order to register plugins in: each after the plugins it names in `dependsOn`, otherwise
 * as listed. A plugin whose dependency is missing, failed or part of a cycle is left out,
 * with the reason; the others are unaffected.
 */
export function orderByDependencies<T extends { def: PluginDef }>(
  candidates: readonly T[],
  loaded: ReadonlySet<string> = new Set(),
): { ordered: T[]; refused: { candidate: T; error: string }[] } {
  const ordered: T[] = [];
  const ready = new Set(loaded);
  let pending = [...candidates];
  for (;;) {
    const next = pending.find((c) => (c.def.dependsOn ?? []).every((d) => ready.has(d)));
    if (!next) break;
    ordered.push(next);
    ready.add(next.def.name);
    pending = pending.filter((c) => c !== next);
  }
  const names = new Set(candidates.map((c) => c.def.name));
  const graph = new Map(pending.map((c) => [c.def.name, (c.def.dependsOn ?? []).filter((d) => !ready.has(d))]));
  const refused = pending.map((candidate) => {
    const cycle = cycleThrough(candidate.def.name, graph);
    if (cycle)
      return { candidate, error: `its dependsOn makes a cycle (${cycle.join(' → ')}): a plugin cannot come before itself; remove one of these dependencies` };
    const dep = (candidate.def.dependsOn ?? []).find((d) => !ready.has(d)) as string;
    if (names.has(dep)) return { candidate, error: `it depends on ${dep}, which did not load (see its own entry)` };
    return { candidate, error: `it depends on ${dep}, which is not loaded: load ${dep} too (--plugin DIR|PACKAGE), or remove it from dependsOn` };
  });
  return { ordered, refused };
}

/**
 * The directory of an installed package, found in each node_modules from the daemon's directory
 * up (as ESM resolution looks) but without its `exports`, which need not export package.json.
 * NODE_PATH and the global folders (~/.node_modules, /usr/lib/node) that CommonJS would also
 * search are not: a package found there is not part of scoped's own install.
 */
function packageDir(name: string, from: string): string | undefined {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const found = path.join(dir, 'node_modules', name);
    if (existsSync(path.join(found, 'package.json'))) return found;
    if (dir === path.dirname(dir)) return undefined;
  }
}

/** The directory of the package a file belongs to: the nearest one above it with a package.json. */
function packageRoot(file: string): string {
  for (let dir = path.dirname(file); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
  }
  return path.dirname(file);
}

/**
 * Load every plugin through the same steps: the first-party ones (`firstParty`, package names
 * resolved from the daemon's own install), each entry of `specs` (a directory, or an npm package
 * name resolvable from the daemon), then every directory in `dir`. Each is checked (owner and
 * modes, manifest, API version, entry, shape), then all are registered in the order their
 * `dependsOn` gives. A plugin (or `dir`) that someone other than root owns or may write to is
 * refused before any of it is read. A plugin that throws, hangs while loading, declares another
 * API version, collides with a loaded name, has an invalid shape, or depends on a plugin that is
 * missing, failed or in a cycle is recorded as failed with the reason; the others load regardless.
 */
export async function loadPlugins(
  specs: readonly string[],
  dir: string | undefined,
  registry: Registry,
  log: Logger,
  timeoutMs = 10_000,
  firstParty: readonly string[] = FIRST_PARTY_PLUGINS,
): Promise<void> {
  const require = createRequire(import.meta.url);
  const here = path.dirname(fileURLToPath(import.meta.url));
  const sources: Source[] = [];
  const seen = new Set<string>();
  const add = (d: string, ownInstall: boolean) => {
    const key = existsSync(d) ? realpathSync(d) : d;
    if (seen.has(key)) return;
    seen.add(key);
    sources.push({ dir: d, ownInstall });
  };
  for (const name of firstParty) {
    const found = packageDir(name, here);
    if (found) add(found, true);
    else registry.recordFailure(name, `cannot find the first-party plugin ${name}: scoped's install is incomplete; run npm ci in it again`, name);
  }
  for (const spec of specs) {
    if (spec.startsWith('/') || spec.startsWith('.') || existsSync(path.join(spec, 'package.json'))) add(path.resolve(spec), false);
    else {
      const found = packageDir(spec, here);
      if (found) add(found, false);
      else registry.recordFailure(spec, `cannot find the package ${spec}: install it where scoped can resolve it, or name its directory`, spec);
    }
  }
  const trust = new TrustChecker([packageRoot(require.resolve('@scoped/sdk'))]);
  if (dir && existsSync(dir)) {
    const untrusted = trust.container(dir);
    if (untrusted) {
      // Anyone who can write to it could add a plugin: load none of what it holds.
      registry.recordFailure(dir, untrusted, dir);
      log.error('plugin directory refused', { dir, error: untrusted });
    } else {
      for (const name of readdirSync(dir).sort()) {
        const full = path.join(dir, name);
        if (statSync(full).isDirectory()) add(full, false);
      }
    }
  }
  const candidates: Candidate[] = [];
  for (const source of sources) {
    const c = await readDir(source, registry, log, timeoutMs, trust);
    if (c) candidates.push(c);
  }
  const { ordered, refused } = orderByDependencies(candidates);
  for (const c of ordered) {
    const status = registry.add(c.def, c.dir);
    if (status.status === 'failed') log.error('plugin refused', { plugin: status.name, error: status.error });
    else log.info('plugin loaded', { plugin: status.name, version: status.version, scopes: status.scopes });
  }
  for (const { candidate, error } of refused) {
    registry.refuse(candidate.def, error, candidate.dir);
    log.error('plugin refused', { plugin: candidate.def.name, error });
  }
}

/**
 * The first-party plugins, loaded and checked as the daemon loads them, in dependency order:
 * for tests and the compliance suite, which host them in an engine of their own.
 */
export async function firstPartyPlugins(): Promise<PluginDef[]> {
  const registry = new Registry();
  await loadPlugins([], undefined, registry, silentLog);
  const failed = registry.plugins.find((p) => p.status !== 'loaded');
  if (failed) throw new Error(`first-party plugin ${failed.name} did not load: ${failed.error}`);
  return registry.plugins.map((p) => registry.definition(p.name) as PluginDef);
}
