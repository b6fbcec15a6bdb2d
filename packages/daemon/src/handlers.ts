import * as m from '@scoped/protocol';
import type { Engine } from './engine.js';
import { globTest } from './engine.js';
import type { CallContext, RpcDispatcher } from './rpc.js';
import type { Actor } from './engine.js';
import { z } from 'zod';

const actor = (ctx: CallContext): Actor => ({ name: ctx.actor, transport: ctx.transport });

/** Optional keys present only when given, as exactOptionalPropertyTypes wants. */
function defined<T extends object>(o: T): { [K in keyof T]: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as never;
}

/** Wire every protocol method to the engine. */
export function registerHandlers(rpc: RpcDispatcher, engine: Engine, status: () => z.input<typeof m.daemonStatus.result>): void {
  rpc.register(m.scopeList, ({ glob }) => {
    const test = glob ? globTest(glob) : () => true;
    const scopes = [...engine.registry.scopes.values()].filter((s) => test(s.name)).map((s) => ({ name: s.name, summary: s.summary }));
    return { scopes: scopes.sort((a, b) => a.name.localeCompare(b.name)) };
  });

  rpc.register(m.scopeInfo, ({ name }) => {
    const s = engine.scope(name);
    const units = engine.registry.unitsReading(s.vars).map((u) => u.name);
    return {
      name: s.name,
      summary: s.summary,
      help: s.help,
      usage: s.usage,
      examples: [...s.examples],
      vars: [...s.vars],
      units,
      secretFields: [...(s.secretFields ?? [])],
      valueSchema: z.toJSONSchema(s.schema, { io: 'input', unrepresentable: 'any' }) as never,
    };
  });

  rpc.register(m.scopeGet, ({ name, args }) => engine.get(name, args ?? []) as never);
  rpc.register(m.scopeSet, (p, ctx) => engine.set(defined(p), actor(ctx)) as never);
  rpc.register(m.scopeReset, (p, ctx) => engine.reset(defined(p), actor(ctx)) as never);
  rpc.register(m.scopeCheck, ({ name }) => engine.check(name));
  rpc.register(m.scopeAdopt, (p, ctx) => engine.adopt(defined(p), actor(ctx)) as never);

  const varInfo = (name: string) => {
    const def = engine.varDef(name);
    const value = engine.vars()[name];
    return {
      name,
      description: def.description,
      type: describeType(z.toJSONSchema(def.schema, { io: 'input', unrepresentable: 'any' })),
      secret: def.secret !== undefined,
      default: engine.redactVar(name, def.default) as never,
      value: engine.redactVar(name, value) as never,
      isDefault: JSON.stringify(value) === JSON.stringify(def.default),
      units: engine.registry.unitsReading([name]).map((u) => u.name),
    };
  };
  rpc.register(m.varList, () => ({ vars: [...engine.registry.vars.keys()].sort().map(varInfo) }));
  rpc.register(m.varGet, ({ name }) => varInfo(name));
  rpc.register(m.varSet, (p, ctx) => engine.setVar(defined(p), actor(ctx)) as never);

  rpc.register(m.unitList, () => ({
    units: [...engine.registry.units.values()].map((u) => ({ name: u.name, description: u.description, reads: [...u.reads] })),
  }));
  rpc.register(m.unitConverge, (p, ctx) => engine.converge(defined(p), actor(ctx)));
  rpc.register(m.daemonStatus, status);
}

/** A short type name from a JSON Schema, for var listings. */
function describeType(schema: Record<string, unknown>): string {
  if (Array.isArray(schema.enum)) return (schema.enum as unknown[]).map((e) => JSON.stringify(e)).join('|');
  const alts = (schema.anyOf ?? schema.oneOf) as Record<string, unknown>[] | undefined;
  if (alts) return alts.map(describeType).join('|');
  if ('const' in schema) return JSON.stringify(schema.const);
  return typeof schema.type === 'string' ? schema.type : 'any';
}
