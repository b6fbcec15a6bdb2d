import { ErrorCodes, RpcError } from '@scoped/protocol';
import { closest, type ScopeDef, type UnitDef, type VarDef } from '@scoped/sdk';
import { isName } from '../names.js';
import type { Registry } from '../registry.js';

/** `; did you mean X?` for the known name closest to a mistyped one, or nothing when none is close. */
const didYouMean = (name: string, known: Iterable<string>) => {
  const hint = closest(name, known);
  return hint ? `; did you mean ${hint}?` : '';
};

/** A scope by name; a mistyped name is answered with the closest one. */
export function findScope(registry: Registry, name: string): ScopeDef {
  const scope = registry.scopes.get(name);
  const off = scope && registry.disabled('scope', name);
  if (off) throw new RpcError(ErrorCodes.PluginError, off);
  if (scope) return scope;
  // Only a well-formed name is repeated (and hinted from): anything else could be escape sequences or a guessed secret.
  if (!isName('scope', name))
    throw new RpcError(
      ErrorCodes.ScopeNotFound,
      'no scope has that name: a scope name is group.kebab-name, such as mail.smart-host (cpcmd scope:list shows them all)',
    );
  throw new RpcError(ErrorCodes.ScopeNotFound, `no scope ${name}${didYouMean(name, registry.scopes.keys())} (cpcmd scope:list shows them all)`);
}

export function findUnit(registry: Registry, name: string): UnitDef {
  const unit = registry.units.get(name);
  if (unit) return unit;
  const named = isName('unit', name) ? `named ${name}` : 'has that name';
  throw new RpcError(ErrorCodes.ScopeNotFound, `no unit ${named} (cpcmd converge takes one of: ${[...registry.units.keys()].join(', ')})`);
}

export function findVar(registry: Registry, name: string): VarDef {
  const def = registry.vars.get(name);
  if (def) return def;
  if (!isName('var', name)) throw new RpcError(ErrorCodes.ScopeNotFound, 'no var has that name (a var name is snake_case) (cpcmd var:list shows them all)');
  throw new RpcError(ErrorCodes.ScopeNotFound, `no var named ${name}${didYouMean(name, registry.vars.keys())} (cpcmd var:list shows them all)`);
}
