import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { API_VERSION, type PluginDef, z, zodText } from '@scoped/sdk';
import type { Logger } from './log.js';
import { TrustChecker } from './plugin-trust.js';
import type { Registry } from './registry.js';

const isZod = (v: unknown) => v instanceof z.ZodType;
const fn = z.custom<(...args: never[]) => unknown>((v) => typeof v === 'function', 'a function');

/** What a plugin's default export must look like; checked before anything of it is registered. */
const PluginShape = z.object({
  name: z.string().min(1),
  version: z.string().min(1),
  apiVersion: z.number().int(),
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
  const fromExports =
    typeof exp === 'string' ? exp : exp && typeof exp === 'object' ? ((exp as Record<string, unknown>)['.'] as unknown) : undefined;
  const target = typeof fromExports === 'string' ? fromExports : fromExports && typeof fromExports === 'object' ? ((fromExports as Record<string, string>).import ?? (fromExports as Record<string, string>).default) : undefined;
  return path.resolve(dir, target ?? pkg.main ?? 'index.js');
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not finish loading in ${ms} ms`)), ms)))]).finally(() =>
    clearTimeout(timer),
  );
}

/**
 * Load one plugin package directory into the registry; a failure is recorded, never thrown.
 * Nothing of it is read before its directory, every file in it and every directory above it
 * are found to be root's alone: a plugin runs as root.
 */
async function loadDir(dir: string, registry: Registry, log: Logger, timeoutMs: number, trust: TrustChecker): Promise<void> {
  let label = dir;
  try {
    const untrusted = trust.plugin(dir);
    if (untrusted) throw new Error(untrusted);
    const manifestPath = path.join(dir, 'package.json');
    if (!existsSync(manifestPath)) throw new Error(`no package.json in ${dir}`);
    const pkg = JSON.parse(readFileSync(manifestPath, 'utf8')) as Manifest;
    label = pkg.name ?? dir;
    const api = pkg.scoped?.apiVersion;
    if (api === undefined) throw new Error('package.json does not declare "scoped": {"apiVersion": 1}');
    if (Number(String(api).replace(/^[\^~]/, '')) !== API_VERSION) throw new Error(`it needs plugin API ${String(api)}; this daemon speaks ${API_VERSION}`);
    const entry = entryOf(dir, pkg);
    const entryUntrusted = trust.file(entry);
    if (entryUntrusted) throw new Error(entryUntrusted);
    const mod = (await withTimeout(import(pathToFileURL(entry).href), timeoutMs, label)) as { default?: unknown };
    const problem = pluginProblem(mod.default);
    if (problem) throw new Error(problem);
    const status = registry.add(mod.default as PluginDef, dir);
    if (status.status === 'failed') log.error('plugin refused', { plugin: status.name, error: status.error });
    else log.info('plugin loaded', { plugin: status.name, version: status.version, scopes: status.scopes });
  } catch (err) {
    const error = (err as Error).message;
    registry.recordFailure(label, error, dir);
    log.error('plugin failed to load', { plugin: label, error });
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
 * Load third-party plugins: each entry of `specs` (a directory, or an npm package name
 * resolvable from the daemon), then every directory in `dir`. A plugin (or `dir`) that
 * someone other than root owns or may write to is refused before any of it is read. A
 * plugin that throws, hangs
 * while loading, declares another API version, collides with a loaded name or has an
 * invalid shape is recorded as failed; the others load regardless.
 */
export async function loadPlugins(specs: readonly string[], dir: string | undefined, registry: Registry, log: Logger, timeoutMs = 10_000): Promise<void> {
  const require = createRequire(import.meta.url);
  const dirs: string[] = [];
  for (const spec of specs) {
    if (spec.startsWith('/') || spec.startsWith('.') || existsSync(path.join(spec, 'package.json'))) dirs.push(path.resolve(spec));
    else {
      try {
        dirs.push(path.dirname(require.resolve(`${spec}/package.json`)));
      } catch {
        registry.recordFailure(spec, `cannot find the package ${spec}: install it where scoped can resolve it, or name its directory`, spec);
      }
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
        if (statSync(full).isDirectory()) dirs.push(full);
      }
    }
  }
  for (const d of dirs) await loadDir(d, registry, log, timeoutMs, trust);
}
