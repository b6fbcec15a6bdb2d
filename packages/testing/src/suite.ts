import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Engine, Registry, Store, firstPartyPlugins, jsonLogger } from '@scoped/daemon';
import { orderByDependencies, pluginProblem } from '@scoped/daemon';
import { ErrorCodes, RpcError } from '@scoped/protocol';
import { type Change, type PluginDef, z } from '@scoped/sdk';
import { HostSystem } from '@scoped/system';
import { treeDigest } from './tree.js';

/** The parts of a test runner the suite needs (vitest's and jest's fit). */
export interface TestApi {
  describe(name: string, fn: () => void): void;
  it(name: string, fn: () => Promise<void> | void, timeoutMs?: number): void;
  expect: (value: unknown) => {
    toBe(v: unknown): void;
    toEqual(v: unknown): void;
    toBeUndefined(): void;
    toBeGreaterThan(n: number): void;
    not: { toContain(v: unknown): void };
  };
}

/** One way to exercise a scope: the CLI words, and the secrets those words carry. */
export interface Sample {
  scope: string;
  args: unknown[];
  secrets?: string[];
}

export interface SuiteOptions {
  plugin: PluginDef;
  /** Plugins loaded beside it (whose vars it may read); the first-party ones by default. */
  alongside?: readonly PluginDef[];
  /** A fresh sandbox root holding whatever the plugin manages (a Postfix config dir, say). */
  makeRoot: () => string | Promise<string>;
  /** At least one sample per scope worth testing; each must change a fresh root. */
  samples: readonly Sample[];
}

const actor = { name: 'compliance-suite', transport: 'test' };

/** A system whose apply breaks halfway: real writes, then a failure the engine must roll back. */
class HalfwayFailingSystem extends HostSystem {
  override async apply(changes: readonly Change[], afterEach?: (change: Change) => void | Promise<void>): Promise<void> {
    const half = Math.ceil(changes.length / 2);
    await super.apply(changes.slice(0, half), afterEach);
    throw new Error('injected failure halfway through the apply');
  }
}

async function openEngine(opts: SuiteOptions, root: string, failing = false) {
  const registry = new Registry();
  const others = (opts.alongside ?? (await firstPartyPlugins())).filter((p) => p.name !== opts.plugin.name);
  // Registered as the daemon registers them: each after the plugins it depends on.
  const { ordered } = orderByDependencies([...others, opts.plugin].map((def) => ({ def })));
  const statuses = new Map(ordered.map(({ def }) => [def, registry.add(def)]));
  // Not ordered (a dependency of it is missing or in a cycle): added anyway, so its status says why.
  const status = statuses.get(opts.plugin) ?? registry.add(opts.plugin);
  const stateDir = mkdtempSync(path.join(tmpdir(), 'scoped-suite-store-'));
  const store = await Store.open(`sqlite://${path.join(stateDir, 'store.sqlite')}`);
  const System = failing ? HalfwayFailingSystem : HostSystem;
  const system = new System({ root, kernelHostname: false });
  const engine = new Engine(registry, store, system, { kernelHostname: false }, jsonLogger({ level: 'silent' }));
  await engine.init();
  return {
    engine,
    status,
    store,
    async close() {
      system.close();
      await store.close();
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

/**
 * The compliance suite of a scope plugin, in the manner of keyv's adapter suite: every
 * plugin runs it, first-party and third-party alike, against a real engine, a real SQLite
 * store and real files in a sandbox root.
 */
export function scopePluginSuite(api: TestApi, opts: SuiteOptions): void {
  const { describe, it, expect } = api;
  const withEngine = async (fn: (ctx: Awaited<ReturnType<typeof openEngine>> & { root: string }) => Promise<void>, failing = false) => {
    const root = await opts.makeRoot();
    const ctx = await openEngine(opts, root, failing);
    try {
      await fn({ ...ctx, root });
    } finally {
      await ctx.close();
      rmSync(root, { recursive: true, force: true });
    }
  };

  describe(`scope plugin compliance: ${opts.plugin.name}`, () => {
    it('has a valid shape, loads beside the others without collisions, and every schema converts to JSON Schema', async () => {
      expect(pluginProblem(opts.plugin)).toBeUndefined();
      await withEngine(async ({ status, engine }) => {
        // The reason first: a failure then says why the plugin would not load in scoped.
        expect(status.error).toBeUndefined();
        expect(status.status).toBe('loaded');
        for (const v of opts.plugin.vars ?? []) expect(v.schema.safeParse(v.default).success).toBe(true);
        for (const s of opts.plugin.scopes ?? []) {
          expect(typeof z.toJSONSchema(s.schema, { io: 'input', unrepresentable: 'any' })).toBe('object');
          for (const v of s.vars) expect(engine.registry.vars.has(v)).toBe(true);
        }
        for (const sample of opts.samples) expect(engine.registry.scopes.has(sample.scope)).toBe(true);
      });
    });

    it("parses each sample's words to a value that means the same vars when given typed", async () => {
      await withEngine(async ({ engine }) => {
        for (const sample of opts.samples) {
          const scope = engine.scope(sample.scope);
          const fromArgs = await engine.scopeVars(scope, { args: sample.args });
          const fromValue = await engine.scopeVars(scope, { value: fromArgs.value });
          expect(fromValue.vars).toEqual(fromArgs.vars);
        }
      });
    });

    it('applies each sample, and applying it again plans nothing and writes nothing', async () => {
      await withEngine(async ({ engine, root }) => {
        for (const sample of opts.samples) {
          const first = await engine.set({ name: sample.scope, args: sample.args }, actor);
          expect(first.status === 'applied' || first.status === 'unchanged').toBe(true);
          const after = treeDigest(root);
          const second = await engine.set({ name: sample.scope, args: sample.args }, actor);
          let rebuilt: string[] = [];
          if (sample.secrets?.length) {
            // A set that gives a secret writes it anew, so that no answer tells whether it equalled the stored one;
            // every file keeps its bytes (but the databases postmap rebuilt), and a converge then has nothing to do.
            expect(second.status).toBe('applied');
            expect((await engine.converge({ dryRun: true }, actor)).plan).toEqual([]);
            rebuilt = second.plan.filter((c) => c.kind === 'postmap').flatMap((c) => [`${c.target}.db`, `${c.target}.lmdb`].map((p) => p.replace(/^\//, '')));
          } else {
            expect(second.status).toBe('unchanged');
            expect(second.plan).toEqual([]);
          }
          const without = (digest: Record<string, string>) => Object.fromEntries(Object.entries(digest).filter(([p]) => !rebuilt.includes(p)));
          expect(without(treeDigest(root))).toEqual(without(after));
          expect((await engine.check(sample.scope)).drift).toEqual([]);
        }
      });
    });

    it('a dry run returns the plan and writes nothing', async () => {
      await withEngine(async ({ engine, root, store }) => {
        for (const sample of opts.samples) {
          const before = treeDigest(root);
          const state = await store.loadState();
          const r = await engine.set({ name: sample.scope, args: sample.args, dryRun: true }, actor);
          expect(r.status).toBe('planned');
          expect(treeDigest(root)).toEqual(before);
          expect(await store.loadState()).toEqual(state);
        }
      });
    });

    it('a failing apply rolls every file back and stores nothing', async () => {
      await withEngine(async ({ engine, root }) => {
        for (const sample of opts.samples) {
          const before = treeDigest(root);
          const vars = engine.vars();
          const r = await engine.set({ name: sample.scope, args: sample.args }, actor).then(
            () => undefined,
            (err: unknown) => err,
          );
          expect(r instanceof RpcError && r.code === ErrorCodes.ConvergeFailed).toBe(true);
          expect(treeDigest(root)).toEqual(before);
          expect(engine.vars()).toEqual(vars);
        }
      }, true);
    });

    it('never shows a secret: results, plans, reads, var listings and the audit trail', async () => {
      await withEngine(async ({ engine, store }) => {
        for (const sample of opts.samples) {
          if (!sample.secrets?.length) continue;
          const seen: unknown[] = [];
          seen.push(await engine.set({ name: sample.scope, args: sample.args, dryRun: true }, actor));
          seen.push(await engine.set({ name: sample.scope, args: sample.args }, actor));
          seen.push(await engine.get(sample.scope));
          seen.push(await engine.check());
          seen.push(Object.entries(engine.vars()).map(([k, v]) => engine.redactVar(k, v)));
          seen.push(await store.auditEntries(1000));
          const text = JSON.stringify(seen);
          for (const secret of sample.secrets) expect(text).not.toContain(secret);
        }
      });
    });
  });
}
