import { ErrorCodes, RpcError, type ApplyResult, type Json, type PlanChange } from '@scoped/protocol';
import { changeTarget, redactValue, type ScopeContext, type ScopeDef, type UnitDef } from '@scoped/sdk';
import { crashpoint } from '@scoped/system';
import type { Logger } from '../log.js';
import type { Registry } from '../registry.js';
import type { State, Store, Tx } from '../store.js';
import type { Applier } from './apply.js';
import { type AuditRecord, type AuditTrail, auditValue } from './audit.js';
import type { EngineCore } from './core.js';
import { type JournalRecovery, RollbackIncomplete } from './journal.js';
import { inputErrors, invalid } from './errors.js';
import { findScope, findUnit, findVar } from './lookup.js';
import type { PluginCode } from './plugin-code.js';
import type { Reads } from './reads.js';
import { redactScopeValue, type Secrets } from './secrets.js';
import type { Actor, Journal, Planned, Progress } from './types.js';
import { asJson, faultError, valueFault } from './values.js';

interface Mutation {
  action: string;
  target: string;
  varChanges: Record<string, unknown>;
  /** Units to converge, whether or not a var changed (converge), or undefined for "the units reading changed vars". */
  units?: UnitDef[];
  converge: boolean;
  dryRun: boolean;
  ifRevision?: number | undefined;
  /** The vars whose revision ifRevision is compared with. */
  revisionVars?: readonly string[];
  /** The value being replaced, as shown in the audit; read under the lock. */
  old?: () => unknown;
  new?: unknown;
  actor: Actor;
  progress?: Progress | undefined;
  /** The caller gave these values (scope.set, var.set): secrets they carry are written anew (see PlanContext.rewrite). */
  supplied?: boolean;
}

/** A scope.set as the engine takes it: a typed value, or CLI words (args, with the text each was typed as). */
interface SetParams {
  name: string;
  value?: unknown;
  args?: readonly unknown[];
  words?: readonly (string | null)[];
  dryRun?: boolean;
  ifRevision?: number;
  converge?: boolean;
  verify?: boolean;
  purge?: boolean;
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

/** Refuse a non-admin whose mutation touches adminOnly vars, on every path (var.set, cp.bootstrapper, a scope's set, reset, adopt). */
function requireAdmin(actor: Actor, adminOnly: readonly string[]): void {
  if (adminOnly.length === 0 || actor.admin) return;
  const vars = adminOnly.join(', ');
  throw new RpcError(
    ErrorCodes.Forbidden,
    `forbidden: ${actor.name} lacks the admin role needed to change ${vars}; ask an admin (the unix socket or an admin token)`,
    {
      missing: `the admin role needed to change ${vars}`,
    },
  );
}

/**
 * The mutation pipeline: every set, reset, adopt, var.set and converge is validated, then runs
 * under the one lock (so sets on the same unit are serialized and each plans against what the
 * previous one left): diff the vars, plan, apply (Applier), persist, audit, announce.
 */
export class Mutations {
  private readonly registry: Registry;
  private readonly store: Store;
  private readonly log: Logger;

  constructor(
    private readonly core: EngineCore,
    private readonly secrets: Secrets,
    private readonly code: PluginCode,
    private readonly reads: Reads,
    private readonly applier: Applier,
    private readonly trail: AuditTrail,
    private readonly journal: JournalRecovery,
  ) {
    this.registry = core.registry;
    this.store = core.store;
    this.log = core.log;
  }

  private get state(): State {
    return this.core.state;
  }

  private set state(state: State) {
    this.core.state = state;
  }

  private vars(): Record<string, unknown> {
    return this.core.vars();
  }

  private plan(units: readonly UnitDef[], vars: Record<string, unknown>, reuse = false, ctx = this.core.planContext): Promise<Planned[]> {
    return this.reads.plan(units, vars, reuse, ctx);
  }

  private audit(e: AuditRecord, tx?: Tx): Promise<void> {
    return this.trail.record(e, tx);
  }

  private applyPlanned(
    planned: readonly Planned[],
    vars: Record<string, unknown>,
    intent: Pick<Journal, 'action' | 'target' | 'actor' | 'fromRevision' | 'toRevision'>,
    progress?: Progress,
  ): Promise<void> {
    return this.applier.applyPlanned(planned, vars, intent, progress);
  }

  private show(planned: readonly Planned[]): PlanChange[] {
    return planned.flatMap(({ unit, changes }) =>
      changes.map((c) => ({ unit: unit.name, kind: c.kind, target: changeTarget(c), summary: this.secrets.describe(c) })),
    );
  }

  /** Turn a scope's value (or CLI words) into validated var changes. */
  async scopeVars(
    scope: ScopeDef,
    input: { value?: unknown; args?: readonly unknown[]; words?: readonly (string | null)[]; purge?: boolean },
  ): Promise<{ value: unknown; vars: Record<string, unknown> }> {
    const ctx = this.core.scopeContext(undefined, input.words, input.purge);
    if (input.value !== undefined && input.args !== undefined) throw new RpcError(ErrorCodes.InvalidParams, 'give either value or args, not both');
    if (input.value === undefined && input.args === undefined)
      throw new RpcError(ErrorCodes.InvalidParams, `give a value for ${scope.name}; usage: ${scope.name} ${scope.usage}`);
    const fault = input.args !== undefined ? valueFault(input.args, (i) => `argument ${Number(i) + 1}`) : valueFault(input.value);
    if (fault) throw faultError(scope.name, fault);
    const raw = input.args !== undefined ? await this.code.scope(scope, 'parse its arguments', () => scope.parseArgs(input.args!, ctx)) : input.value;
    const parsed = scope.schema.safeParse(raw);
    if (!parsed.success) throw invalid(`invalid value for ${scope.name}`, parsed.error, scope.usage);
    const vars = await this.code.scope(scope, 'turn its value into vars', () => scope.toVars(parsed.data, ctx));
    return { value: parsed.data, vars: this.validateVars(vars) };
  }

  /** The vars among these that only an admin may change. */
  private adminOnly(vars: Record<string, unknown>): string[] {
    return Object.keys(vars).filter((v) => this.registry.vars.get(v)?.adminOnly);
  }

  /**
   * Every var of a change checked once, here, for every way in (scope.set, var.set, adopt): its
   * size, text no config file line can carry, then its schema.
   */
  validateVars(vars: Record<string, unknown>): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [name, value] of Object.entries(vars)) {
      const def = findVar(this.registry, name);
      const fault = valueFault(value);
      if (fault) throw faultError(name, fault);
      const r = def.schema.safeParse(value);
      if (!r.success) throw invalid(`invalid value for ${name}`, r.error);
      out[name] = r.data;
    }
    return out;
  }

  async set(params: SetParams, actor: Actor, progress?: Progress): Promise<ApplyResult & { name: string; value: Json }> {
    return (await this.prepareSet(params, actor))(progress);
  }

  /**
   * Everything of a set that can refuse it (the scope, the value, --verify), done now; the
   * mutation itself is returned to run now or as a job.
   */
  async prepareSet(params: SetParams, actor: Actor): Promise<(progress?: Progress) => Promise<ApplyResult & { name: string; value: Json }>> {
    const scope = findScope(this.registry, params.name);
    if (params.converge === false && !scope.allowNoConverge) {
      throw new RpcError(ErrorCodes.InvalidParams, `${scope.name} always converges; --no-converge applies to cp.bootstrapper only`);
    }
    if (params.purge && !scope.allowPurge) {
      throw new RpcError(
        ErrorCodes.InvalidParams,
        `${scope.name} keeps nothing to purge; --purge applies to scopes that delete what they stop using, such as mail.dkim`,
      );
    }
    const input: { value?: unknown; args?: readonly unknown[]; words?: readonly (string | null)[]; purge?: boolean } = {};
    if (params.purge) input.purge = true;
    if (params.value !== undefined) input.value = params.value;
    if (params.args !== undefined) input.args = params.args;
    if (params.words !== undefined) input.words = params.words;
    const { value, vars } = await this.scopeVars(scope, input);
    // Refused now rather than in a queued job; mutate checks again.
    requireAdmin(actor, this.adminOnly(vars));
    const ctx = this.core.scopeContext();
    if (params.verify) {
      if (!scope.verify)
        throw new RpcError(
          ErrorCodes.InvalidParams,
          `${scope.name} has nothing to verify; --verify applies to scopes that reach outside, such as mail.smart-host`,
        );
      await inputErrors(() => scope.verify!(value, ctx));
    }
    const shown = asJson(redactScopeValue(scope, value, ctx));
    const old = () => this.oldValue(scope, this.core.scopeContext(), vars);
    return async (progress) => {
      const result = await this.mutate({
        action: 'scope.set',
        target: scope.name,
        varChanges: vars,
        converge: params.converge ?? true,
        dryRun: params.dryRun ?? false,
        ifRevision: params.ifRevision,
        revisionVars: scope.vars.length ? scope.vars : Object.keys(vars),
        old,
        new: shown,
        actor,
        progress,
        supplied: true,
      });
      return { ...result, name: scope.name, value: shown };
    };
  }

  private async oldValue(scope: ScopeDef, ctx: ScopeContext, vars: Record<string, unknown>): Promise<unknown> {
    if (scope.vars.length === 0) return Object.fromEntries(Object.keys(vars).map((v) => [v, this.core.redactVar(v, ctx.vars[v])]));
    try {
      return redactValue(await this.code.scope(scope, 'answer get', () => scope.get(ctx, [])), scope.secretFields);
    } catch (err) {
      // A scope that cannot say what it has now is still set, unless its plugin was just taken out of service.
      if (err instanceof RpcError && err.code === ErrorCodes.PluginError && this.registry.disabled('scope', scope.name)) throw err;
      return undefined;
    }
  }

  async reset(params: { name: string; dryRun?: boolean }, actor: Actor): Promise<ApplyResult & { name: string; value: Json }> {
    const scope = findScope(this.registry, params.name);
    if (scope.vars.length === 0 && !scope.resetVars)
      throw new RpcError(ErrorCodes.InvalidParams, `${scope.name} has nothing to reset; reset a var with cpcmd scope:set cp.bootstrapper VAR VALUE`);
    const ctx = this.core.scopeContext();
    const vars = scope.resetVars ? scope.resetVars(ctx) : Object.fromEntries(scope.vars.map((v) => [v, findVar(this.registry, v).default]));
    const result = await this.mutate({
      action: 'scope.reset',
      target: scope.name,
      varChanges: vars,
      converge: true,
      dryRun: params.dryRun ?? false,
      revisionVars: scope.vars,
      old: () => this.oldValue(scope, this.core.scopeContext(), vars),
      new: 'default',
      actor,
    });
    return { ...result, name: scope.name, value: Object.fromEntries(Object.entries(vars).map(([k, v]) => [k, this.core.redactVar(k, v)])) };
  }

  /** Take what the system has now into the scope's vars, then converge whatever else differs. */
  async adopt(params: { name: string; dryRun?: boolean }, actor: Actor): Promise<ApplyResult & { name: string; value: Json; notes?: string[] }> {
    const scope = findScope(this.registry, params.name);
    if (!scope.adopt) throw new RpcError(ErrorCodes.InvalidParams, `${scope.name} cannot adopt what the system has; converge it instead (cpcmd converge)`);
    const ctx = this.core.scopeContext();
    const adopted = await this.code.scope(scope, 'adopt', () => scope.adopt!(ctx));
    const vars = this.validateVars(adopted.vars);
    const notes = adopted.notes?.length ? { notes: [...adopted.notes] } : {};
    const shown = Object.fromEntries(Object.entries(vars).map(([k, v]) => [k, this.core.redactVar(k, v)]));
    const result = await this.mutate({
      action: 'scope.adopt',
      target: scope.name,
      varChanges: vars,
      converge: true,
      dryRun: params.dryRun ?? false,
      revisionVars: scope.vars,
      old: () => Object.fromEntries(Object.keys(vars).map((k) => [k, this.core.redactVar(k, this.vars()[k])])),
      new: shown,
      actor,
    });
    return { ...result, name: scope.name, value: shown, ...notes };
  }

  async setVar(params: { name: string; value: unknown; dryRun?: boolean; converge?: boolean; ifRevision?: number }, actor: Actor) {
    const def = findVar(this.registry, params.name);
    const vars = this.validateVars({ [def.name]: params.value });
    const result = await this.mutate({
      action: 'var.set',
      target: def.name,
      varChanges: vars,
      converge: params.converge ?? true,
      dryRun: params.dryRun ?? false,
      ifRevision: params.ifRevision,
      revisionVars: [def.name],
      old: () => this.core.redactVar(def.name, this.vars()[def.name]),
      new: this.core.redactVar(def.name, vars[def.name]),
      actor,
      supplied: true,
    });
    return { ...result, name: def.name, value: this.core.redactVar(def.name, vars[def.name]) };
  }

  async converge(params: { units?: string[]; dryRun?: boolean }, actor: Actor, progress?: Progress): Promise<ApplyResult> {
    return this.prepareConverge(params, actor)(progress);
  }

  /** Look the units up now (an unknown one is refused at once); return the converge to run now or as a job. */
  prepareConverge(params: { units?: string[]; dryRun?: boolean }, actor: Actor): (progress?: Progress) => Promise<ApplyResult> {
    const units = params.units?.length
      ? params.units.map((u) => findUnit(this.registry, u))
      : [...this.registry.units.values()].filter((u) => !this.registry.disabled('unit', u.name));
    return (progress) =>
      this.mutate({
        action: 'unit.converge',
        target: units.map((u) => u.name).join(','),
        varChanges: {},
        units,
        converge: true,
        dryRun: params.dryRun ?? false,
        actor,
        progress,
      });
  }

  /** The eight steps: validate (done by the caller), diff vars, plan, apply, verify, persist, audit, notify. */
  private mutate(m: Mutation): Promise<ApplyResult> {
    return this.core.lock.run(async () => {
      // What is replaced is read under the lock, so concurrent sets each record the value they replaced.
      m.progress?.started();
      let old: unknown;
      let before: Record<string, unknown>, next: Record<string, unknown>, changedVars: string[], planned: Planned[], plan: PlanChange[];
      try {
        if (!m.dryRun) await this.journal.gate(m.action, m.actor);
        old = await m.old?.();
        if (m.progress?.signal.aborted) throw new RpcError(ErrorCodes.ConvergeFailed, 'cancelled before it started; nothing was changed');
        if (m.ifRevision !== undefined) {
          const current = Math.max(0, ...(m.revisionVars ?? []).map((v) => this.state.varRevisions[v] ?? 0));
          if (current !== m.ifRevision) {
            throw new RpcError(ErrorCodes.Conflict, `${m.target} is at revision ${current}, not ${m.ifRevision}; read it again and retry`, {
              revision: current,
            });
          }
        }
        before = this.vars();
        next = { ...before, ...m.varChanges };
        // A supplied secret counts as a change even when it equals the stored one, or the answer would say whether it does.
        const rewrite = m.supplied ? this.secrets.secretsGiven(m.varChanges) : new Set<string>();
        // A var still holding what the system had at the first start becomes the caller's choice when named, even unchanged.
        const claimed = m.supplied ? this.core.adoptedVars() : new Set<string>();
        changedVars = Object.keys(m.varChanges).filter((k) => rewrite.has(k) || claimed.has(k) || !same(before[k], next[k]));
        requireAdmin(m.actor, this.adminOnly(m.varChanges));
        for (const unit of this.registry.unitsReading(changedVars)) {
          const problem = await this.code.unit(unit, 'validate', async () => unit.validate?.(next, this.core.planContext));
          if (problem) throw new RpcError(ErrorCodes.InvalidParams, problem);
        }
        const units = m.units ?? (m.converge ? this.registry.unitsReading(changedVars) : []);
        planned = await this.plan(units, next, false, rewrite.size ? { ...this.core.planContext, rewrite } : this.core.planContext);
        plan = this.show(planned);
      } catch (err) {
        // Refused inside the lock (also when running as a job): audited here, once.
        if (err instanceof RpcError) {
          await this.audit({ actor: m.actor, action: m.action, target: m.target, old, new: m.new, outcome: 'refused', reason: err.message });
          this.core.audited.add(err);
        }
        throw err;
      }
      if (m.dryRun) return { status: 'planned', plan, revision: this.state.revision };
      const audit = (outcome: 'applied' | 'unchanged' | 'rolled-back', reason?: string) =>
        this.audit({
          actor: m.actor,
          action: m.action,
          target: m.target,
          old,
          new: m.new,
          plan: plan.map((p) => p.summary),
          outcome,
          ...(reason ? { reason } : {}),
        });
      if (changedVars.length === 0 && planned.length === 0) {
        await audit('unchanged');
        return { status: 'unchanged', plan, revision: this.state.revision };
      }

      const toRevision = changedVars.length ? this.state.revision + 1 : this.state.revision;
      const journal = { action: m.action, target: m.target, actor: m.actor.name, fromRevision: this.state.revision, toRevision };
      if (planned.length) {
        try {
          await this.applyPlanned(planned, next, journal, m.progress);
        } catch (err) {
          const reason = err instanceof Error ? err.message : String(err);
          this.log.error(err instanceof RollbackIncomplete ? 'converge failed; its rollback did not finish' : 'converge failed; rolled back', {
            target: m.target,
            reason,
          });
          await audit('rolled-back', reason);
          if (err instanceof RollbackIncomplete) throw err;
          throw new RpcError(ErrorCodes.ConvergeFailed, `converge failed and was rolled back: ${reason}`, { plan });
        }
      }
      // The new state, its audit entry, the events announcing it and the journal's end go to disk
      // in one commit: a crash before it leaves the journal and the old revision (a restart undoes
      // the apply, or finishes a converge that changed no vars), a crash after it leaves nothing to recover.
      let state: State | undefined;
      if (changedVars.length) {
        const varRevisions = { ...this.state.varRevisions };
        for (const v of changedVars) varRevisions[v] = toRevision;
        const vars = { ...this.state.vars };
        for (const v of changedVars) vars[v] = next[v];
        state = { ...this.state, revision: toRevision, vars, varRevisions };
      }
      await this.announce(m, changedVars, planned, toRevision, async (tx) => {
        if (state) await this.store.saveState(state, tx);
        await this.audit(
          { actor: m.actor, action: m.action, target: m.target, old, new: m.new, plan: plan.map((p) => p.summary), outcome: 'applied', revision: toRevision },
          tx,
        );
        if (planned.length) await this.store.saveJournal(undefined, tx);
      });
      if (state) this.state = state;
      crashpoint();
      this.log.info('applied', { action: m.action, target: m.target, actor: m.actor.name, changes: plan.length, revision: this.state.revision });
      return { status: 'applied', plan, revision: this.state.revision };
    });
  }

  /**
   * Events for an applied mutation (each scope whose vars changed, the units that converged),
   * stored in one commit with what `alongside` writes (the change itself), before the answer goes out.
   */
  private async announce(
    m: Mutation,
    changedVars: readonly string[],
    planned: readonly Planned[],
    revision: number,
    alongside: (tx: Tx) => Promise<void>,
  ): Promise<void> {
    const actor = m.actor.name;
    // The scopes that declare a changed var, and the one set; cp.bootstrapper for vars no other scope declares.
    const scopes = new Set([...this.registry.scopes.values()].filter((s) => s.vars.some((v) => changedVars.includes(v))).map((s) => s.name));
    if (this.registry.scopes.has(m.target)) scopes.add(m.target);
    if (changedVars.some((v) => this.core.scopeOfVar(v) === undefined)) scopes.add('cp.bootstrapper');
    const events: { topic: string; data: unknown }[] = [...scopes].map((scope) => ({
      topic: 'scope.changed',
      data: { scope, action: m.action, revision, actor, ...(scope === m.target ? { value: auditValue(m.new) } : {}) },
    }));
    if (planned.length)
      events.push({ topic: 'unit.converged', data: { units: planned.map((p) => p.unit.name), action: m.action, target: m.target, revision, actor } });
    this.reads.converged(planned.map((p) => p.unit));
    await this.core.onEvents(events, alongside);
  }
}
