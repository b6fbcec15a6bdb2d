import type { Json } from '@scoped/protocol';
import { redactValue, type PlanContext, type ScopeContext } from '@scoped/sdk';
import type { HostSystem } from '@scoped/system';
import type { Logger } from '../log.js';
import { Mutex } from '../mutex.js';
import type { Registry } from '../registry.js';
import type { State, Store } from '../store.js';
import type { EngineOptions, EventSink } from './types.js';
import { asJson } from './values.js';

/**
 * What every part of the engine shares: the plugins, the store, the system, the current state
 * of the vars and the one lock that every mutation runs under.
 */
export class EngineCore {
  state!: State;
  /** Where events go (the event bus); set by the daemon. Without one, the writes that go with them are still committed. */
  onEvents: EventSink = (_events, alongside) => (alongside ? this.store.transaction(alongside) : undefined);
  readonly lock = new Mutex();
  readonly planContext: PlanContext;
  /** Refusals already in the audit trail, so the RPC layer does not record them twice. */
  readonly audited = new WeakSet<Error>();
  /** The vars of the current state, computed once per state (callers must not change it). */
  private varsOf: { state: State; vars: Record<string, unknown> } | undefined;

  constructor(
    readonly registry: Registry,
    readonly store: Store,
    readonly system: HostSystem,
    readonly options: EngineOptions,
    readonly log: Logger,
  ) {
    this.planContext = { system, options };
  }

  /** Every var's current value, defaults filled in. */
  vars(): Record<string, unknown> {
    if (this.varsOf?.state === this.state) return this.varsOf.vars;
    const out: Record<string, unknown> = {};
    for (const [name, def] of this.registry.vars) out[name] = name in this.state.vars ? this.state.vars[name] : def.default;
    this.varsOf = { state: this.state, vars: Object.freeze(out) };
    return out;
  }

  /** The vars that still hold the value adopted from the system at the first start (no one has set them since). */
  adoptedVars(): Set<string> {
    const adopted = this.state.adopted ?? {};
    return new Set(Object.keys(adopted).filter((v) => this.state.varRevisions[v] === adopted[v] && this.registry.vars.has(v)));
  }

  redactVar(name: string, value: unknown): Json {
    return asJson(redactValue(value, this.registry.vars.get(name)?.secret));
  }

  /**
   * The context scope code runs with; `words` are the arguments as typed (cpcmd sends them), for
   * scopes that want text; `purge` a set's --purge.
   */
  scopeContext(vars: Record<string, unknown> = this.vars(), words?: readonly (string | null)[], purge?: boolean): ScopeContext {
    return {
      system: this.system,
      vars,
      varDefs: this.registry.vars,
      redactVar: (n, v) => this.redactVar(n, v),
      adopted: this.adoptedVars(),
      ...(words ? { words } : {}),
      ...(purge ? { purge } : {}),
    };
  }

  /** The highest revision at which any of these vars changed. */
  varsRevision(varNames: readonly string[]): number {
    return Math.max(0, ...varNames.map((v) => this.state.varRevisions[v] ?? 0));
  }

  /** The scope that declares a var (the first one, by registration), if any but cp.bootstrapper does. */
  scopeOfVar(v: string): string | undefined {
    for (const s of this.registry.scopes.values()) if (s.vars.includes(v)) return s.name;
    return undefined;
  }
}
