import { ErrorCodes, RpcError } from '@scoped/protocol';
import { type ScopeDef, type UnitDef, type VarDef } from '@scoped/sdk';
import { isName } from '../names.js';
import type { Registry } from '../registry.js';

/** A scope by name; a mistyped name is answered with the closest one. */
export function findScope(registry: Registry, name: string): ScopeDef {
  const scope = registry.scopes.get(name);
  const off = scope && registry.disabled('scope', name);
  if (off) throw new RpcError(ErrorCodes.PluginError, off);
  if (scope) return scope;
  // Only a well-formed name is repeated (and hinted from): anything else could be escape sequences or a guessed secret.
  if (!isName('scope', name)) throw new RpcError(ErrorCodes.ScopeNotFound, 'no scope has that name: a scope name is group.kebab-name, such as mail.smart-host (cpcmd scope:list shows them all)');
  const hint = [...registry.scopes.keys()].find((s) => s.split('.')[1] === name.split('.')[1] || s.startsWith(name));
  throw new RpcError(ErrorCodes.ScopeNotFound, `no scope named ${name}${hint ? `; did you mean ${hint}?` : ''} (cpcmd scope:list shows them all)`);
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
  const named = isName('var', name) ? `named ${name}` : 'has that name (a var name is snake_case)';
  throw new RpcError(ErrorCodes.ScopeNotFound, `no var ${named} (cpcmd var:list shows them all)`);
}
