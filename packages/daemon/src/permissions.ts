import { ErrorCodes, type Role, RpcError } from '@scoped/protocol';
import type { Engine } from './engine.js';
import { type Principal, hasRole, scopeAllowed } from './tokens.js';

/** The role each method needs; every method is listed, so a new one cannot slip through unguarded. */
const NEEDS: Record<string, Role> = {
  'scope.list': 'reader',
  'scope.info': 'reader',
  'scope.get': 'reader',
  'scope.check': 'reader',
  'var.list': 'reader',
  'var.get': 'reader',
  'unit.list': 'reader',
  'audit.list': 'reader',
  'daemon.status': 'reader',
  'rpc.discover': 'reader',
  'job.get': 'reader',
  'events.subscribe': 'reader',
  'events.unsubscribe': 'reader',
  'gui.login': 'reader',
  'job.cancel': 'operator',
  'scope.set': 'operator',
  'scope.reset': 'operator',
  'scope.adopt': 'operator',
  'var.set': 'operator',
  'unit.converge': 'operator',
  'token.create': 'admin',
  'token.list': 'admin',
  'token.revoke': 'admin',
};

const forbidden = (p: Principal, what: string) =>
  new RpcError(ErrorCodes.Forbidden, `forbidden: ${p.name} (${p.role}${p.scopes.length ? `, scopes ${p.scopes.join(',')}` : ''}) lacks ${what}`, {
    missing: what,
  });

/**
 * Refuse a call the principal may not make: readers read, operators also set, reset and
 * converge on the scopes their globs match (and the units those scopes drive), admins do
 * everything. Raw vars count as the scope cp.bootstrapper; an adminOnly var is the admin's alone.
 */
export function authorize(method: string, params: Record<string, unknown>, p: Principal, engine: Engine): void {
  const role = NEEDS[method] ?? 'admin';
  if (!hasRole(p, role)) throw forbidden(p, `the ${role} role needed for ${method}`);
  // Refused here before the value is even read; the engine refuses adminOnly vars on every other path too.
  if (method === 'var.set' && p.role !== 'admin' && engine.registry.vars.get(String(params.name))?.adminOnly) {
    throw forbidden(p, `the admin role needed to change ${String(params.name)}`);
  }
  if (p.role === 'admin' || p.scopes.length === 0) return;
  const scope = (name: string) => {
    if (!scopeAllowed(p, name)) throw forbidden(p, `${role === 'reader' ? 'read' : 'write'} access to scope ${name}`);
  };
  switch (method) {
    case 'scope.info':
    case 'scope.get':
    case 'scope.set':
    case 'scope.reset':
    case 'scope.adopt':
      scope(String(params.name));
      break;
    case 'scope.check':
      if (params.name === undefined) throw forbidden(p, 'access to every scope (name one scope to check)');
      scope(String(params.name));
      break;
    case 'var.list':
    case 'var.get':
    case 'var.set':
      scope('cp.bootstrapper');
      break;
    case 'unit.converge': {
      const names = (params.units as string[] | undefined)?.length ? (params.units as string[]) : [...engine.registry.units.keys()];
      for (const unit of names) {
        const driven = [...engine.registry.scopes.values()].some(
          (s) => scopeAllowed(p, s.name) && engine.registry.unitsReading(s.vars).some((u) => u.name === unit),
        );
        if (!driven) throw forbidden(p, `converge of unit ${unit}, which none of its scopes drives`);
      }
      break;
    }
  }
}
