import { type Drift, type Pending, REDACTED } from '@scoped/protocol';
import { changeDrift, changeTarget, redactValue, type Change, type PlanContext, type ScopeDef, type UnitDef } from '@scoped/sdk';
import type { EngineCore } from './core.js';
import { findScope } from './lookup.js';
import type { PluginCode } from './plugin-code.js';
import type { Secrets } from './secrets.js';
import type { GetResult, Planned } from './types.js';
import { asJson } from './values.js';

/**
 * A value as one cpcmd word, quoted for the shell where it needs it: false, encrypt, "''",
 * "'[a,b]'"; undefined for a value no such quoting carries whole (a quote, $, a backslash).
 */
function cliWord(value: unknown): string | undefined {
  if (typeof value === 'boolean' || typeof value === 'number') return String(value);
  if (typeof value === 'string' && /^[A-Za-z][A-Za-z0-9._:@/-]*$/.test(value) && !/^(?:true|false|null)$/i.test(value)) return value;
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return /[\\"'$`]/.test(text) ? undefined : `"'${text}'"`;
}

/**
 * Planning, and the answers of reads (scope.get, scope.check): plans and answers are reused
 * while neither the vars nor anything observed changed, and drift found by a read is announced
 * (drift.detected) when it appears or changes.
 */
export class Reads {
  /** The last drift published per unit, so drift.detected fires when drift appears or changes, not on every read. */
  private readonly driftSeen = new Map<string, string>();
  /** Plans made for reads (get, check), reused while neither the vars nor anything observed changed. */
  private readonly planned = new Map<UnitDef, { vars: Record<string, unknown>; generation: string; changes: Change[] }>();
  /** scope.get answers, reused while nothing they depend on changed (see get). */
  private readonly answers = new Map<string, { vars: Record<string, unknown>; generation: string; result: GetResult }>();

  constructor(
    private readonly core: EngineCore,
    private readonly secrets: Secrets,
    private readonly code: PluginCode,
  ) {}

  /**
   * A scope as the system has it now, with its drift. The answer is reused while the vars are
   * the same and nothing read could have changed (the system's read generation): scope code
   * reads only through the System, whose reads are cached and watched. A live scope's (one that
   * reads the DNS) is never reused.
   */
  async get(name: string, args: readonly unknown[] = [], words?: readonly (string | null)[]): Promise<GetResult> {
    const core = this.core;
    const scope = findScope(core.registry, name);
    const vars = core.vars();
    const generation = this.readStamp();
    const key = args.length ? `${name}\0${JSON.stringify([args, words])}` : name;
    const last = this.answers.get(key);
    if (last && last.vars === vars && last.generation === generation) return last.result;
    const ctx = core.scopeContext(vars, words);
    const value = await this.code.scope(scope, 'answer get', () => scope.get(ctx, args));
    const drift = this.driftFor(scope, await this.drift(core.registry.unitsReading(scope.vars), vars, name));
    const result = { name, value: asJson(redactValue(value, scope.secretFields)), revision: core.varsRevision(scope.vars), drift };
    if (!scope.live && !core.lock.busy && this.readStamp() === generation && core.vars() === vars) {
      if (this.answers.size >= 1_000) this.answers.clear();
      this.answers.set(key, { vars, generation, result });
    }
    return result;
  }

  /** Differences between what the vars ask of these units and what the system has. */
  async drift(units: readonly UnitDef[], vars: Record<string, unknown> = this.core.vars(), scope?: string): Promise<Drift[]> {
    const core = this.core;
    const state = core.state;
    const runs = core.lock.runs;
    const quiet = !core.lock.busy;
    const planned = await this.plan(units, vars, true);
    const drift = this.driftOf(planned, scope);
    // Published only from a read that no mutation overlapped (every write runs under the lock): a
    // half-applied system is not drift. Not the read stamp: a read of every unit moves it itself
    // (service state is read live), and a bare scope.check would never announce what it found.
    if (!quiet || core.lock.busy || runs !== core.lock.runs || state !== core.state) return drift;
    for (const unit of units) {
      const mine = drift.filter((d) => d.unit === unit.name);
      const signature = JSON.stringify(mine);
      if ((this.driftSeen.get(unit.name) ?? '[]') === signature) continue;
      this.driftSeen.set(unit.name, signature);
      if (mine.length) void core.onEvents([{ topic: 'drift.detected', data: { unit: unit.name, scope, drift: mine } }]);
    }
    return drift;
  }

  /** Forget the drift last announced for these units: they were just converged. */
  converged(units: readonly UnitDef[]): void {
    for (const unit of units) this.driftSeen.delete(unit.name);
  }

  /**
   * Drift as users read it: each difference names the var behind it and the scope that
   * declares that var (mail.smart-host for relayhost, even when found through net.hostname).
   */
  private driftOf(planned: readonly Planned[], scope?: string): Drift[] {
    return planned.flatMap(({ unit, changes }) =>
      changes
        // A service the vars want running that does not run is drift (converge starts it); other service actions are not.
        .filter((c) => c.kind !== 'service' || c.action === 'start')
        .map((c) => {
          const d: Drift = { unit: unit.name, target: changeTarget(c), ...changeDrift(this.secrets.marked(c), REDACTED) };
          const v = c.var ?? (unit.reads.length === 1 ? unit.reads[0] : undefined);
          const owner = v ? this.core.scopeOfVar(v) : undefined;
          if (owner ?? scope) d.scope = (owner ?? scope)!;
          if (v) d.var = v;
          return d;
        }),
    );
  }

  /** A scope's own share of the drift of the units it drives: the vars it declares. */
  private driftFor(scope: ScopeDef, drift: Drift[]): Drift[] {
    if (!scope.vars.length) return drift;
    return drift.filter((d) => !d.var || scope.vars.includes(d.var));
  }

  /**
   * The vars (of a scope, or all) that still hold what the system had at the first start while
   * their default differs: the default is not yet applied, and each names the command that applies it.
   */
  pending(name?: string): Pending[] {
    const core = this.core;
    const scope = name ? findScope(core.registry, name) : undefined;
    const vars = core.vars();
    const out: Pending[] = [];
    for (const v of [...core.adoptedVars()].sort()) {
      if (scope?.vars.length && !scope.vars.includes(v)) continue;
      const def = core.registry.vars.get(v)!;
      if (JSON.stringify(vars[v]) === JSON.stringify(def.default)) continue;
      const owner = core.scopeOfVar(v);
      const own = owner ? core.registry.scopes.get(owner) : undefined;
      const word = cliWord(def.default);
      const apply =
        own && own.vars.length === 1
          ? `cpcmd scope:reset ${own.name}`
          : word !== undefined
            ? `cpcmd scope:set cp.bootstrapper ${v} ${word}`
            : `cpcmd scope:set cp.bootstrapper ${v} DEFAULT (cpcmd var:list shows it)`;
      out.push({ var: v, ...(owner ? { scope: owner } : {}), value: core.redactVar(v, vars[v]), default: core.redactVar(v, def.default), apply });
    }
    return out;
  }

  async check(name?: string): Promise<{ ok: boolean; drift: Drift[] }> {
    const registry = this.core.registry;
    const drift: Drift[] = [];
    if (name) {
      const scope = findScope(registry, name);
      drift.push(...this.driftFor(scope, await this.drift(registry.unitsReading(scope.vars), this.core.vars(), name)));
    } else {
      const units = [...registry.units.values()].filter((u) => !registry.disabled('unit', u.name));
      drift.push(...(await this.drift(units)));
    }
    return { ok: drift.length === 0, drift };
  }

  /**
   * Observe and plan each unit, within its time limit. A unit that overruns takes its plugin
   * out of service (reported in daemon.status) so it cannot hold up anything again; a unit
   * that throws answers plugin-error. `reuse`: a read's plan, which may be the last one again.
   */
  async plan(units: readonly UnitDef[], vars: Record<string, unknown>, reuse = false, ctx: PlanContext = this.core.planContext): Promise<Planned[]> {
    const out: Planned[] = [];
    for (const unit of units) {
      const changes = reuse ? await this.planForRead(unit, vars) : await this.planUnit(unit, vars, ctx);
      if (changes.length) out.push({ unit, changes });
    }
    return out;
  }

  private planUnit(unit: UnitDef, vars: Record<string, unknown>, ctx = this.core.planContext): Promise<Change[]> {
    return this.code.unit(unit, 'observe and plan', async () => unit.plan(vars, await unit.observe(ctx), ctx));
  }

  /**
   * A read's plan: the last one again when the vars are the same and nothing the unit could
   * have observed changed since (the system's read generation, bumped by inotify, our own
   * writes and any uncached read); otherwise planned afresh. Mutations never reuse a plan.
   */
  private async planForRead(unit: UnitDef, vars: Record<string, unknown>): Promise<Change[]> {
    const generation = this.readStamp();
    const last = this.planned.get(unit);
    if (last && last.vars === vars && last.generation === generation) return last.changes;
    const changes = await this.planUnit(unit, vars);
    if (this.readStamp() === generation) this.planned.set(unit, { vars, generation, changes });
    return changes;
  }

  /** Changes whenever a read's answer could: anything read may have changed, or a plugin was taken out of service. */
  private readStamp(): string {
    return `${this.core.system.readGeneration()}:${this.core.registry.outages}`;
  }
}
