import type { ApplyResult, AuditEntry as ListedEntry, Drift, Json, Pending } from '@scoped/protocol';
import type { Change, PlanContext, ScopeContext, ScopeDef, UnitDef, VarDef } from '@scoped/sdk';
import type { HostSystem } from '@scoped/system';
import type { Logger } from './log.js';
import type { Registry } from './registry.js';
import type { Noop, Refusal, Store } from './store.js';
import { Applier } from './engine/apply.js';
import { type AuditRecord, AuditTrail } from './engine/audit.js';
import { EngineCore } from './engine/core.js';
import { findScope, findUnit, findVar } from './engine/lookup.js';
import { Mutations } from './engine/mutation.js';
import { PluginCode } from './engine/plugin-code.js';
import { Reads } from './engine/reads.js';
import { JournalRecovery } from './engine/journal.js';
import { Startup } from './engine/recovery.js';
import { Secrets, redactScopeValue } from './engine/secrets.js';
import type { Actor, EngineOptions, EventSink, GetResult, Progress } from './engine/types.js';
import { withTimeout } from './engine/watchdog.js';

export { invalid, toRpcError } from './engine/errors.js';
export { hiddenStatus } from './engine/journal.js';
export { globTest } from './engine/glob.js';
export type { Actor, EngineOptions, GetResult, Progress } from './engine/types.js';
export { asJsonObject } from './engine/values.js';

/**
 * The scope engine: validates, plans, applies with a snapshot, verifies, rolls back on
 * failure, persists and audits. A facade over its parts in engine/: the shared state (core),
 * reads and drift (reads), plugin code under time limits (plugin-code, watchdog), secrets,
 * the mutation pipeline (mutation), snapshot/apply/rollback (apply), start-up and crash
 * recovery (recovery), and the audit trail (audit).
 */
export class Engine {
  private readonly core: EngineCore;
  private readonly secrets: Secrets;
  private readonly reads: Reads;
  private readonly mutations: Mutations;
  private readonly startup: Startup;
  /** Crash recovery, and a recovery that could not finish (reported by daemon.status and scope.check). */
  readonly recovery: JournalRecovery;
  private readonly trail: AuditTrail;
  readonly planContext: PlanContext;
  /** Refusals already in the audit trail, so the RPC layer does not record them twice. */
  readonly audited: WeakSet<Error>;

  constructor(
    readonly registry: Registry,
    store: Store,
    readonly system: HostSystem,
    readonly options: EngineOptions,
    log: Logger,
  ) {
    const core = (this.core = new EngineCore(registry, store, system, options, log));
    this.secrets = new Secrets(registry, log);
    const code = new PluginCode(registry, log, this.secrets);
    this.reads = new Reads(core, this.secrets, code);
    this.trail = new AuditTrail(store, options, () => core.state.revision);
    const reads = this.reads;
    const recovery = (this.recovery = new JournalRecovery({
      store,
      system,
      log,
      audit: (e) => this.trail.record(e),
      finish: async (j) => {
        const units = j.units.flatMap((n) => registry.units.get(n) ?? []);
        const planned = await reads.plan(units, core.vars());
        await system.apply(planned.flatMap((p) => p.changes));
      },
      announce: async (j) => {
        // The events the interrupted converge did not get to store.
        const data = { action: j.action, target: j.target, revision: core.state.revision, actor: j.actor, recovered: true };
        await core.onEvents([
          ...(registry.scopes.has(j.target) ? [{ topic: 'scope.changed', data: { scope: j.target, ...data } }] : []),
          { topic: 'unit.converged', data: { units: j.units, ...data } },
        ]);
      },
    }));
    this.mutations = new Mutations(core, this.secrets, code, reads, new Applier(core, this.secrets, reads, recovery), this.trail, recovery);
    this.startup = new Startup(core, this.trail, recovery, code);
    this.planContext = core.planContext;
    this.audited = core.audited;
  }

  /** Where events go (the event bus); set by the daemon. */
  get onEvents(): EventSink {
    return this.core.onEvents;
  }

  set onEvents(sink: EventSink) {
    this.core.onEvents = sink;
  }

  /** Load the state and recover from an interrupted converge, before anything is served. */
  init(): Promise<void> {
    return this.startup.init();
  }

  get revision(): number {
    return this.core.state.revision;
  }

  /** Every var's current value, defaults filled in. */
  vars(): Record<string, unknown> {
    return this.core.vars();
  }

  redactVar(name: string, value: unknown): Json {
    return this.core.redactVar(name, value);
  }

  /** Whether a change carries secret content (see Secrets.secretChange). */
  secretChange(c: Change): boolean {
    return this.secrets.secretChange(c);
  }

  /** A change as users read it (plans, job steps, verification): secret content never enters the text. */
  describe(c: Change): string {
    return this.secrets.describe(c);
  }

  scopeContext(vars?: Record<string, unknown>): ScopeContext {
    return this.core.scopeContext(vars);
  }

  scope(name: string): ScopeDef {
    return findScope(this.registry, name);
  }

  unit(name: string): UnitDef {
    return findUnit(this.registry, name);
  }

  varDef(name: string): VarDef {
    return findVar(this.registry, name);
  }

  /** A scope's value shown safely. */
  redactScopeValue(scope: ScopeDef, value: unknown, ctx: ScopeContext): unknown {
    return redactScopeValue(scope, value, ctx);
  }

  scopeRevision(scope: ScopeDef, varNames: readonly string[] = scope.vars): number {
    return this.core.varsRevision(varNames);
  }

  /** A scope as the system has it now, with its drift (see Reads.get). */
  get(name: string, args: readonly unknown[] = [], words?: readonly (string | null)[]): Promise<GetResult> {
    return this.reads.get(name, args, words);
  }

  /** Differences between what the vars ask of these units and what the system has. */
  drift(units: readonly UnitDef[], vars?: Record<string, unknown>, scope?: string): Promise<Drift[]> {
    return this.reads.drift(units, vars, scope);
  }

  check(name?: string): Promise<{ ok: boolean; drift: Drift[] }> {
    return this.reads.check(name);
  }

  /** Defaults not yet applied: vars still holding what the system had at the first start (see Reads.pending). */
  pending(name?: string): Pending[] {
    return this.reads.pending(name);
  }

  /** Wait (at most `ms`) until no mutation runs or waits: before the store closes at shutdown. */
  async settle(ms: number): Promise<void> {
    await withTimeout(
      this.core.lock.run(async () => {}),
      ms,
      'a converge was still running',
    ).catch(() => undefined);
  }

  /** Turn a scope's value (or CLI words) into validated var changes. */
  scopeVars(
    scope: ScopeDef,
    input: { value?: unknown; args?: readonly unknown[]; words?: readonly (string | null)[] },
  ): Promise<{ value: unknown; vars: Record<string, unknown> }> {
    return this.mutations.scopeVars(scope, input);
  }

  /** Every var of a change checked once, for every way in (scope.set, var.set, adopt). */
  validateVars(vars: Record<string, unknown>): Record<string, unknown> {
    return this.mutations.validateVars(vars);
  }

  set(...args: Parameters<Mutations['set']>): ReturnType<Mutations['set']> {
    return this.mutations.set(...args);
  }

  /** Everything of a set that can refuse it, done now; the mutation itself is returned to run now or as a job. */
  prepareSet(...args: Parameters<Mutations['prepareSet']>): ReturnType<Mutations['prepareSet']> {
    return this.mutations.prepareSet(...args);
  }

  reset(...args: Parameters<Mutations['reset']>): ReturnType<Mutations['reset']> {
    return this.mutations.reset(...args);
  }

  /** Take what the system has now into the scope's vars, then converge whatever else differs. */
  adopt(...args: Parameters<Mutations['adopt']>): ReturnType<Mutations['adopt']> {
    return this.mutations.adopt(...args);
  }

  setVar(...args: Parameters<Mutations['setVar']>): ReturnType<Mutations['setVar']> {
    return this.mutations.setVar(...args);
  }

  converge(params: { units?: string[]; dryRun?: boolean }, actor: Actor, progress?: Progress): Promise<ApplyResult> {
    return this.mutations.converge(params, actor, progress);
  }

  /** Look the units up now (an unknown one is refused at once); return the converge to run now or as a job. */
  prepareConverge(params: { units?: string[]; dryRun?: boolean }, actor: Actor): (progress?: Progress) => Promise<ApplyResult> {
    return this.mutations.prepareConverge(params, actor);
  }

  /** Record one audit entry durably (see AuditTrail.record). */
  audit(e: AuditRecord): Promise<void> {
    return this.trail.record(e);
  }

  /** The history of changes (never refusals or no-ops). */
  auditEntries(limit: number, filter: (e: ListedEntry) => boolean): Promise<ListedEntry[]> {
    return this.trail.entries(limit, filter);
  }

  /** The refused calls, one row per caller, action and target, with counts. */
  refusals(limit: number, filter: (r: Refusal) => boolean): Promise<Refusal[]> {
    return this.trail.refusals(limit, filter);
  }

  /** The calls that changed nothing, one row per caller, action and target, with counts and the last value. */
  noops(limit: number, filter: (r: Noop) => boolean): Promise<Noop[]> {
    return this.trail.noops(limit, filter);
  }
}
