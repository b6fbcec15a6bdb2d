import { ErrorCodes, RpcError } from '@scoped/protocol';
import { ScopeInputError, type ScopeDef, type UnitDef } from '@scoped/sdk';
import type { Logger } from '../log.js';
import type { Registry } from '../registry.js';
import { inputErrors } from './errors.js';
import type { Secrets } from './secrets.js';
import { withTimeout } from './watchdog.js';

/**
 * Runs plugin code (a scope's get, parseArgs, toVars; a unit's observe, plan, validate) under
 * its time limit. Overrunning takes the plugin out of service (reported in daemon.status) so it
 * can never hold the engine's lock for longer; anything but a refusal it throws is a plugin error.
 */
export class PluginCode {
  constructor(
    private readonly registry: Registry,
    private readonly log: Logger,
    private readonly secrets: Secrets,
  ) {}

  /** Run a unit's own code within its time limit. */
  unit<T>(unit: UnitDef, what: string, fn: () => Promise<T>): Promise<T> {
    const off = this.registry.disabled('unit', unit.name);
    if (off) return Promise.reject(new RpcError(ErrorCodes.PluginError, off));
    return this.run('unit', unit.name, unit.timeoutMs ?? 10_000, what, fn);
  }

  /** Run a scope's own code (get, parseArgs, toVars, adopt) within its time limit; its input errors answer invalid params. */
  scope<T>(scope: ScopeDef, what: string, fn: () => T | Promise<T>): Promise<T> {
    return this.run('scope', scope.name, scope.timeoutMs ?? 10_000, what, () => inputErrors(fn));
  }

  private run<T>(kind: 'unit' | 'scope', name: string, limit: number, what: string, fn: () => Promise<T>): Promise<T> {
    const fail = (err: unknown): never => {
      if (err instanceof RpcError && err.code === ErrorCodes.Timeout) {
        this.registry.disablePluginOf(kind, name, err.message);
        this.log.error(`${kind} timed out; its plugin is disabled`, { [kind]: name, reason: err.message });
        throw new RpcError(ErrorCodes.PluginError, `${err.message}; its plugin is disabled until scoped restarts`);
      }
      if (err instanceof RpcError || err instanceof ScopeInputError) throw err;
      throw new RpcError(ErrorCodes.PluginError, `${kind} ${name} failed in ${what}: ${this.secrets.thrownBy(kind, name, err)}`);
    };
    // Written without async/await: this runs several times for every scope.get.
    let running: Promise<T>;
    try {
      running = fn();
    } catch (err) {
      return Promise.reject(err).catch(fail);
    }
    return withTimeout(running, limit, () => `${kind} ${name} did not ${what} within ${limit} ms`).catch(fail);
  }
}
