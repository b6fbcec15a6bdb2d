import { configScope } from './config.js';
import { ScopeInputError, argText, closest, definePlugin, defineScope, type ScopeContext, type VarDef, z, zodText } from '@scoped/sdk';

/** One var and the value to give it. */
export interface VarAssignment {
  var: string;
  value: unknown;
}

/** The grammar of var names (as defineVar enforces it). */
const VAR_NAME = /^[a-z][a-z0-9_]*$/;

function lookup(name: unknown, ctx: ScopeContext): VarDef {
  if (typeof name !== 'string' || name === '')
    throw new ScopeInputError('name a var, such as postfix_relay_mynetworks; cpcmd scope:get cp.bootstrapper lists the ones set');
  const def = ctx.varDefs.get(name);
  if (def) return def;
  // Only a well-formed name is repeated (and hinted from): anything else could be escape sequences or a guessed secret.
  if (!VAR_NAME.test(name) || name.length > 100)
    throw new ScopeInputError(
      'no var has that name: a var name is snake_case, such as postfix_relay_mynetworks (cpcmd var:list shows them all)',
      ['var'],
      'not-found',
    );
  const hint = closest(name, ctx.varDefs.keys());
  throw new ScopeInputError(`unknown var ${name}${hint ? `; did you mean ${hint}?` : ''} (cpcmd var:list shows them all)`, ['var'], 'not-found');
}

/** Validate a value against a var's schema; a number given for a text var is taken as its text. */
function validate(def: VarDef, value: unknown): unknown {
  let r = def.schema.safeParse(value);
  if (!r.success && (typeof value === 'number' || typeof value === 'boolean')) {
    const asText = def.schema.safeParse(String(value));
    if (asText.success) r = asText;
  }
  if (r.success) return r.data;
  throw new ScopeInputError(`invalid value for ${def.name}: ${zodText(r.error)}`, ['value']);
}

/**
 * A word the grammar typed (a number, true/false, null) is kept as it was typed when the var
 * wants text there: system_hostname 1.50 stores "1.50", not 1.5. A value the var takes as it
 * is stays as it is.
 */
function asTyped(def: VarDef, value: unknown, typed: string | undefined): unknown {
  if (typed === undefined || typeof value === 'string' || def.schema.safeParse(value).success) return value;
  // The typed text is what gets checked when the var takes text: its refusal then speaks of what was typed (1.50, not 1.5).
  const asText = def.schema.safeParse(typed);
  return asText.success || asText.error.issues.every((i) => i.code !== 'invalid_type') ? typed : value;
}

const isDefault = (def: VarDef, value: unknown): boolean => JSON.stringify(value) === JSON.stringify(def.default);

export const bootstrapperScope = defineScope<VarAssignment>({
  name: 'cp.bootstrapper',
  summary: 'Every var, raw: read one or all that differ from their defaults, or set one and converge',
  help:
    'The raw desired state behind every scope. Without arguments, scope:get lists the vars whose values differ from their ' +
    "defaults; with a VAR it shows that one. scope:set checks the value against the var's type, stores it and converges " +
    'the units that read it; --no-converge only stores it (converge later with cpcmd converge UNIT). Secret vars are shown redacted.',
  usage: 'VAR VALUE',
  examples: [
    'cpcmd scope:get cp.bootstrapper',
    'cpcmd scope:get cp.bootstrapper postfix_smtp_tls_security_level',
    'cpcmd scope:set cp.bootstrapper postfix_smtp_tls_security_level encrypt',
    'cpcmd scope:set cp.bootstrapper postfix_relay_mynetworks true --no-converge',
  ],
  schema: z.object({ var: z.string().min(1), value: z.json() }).strict() as z.ZodType<VarAssignment>,
  vars: [],
  allowNoConverge: true,
  parseArgs(args, ctx) {
    if (args.length !== 2)
      throw new ScopeInputError(
        `cp.bootstrapper takes VAR VALUE, such as postfix_relay_mynetworks true; got ${args.length} argument${args.length === 1 ? '' : 's'}`,
      );
    const def = typeof args[0] === 'string' ? ctx.varDefs.get(args[0]) : undefined;
    return { var: args[0] as string, value: def ? asTyped(def, args[1], argText(args, 1, ctx)) : args[1] };
  },
  toVars(value, ctx) {
    const def = lookup(value.var, ctx);
    return { [def.name]: validate(def, value.value) };
  },
  redact(value, ctx) {
    return { var: value.var, value: ctx.redactVar(value.var, value.value) };
  },
  get(ctx, args) {
    if (args.length > 1) throw new ScopeInputError('scope:get cp.bootstrapper takes at most one VAR');
    if (args.length === 1) {
      const def = lookup(args[0], ctx);
      return ctx.redactVar(def.name, ctx.vars[def.name] ?? def.default);
    }
    const differing: Record<string, unknown> = {};
    for (const def of [...ctx.varDefs.values()].sort((a, b) => a.name.localeCompare(b.name))) {
      const v = ctx.vars[def.name] ?? def.default;
      if (!isDefault(def, v)) differing[def.name] = ctx.redactVar(def.name, v);
    }
    return differing;
  },
});

export default definePlugin({
  name: '@scoped/plugin-cp',
  version: '0.1.0',
  apiVersion: 1,
  scopes: [bootstrapperScope, configScope],
});
