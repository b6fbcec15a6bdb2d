import type { VarDef } from '@scoped/sdk';
import type { Logger } from '../log.js';
import type { Registry } from '../registry.js';
import type { State, Store } from '../store.js';
import { type AuditRecord, type AuditTrail, clip } from './audit.js';
import type { EngineCore } from './core.js';
import type { JournalRecovery } from './journal.js';
import type { PluginCode } from './plugin-code.js';
import type { EngineOptions } from './types.js';
import { valueProblem } from './values.js';

/**
 * Start-up: load the state, put back the vars named by --reset-var, check every stored var,
 * prune the audit trail, then finish or undo a converge that a crash interrupted, before
 * anything is served.
 */
export class Startup {
  private readonly store: Store;
  private readonly registry: Registry;
  private readonly options: EngineOptions;
  private readonly log: Logger;

  constructor(
    private readonly core: EngineCore,
    private readonly trail: AuditTrail,
    private readonly journal: JournalRecovery,
    private readonly code: PluginCode,
  ) {
    this.store = core.store;
    this.registry = core.registry;
    this.options = core.options;
    this.log = core.log;
  }

  private get state(): State {
    return this.core.state;
  }

  private set state(state: State) {
    this.core.state = state;
  }

  private audit(e: AuditRecord): Promise<void> {
    return this.trail.record(e);
  }

  private valueProblem(def: VarDef, value: unknown): string | undefined {
    return valueProblem(def, value);
  }

  async init(): Promise<void> {
    this.state = await this.store.loadState();
    // Whether an interrupted converge committed its vars is judged by the revision as stored,
    // before --reset-var moves it on.
    const storedRevision = this.state.revision;
    await this.resetStoredVars(this.options.resetVars ?? []);
    this.checkStoredVars();
    await this.store.pruneAudit(this.options.auditMaxAgeDays ?? 0);
    await this.recover(storedRevision);
    await this.adoptSystem();
  }

  /**
   * First start on a system: every var no one has set yet (never in the store's history) takes
   * the value the system has now, as far as a unit can tell it (UnitDef.adopt), in one revision
   * audited as one adopt by scoped. Nothing is written to the system: a later set changes only
   * what it names, and a default that differs from the system shows in scope:check as not yet
   * applied (Reads.pending). A var no unit can observe yet (Postfix not installed) is adopted
   * at the first start that can.
   */
  private async adoptSystem(): Promise<void> {
    const untouched = (v: string) => !(v in this.state.varRevisions) && !(v in this.state.vars);
    const ctx = this.core.planContext;
    const vars = this.core.vars();
    const found: Record<string, unknown> = {};
    for (const unit of this.registry.units.values()) {
      if (!unit.adopt || this.registry.disabled('unit', unit.name) || !unit.reads.some(untouched)) continue;
      let values: Record<string, unknown>;
      try {
        values = await this.code.unit(unit, 'adopt what the system has', async () => unit.adopt!(await unit.observe(ctx), vars, ctx));
      } catch (err) {
        this.log.warn('could not read what the system has; its vars keep their defaults until a start that can', {
          unit: unit.name,
          reason: clip(err instanceof Error ? err.message : String(err), 300),
        });
        continue;
      }
      for (const [name, value] of Object.entries(values)) {
        const def = this.registry.vars.get(name);
        if (!def || !unit.reads.includes(name) || !untouched(name) || name in found) continue;
        const parsed = def.schema.safeParse(value);
        if (parsed.success && !this.valueProblem(def, value)) found[name] = parsed.data;
        else this.log.warn('the value the system has does not fit its var; the var keeps its default', { unit: unit.name, var: name });
      }
    }
    const names = Object.keys(found).sort();
    if (names.length === 0) return;
    const revision = this.state.revision + 1;
    const state: State = {
      ...this.state,
      revision,
      vars: { ...this.state.vars, ...found },
      varRevisions: { ...this.state.varRevisions, ...Object.fromEntries(names.map((n) => [n, revision])) },
      adopted: { ...this.state.adopted, ...Object.fromEntries(names.map((n) => [n, revision])) },
    };
    const shown = Object.fromEntries(names.map((n) => [n, this.core.redactVar(n, found[n])]));
    const old = Object.fromEntries(names.map((n) => [n, this.core.redactVar(n, vars[n])]));
    await this.store.transaction(async (tx) => {
      await this.store.saveState(state, tx);
      await this.trail.record(
        {
          actor: { name: 'scoped', transport: 'startup' },
          action: 'system.adopt',
          target: '*',
          old,
          new: shown,
          outcome: 'applied',
          reason: 'first start: the vars no one had set take what the system has, so a set changes only what it names; nothing was written',
          revision,
        },
        tx,
      );
    });
    this.state = state;
    this.log.info('adopted what the system has as the starting values of the vars no one had set', { vars: names, revision });
  }

  /**
   * Every stored var checked as a set would check it, before anything runs on it: a store edited
   * behind scoped's back must stop the start with the var named and the way out, never reach a
   * converge. A var that no loaded plugin declares is reported and kept: its plugin may only be
   * missing for now.
   */
  private checkStoredVars(): void {
    const bad: { name: string; problem: string }[] = [];
    for (const [name, value] of Object.entries(this.state.vars)) {
      const def = this.registry.vars.get(name);
      if (!def) {
        this.log.warn('the store holds a var that no loaded plugin declares; it is kept but not used (scoped --reset-var NAME removes it)', {
          var: clip(name, 200),
        });
        continue;
      }
      const problem = this.valueProblem(def, value);
      if (problem) bad.push({ name, problem: clip(problem, 300) });
    }
    if (bad.length === 0) return;
    const [them, values] = bad.length === 1 ? ['it', 'a value its var refuses'] : ['them', 'values their vars refuse'];
    throw new Error(
      `the store holds ${values}, so scoped did not start and converged nothing: ${bad.map((b) => `${b.name} (${b.problem})`).join('; ')}. ` +
        `Start once with ${bad.map((b) => `--reset-var ${b.name}`).join(' ')} to put ${them} back to the default (then set ${them} again with cpcmd), or restore the store from a backup`,
    );
  }

  /**
   * scoped --reset-var: remove vars from the store, so their defaults apply, as one revision
   * recorded in the history. Nothing is converged: the next converge (or set) brings the system
   * in line, and until then the difference shows as drift.
   */
  private async resetStoredVars(names: readonly string[]): Promise<void> {
    for (const n of names) {
      if (!(n in this.state.vars) && !this.registry.vars.has(n))
        throw new Error(`--reset-var ${n}: no var of that name is stored or declared by a plugin (cpcmd var:list lists the vars)`);
    }
    const stored = [...new Set(names)].filter((n) => n in this.state.vars);
    for (const n of names) if (!stored.includes(n)) this.log.info('--reset-var: the var already has its default', { var: n });
    if (stored.length === 0) return;
    const revision = this.state.revision + 1;
    const vars = { ...this.state.vars };
    const varRevisions = { ...this.state.varRevisions };
    for (const n of stored) {
      delete vars[n];
      if (this.registry.vars.has(n)) varRevisions[n] = revision;
      else delete varRevisions[n];
    }
    const state: State = { ...this.state, revision, vars, varRevisions };
    await this.store.saveState(state);
    this.state = state;
    const actor = { name: 'scoped (--reset-var)', transport: 'startup' };
    for (const n of stored) {
      await this.audit({
        actor,
        action: 'var.reset',
        target: n,
        new: 'default',
        outcome: 'applied',
        reason: 'put back to its default in the store at start-up; nothing was converged (cpcmd converge applies it)',
      });
    }
    this.log.warn('vars put back to their defaults in the store; nothing was converged', { vars: stored, revision });
  }

  /**
   * Finish or undo a converge that a crash interrupted (or whose rollback failed), before
   * anything is served: when its vars were committed (or it changed no vars) the units converge
   * to them; otherwise every file goes back to the snapshot taken before the first write and
   * every service to its state then. A recovery that cannot finish does not stop the start:
   * scoped comes up stuck (see journal.ts) and `cpcmd converge` tries again.
   */
  private recover(storedRevision: number): Promise<void> {
    return this.journal.atStart((j) => j.toRevision === j.fromRevision || storedRevision === j.toRevision);
  }
}
