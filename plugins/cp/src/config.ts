/**
 * cp.config: the settings ApisCP keeps in config.ini, by SECTION and KEY, each backed by the
 * var of the plugin that uses it. Only the keys scoped knows are taken.
 */
import { ScopeInputError, type ScopeContext, type VarDef, argText, closest, defineScope, z, zodText } from '@scoped/sdk';

/** config.ini's keys, by section, and the var behind each (declared by the plugin that uses it). */
const KEYS: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  mail: { default_spf: 'mail_default_spf', default_dmarc: 'mail_default_dmarc' },
};

/** One key and the value to give it. */
export interface ConfigAssignment {
  section: string;
  key: string;
  value: string;
}

const known = (): string =>
  Object.entries(KEYS)
    .flatMap(([s, keys]) => Object.keys(keys).map((k) => `${s} ${k}`))
    .join(', ');

/** A word that names a section or key, as typed. */
function name(args: readonly unknown[], i: number, ctx: ScopeContext): string {
  const text = argText(args, i, ctx);
  if (text === undefined || !/^[a-z][a-z0-9_]{0,63}$/.test(text))
    throw new ScopeInputError(`name a section and a key, such as mail default_spf (the keys: ${known()})`);
  return text;
}

/** The var behind a section's key; refused, with the keys there are, when scoped knows no such key. */
function lookup(section: string, key: string, ctx: ScopeContext): VarDef {
  const keys = KEYS[section];
  if (!keys) {
    const hint = closest(section, Object.keys(KEYS));
    throw new ScopeInputError(`cp.config has no section ${section}${hint ? `; did you mean ${hint}?` : ''} (the keys: ${known()})`, ['section'], 'not-found');
  }
  const varName = keys[key];
  if (!varName) {
    const hint = closest(key, Object.keys(keys));
    throw new ScopeInputError(
      `[${section}] has no key ${key}${hint ? `; did you mean ${hint}?` : ''} (its keys: ${Object.keys(keys).join(', ')})`,
      ['key'],
      'not-found',
    );
  }
  const def = ctx.varDefs.get(varName);
  if (!def) throw new ScopeInputError(`${section} ${key} belongs to the ${section} plugin, which is not loaded`, ['key'], 'not-found');
  return def;
}

const value = (ctx: ScopeContext, def: VarDef): unknown => ctx.vars[def.name] ?? def.default;

export const configScope = defineScope<ConfigAssignment>({
  name: 'cp.config',
  summary: "ApisCP's config.ini settings by SECTION KEY, such as the SPF and DMARC records mail domains should publish",
  help:
    'SECTION KEY VALUE sets one setting; scope:get cp.config [SECTION [KEY]] reads them. The keys: mail default_spf (the SPF record ' +
    'each mail domain should publish, such as "v=spf1 a mx ~all") and mail default_dmarc (its _dmarc record, such as ' +
    '"v=DMARC1; p=quarantine; pct=100;"): mail.deliverability warns of domains that publish other records and suggests these. ' +
    'An empty VALUE ("") expects no record in particular. Each is stored in a var (mail_default_spf, mail_default_dmarc).',
  usage: 'SECTION KEY VALUE',
  examples: [
    'cpcmd scope:set cp.config mail default_spf "v=spf1 a mx ~all"',
    'cpcmd scope:set cp.config mail default_dmarc "v=DMARC1; p=quarantine; pct=100;"',
    'cpcmd scope:get cp.config mail default_spf',
    'cpcmd scope:get cp.config',
  ],
  schema: z.object({ section: z.string().min(1), key: z.string().min(1), value: z.string() }).strict(),
  vars: [],
  parseArgs(args, ctx) {
    if (args.length !== 3)
      throw new ScopeInputError(
        `cp.config takes SECTION KEY VALUE, such as mail default_spf "v=spf1 a mx ~all"; got ${args.length} argument${args.length === 1 ? '' : 's'}`,
      );
    const text = argText(args, 2, ctx);
    if (text === undefined) throw new ScopeInputError('the VALUE is text: quote it, such as "v=spf1 a mx ~all"');
    return { section: name(args, 0, ctx), key: name(args, 1, ctx), value: text };
  },
  toVars(v, ctx) {
    const def = lookup(v.section, v.key, ctx);
    const r = def.schema.safeParse(v.value);
    if (!r.success) throw new ScopeInputError(`invalid value for ${v.section} ${v.key}: ${zodText(r.error)}`, ['value']);
    return { [def.name]: r.data };
  },
  get(ctx, args) {
    if (args.length > 2) throw new ScopeInputError('scope:get cp.config takes at most SECTION KEY');
    if (args.length === 2) return value(ctx, lookup(name(args, 0, ctx), name(args, 1, ctx), ctx));
    const sections = args.length === 1 ? [name(args, 0, ctx)] : Object.keys(KEYS);
    const out: Record<string, Record<string, unknown>> = {};
    for (const section of sections) {
      if (!KEYS[section]) lookup(section, '', ctx);
      for (const key of Object.keys(KEYS[section]!)) {
        const def = ctx.varDefs.get(KEYS[section]![key]!);
        if (def) (out[section] ??= {})[key] = value(ctx, def);
      }
    }
    return args.length === 1 ? (out[sections[0]!] ?? {}) : out;
  },
});
