import { ErrorCodes, REDACTED, RpcError, type ApplyResult, type Drift, type PlanChange } from '@scoped/protocol';
import {
  ScopeInputError,
  changeDrift,
  changeTarget,
  describeChange,
  redactValue,
  type Change,
  type PlanContext,
  type ScopeContext,
  type ScopeDef,
  type UnitDef,
  type VarDef,
} from '@scoped/sdk';
import { type HostSystem, type SerializedSnapshot, crashpoint, parseSnapshot, serializeSnapshot } from '@scoped/system';
import type { z } from 'zod';
import { type Logger, stackFrames, thrownSummary } from './log.js';
import { Mutex } from './mutex.js';
import { isName } from './names.js';
import type { Registry } from './registry.js';
import type { AuditEntry, Noop, Refusal, State, Store } from './store.js';

/** The engine's settings, from the daemon's config. */
export interface EngineOptions {
  kernelHostname: boolean;
  /** The history of changes keeps this many entries at most (default 10,000)... */
  auditKeep?: number;
  /** ...and none older than this many days (default 0: no age limit). */
  auditMaxAgeDays?: number;
  /** Refused calls keep this many rows (default 1,000)... */
  refusalKeep?: number;
  /** ...and a caller adds at most this many new rows a minute (default 30). */
  refusalNewPerMinute?: number;
  /** Vars put back to their defaults in the store at start-up (scoped --reset-var), before the stored vars are checked. */
  resetVars?: readonly string[];
}

/** The most a var's value may take, serialized as JSON: far beyond any real setting, small enough to keep every write and read cheap. */
export const MAX_VAR_BYTES = 64 * 1024;

/** Who asked, for the audit trail. */
export interface Actor {
  name: string;
  transport: string;
  /** Whether the caller holds the admin role: only an admin changes an adminOnly var. */
  admin?: boolean;
}

interface Planned {
  unit: UnitDef;
  changes: Change[];
}

/** The intent of an apply, recorded durably before its first write, so a restart can finish or undo it. */
export interface Journal {
  action: string;
  target: string;
  actor: string;
  fromRevision: number;
  toRevision: number;
  units: string[];
  services: Change[];
  snapshot: SerializedSnapshot;
  startedAt: string;
}

export interface GetResult {
  name: string;
  value: unknown;
  revision: number;
  drift: Drift[];
}

/** A background job's hooks into a mutation: cancel, and a report per change applied. */
export interface Progress {
  signal: AbortSignal;
  /** The mutation holds the engine's lock: no longer queued. */
  started(): void;
  /** The apply starts: this many changes. */
  begin(total: number): void;
  step(summary: string, done: number, total: number): void;
}

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

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

/** Audit entries keep bounded text: a hostile 1 MiB name must not become a 1 MiB row. */
const clip = (text: string, max: number) => (text.length > max ? `${text.slice(0, max)}…` : text);

/** The most of a value's JSON an audit entry keeps; beyond it, a marker with the size. */
const AUDIT_VALUE_BYTES = 1024;
/** Within a larger object, the most of one member's JSON kept as itself. */
const AUDIT_MEMBER_BYTES = 256;

const jsonBytes = (value: unknown) => Buffer.byteLength(JSON.stringify(value) ?? '');
const notKept = (bytes: number) => `(not kept: ${bytes.toLocaleString('en-US')} bytes of JSON)`;

/**
 * A value as the audit and events keep it: itself when its JSON is at most 1 KiB; else an
 * object keeps its small members and each large one becomes a marker with its size (so a smart
 * host's host stays readable), and anything still too large becomes one marker. Every set
 * writes the old and the new value into the history and the new one into a scope.changed
 * event, and audit.list and every replay read them back: a 64 KiB value must not cost 128 KiB
 * of disk per set, nor a subscriber's replay 64 KiB per event.
 */
export function auditValue(value: unknown): unknown {
  const bytes = jsonBytes(value);
  if (bytes <= AUDIT_VALUE_BYTES) return value;
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const members = Object.entries(value).map(([k, v]) => [k, jsonBytes(v) <= AUDIT_MEMBER_BYTES ? v : notKept(jsonBytes(v))] as const);
    const small = Object.fromEntries(members);
    if (jsonBytes(small) <= AUDIT_VALUE_BYTES) return small;
  }
  return notKept(bytes);
}

/**
 * Turns a glob such as `mail.*` into a test: `*` any run of characters, `?` one, everything else itself. Linear in the
 * name's length times the glob's (no regex, so no catastrophic backtracking on hostile globs).
 */
export function globTest(glob: string): (name: string) => boolean {
  return (name) => {
    let g = 0;
    let n = 0;
    let star = -1;
    let mark = 0;
    while (n < name.length) {
      if (g < glob.length && (glob[g] === '?' || glob[g] === name[n])) {
        g++;
        n++;
      } else if (g < glob.length && glob[g] === '*') {
        star = g++;
        mark = n;
      } else if (star >= 0) {
        g = star + 1;
        n = ++mark;
      } else return false;
    }
    while (glob[g] === '*') g++;
    return g === glob.length;
  };
}

/**
 * The scope engine: validates, plans, applies with a snapshot, verifies, rolls back on
 * failure, persists and audits. Every mutation runs under one lock, so sets on the same
 * unit are serialized and each plans against what the previous one left.
 */
export class Engine {
  private state!: State;
  /** Where events go (the event bus); set by the daemon. */
  onEvents: (events: { topic: string; data: unknown }[]) => void | Promise<void> = () => {};
  /** The last drift published per unit, so drift.detected fires when drift appears or changes, not on every read. */
  private readonly driftSeen = new Map<string, string>();
  private readonly lock = new Mutex();
  /** The vars of the current state, computed once per state (callers must not change it). */
  private varsOf: { state: State; vars: Record<string, unknown> } | undefined;
  /** Plans made for reads (get, check), reused while neither the vars nor anything observed changed. */
  private readonly planned = new Map<UnitDef, { vars: Record<string, unknown>; generation: string; changes: Change[] }>();
  /** scope.get answers, reused while nothing they depend on changed (see get). */
  private readonly answers = new Map<string, { vars: Record<string, unknown>; generation: string; result: GetResult }>();
  /** Refusals already in the audit trail, so the RPC layer does not record them twice. */
  readonly audited = new WeakSet<Error>();
  readonly planContext: PlanContext;

  constructor(
    readonly registry: Registry,
    private readonly store: Store,
    readonly system: HostSystem,
    readonly options: EngineOptions,
    private readonly log: Logger,
  ) {
    this.planContext = { system, options };
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
        this.log.warn('the store holds a var that no loaded plugin declares; it is kept but not used (scoped --reset-var NAME removes it)', { var: clip(name, 200) });
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
      if (!(n in this.state.vars) && !this.registry.vars.has(n)) throw new Error(`--reset-var ${n}: no var of that name is stored or declared by a plugin (cpcmd var:list lists the vars)`);
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
    const state: State = { revision, vars, varRevisions };
    await this.store.saveState(state);
    this.state = state;
    const actor = { name: 'scoped (--reset-var)', transport: 'startup' };
    for (const n of stored) {
      await this.audit({ actor, action: 'var.reset', target: n, new: 'default', outcome: 'applied', reason: 'put back to its default in the store at start-up; nothing was converged (cpcmd converge applies it)' });
    }
    this.log.warn('vars put back to their defaults in the store; nothing was converged', { vars: stored, revision });
  }

  /**
   * Finish or undo a converge that a crash interrupted, before anything is served: when its
   * vars were committed (or it changed no vars) the units converge to them; otherwise every
   * file goes back to the snapshot taken before the first write.
   */
  private async recover(storedRevision: number): Promise<void> {
    const j = await this.store.loadJournal<Journal>();
    if (!j) return;
    const committed = j.toRevision === j.fromRevision || storedRevision === j.toRevision;
    const actor = { name: 'scoped (recovery)', transport: 'startup' };
    if (committed) {
      const units = j.units.flatMap((n) => this.registry.units.get(n) ?? []);
      const planned = await this.plan(units, this.vars());
      await this.system.apply(planned.flatMap((p) => p.changes));
      await this.audit({ actor, action: j.action, target: j.target, outcome: 'applied', reason: `completed at restart after an interruption (started ${j.startedAt} by ${j.actor})` });
      // The events the interrupted converge did not get to store.
      const data = { action: j.action, target: j.target, revision: this.state.revision, actor: j.actor, recovered: true };
      await this.onEvents([
        ...(this.registry.scopes.has(j.target) ? [{ topic: 'scope.changed', data: { scope: j.target, ...data } }] : []),
        { topic: 'unit.converged', data: { units: j.units, ...data } },
      ]);
      this.log.warn('completed an interrupted converge', { action: j.action, target: j.target, revision: this.state.revision });
    } else {
      await this.system.restore(parseSnapshot(j.snapshot));
      await this.system.apply(j.services);
      await this.audit({ actor, action: j.action, target: j.target, outcome: 'rolled-back', reason: `interrupted (started ${j.startedAt} by ${j.actor}); rolled back at restart` });
      this.log.warn('rolled back an interrupted converge', { action: j.action, target: j.target, revision: this.state.revision });
    }
    await this.store.saveJournal(undefined);
  }

  get revision(): number {
    return this.state.revision;
  }

  /** Every var's current value, defaults filled in. */
  vars(): Record<string, unknown> {
    if (this.varsOf?.state === this.state) return this.varsOf.vars;
    const out: Record<string, unknown> = {};
    for (const [name, def] of this.registry.vars) out[name] = name in this.state.vars ? this.state.vars[name] : def.default;
    this.varsOf = { state: this.state, vars: Object.freeze(out) };
    return out;
  }

  redactVar(name: string, value: unknown): unknown {
    return redactValue(value, this.registry.vars.get(name)?.secret);
  }

  /**
   * Whether a change carries secret content: its unit marked it (the credentials map and its
   * postmap), or it serves a var that is secret as a whole. Such a change is described without
   * its content, and the output of the tool that carries it out is never passed on.
   */
  secretChange(c: Change): boolean {
    return c.secret === true || (c.var !== undefined && this.registry.vars.get(c.var)?.secret === true);
  }

  /** The change, marked secret when it is one, for describing it. */
  private marked(c: Change): Change {
    return this.secretChange(c) && !c.secret ? { ...c, secret: true } : c;
  }

  /** A change as users read it (plans, job steps, verification): secret content never enters the text. */
  describe(c: Change): string {
    return describeChange(this.marked(c));
  }

  /** Whether a scope's or a unit's own code sees a secret, so what it throws may carry one. */
  private handlesSecret(kind: 'unit' | 'scope', name: string): boolean {
    const secret = (v: string) => this.registry.vars.get(v)?.secret !== undefined;
    if (kind === 'unit') return this.registry.units.get(name)?.reads.some(secret) ?? false;
    const scope = this.registry.scopes.get(name);
    return scope !== undefined && (Boolean(scope.secretFields?.length) || scope.redact !== undefined || scope.vars.some(secret));
  }

  scopeContext(vars: Record<string, unknown> = this.vars()): ScopeContext {
    return { system: this.system, vars, varDefs: this.registry.vars, redactVar: (n, v) => this.redactVar(n, v) };
  }

  scope(name: string): ScopeDef {
    const scope = this.registry.scopes.get(name);
    const off = scope && this.registry.disabled('scope', name);
    if (off) throw new RpcError(ErrorCodes.PluginError, off);
    if (scope) return scope;
    // Only a well-formed name is repeated (and hinted from): anything else could be escape sequences or a guessed secret.
    if (!isName('scope', name)) throw new RpcError(ErrorCodes.ScopeNotFound, 'no scope has that name: a scope name is group.kebab-name, such as mail.smart-host (cpcmd scope:list shows them all)');
    const hint = [...this.registry.scopes.keys()].find((s) => s.split('.')[1] === name.split('.')[1] || s.startsWith(name));
    throw new RpcError(ErrorCodes.ScopeNotFound, `no scope named ${name}${hint ? `; did you mean ${hint}?` : ''} (cpcmd scope:list shows them all)`);
  }

  unit(name: string): UnitDef {
    const unit = this.registry.units.get(name);
    if (unit) return unit;
    const named = isName('unit', name) ? `named ${name}` : 'has that name';
    throw new RpcError(ErrorCodes.ScopeNotFound, `no unit ${named} (cpcmd converge takes one of: ${[...this.registry.units.keys()].join(', ')})`);
  }

  varDef(name: string): VarDef {
    const def = this.registry.vars.get(name);
    if (def) return def;
    const named = isName('var', name) ? `named ${name}` : 'has that name (a var name is snake_case)';
    throw new RpcError(ErrorCodes.ScopeNotFound, `no var ${named} (cpcmd var:list shows them all)`);
  }

  /** A scope's value shown safely. */
  redactScopeValue(scope: ScopeDef, value: unknown, ctx: ScopeContext): unknown {
    return scope.redact ? scope.redact(value, ctx) : redactValue(value, scope.secretFields);
  }

  scopeRevision(scope: ScopeDef, varNames: readonly string[] = scope.vars): number {
    return Math.max(0, ...varNames.map((v) => this.state.varRevisions[v] ?? 0));
  }

  /**
   * A scope as the system has it now, with its drift. The answer is reused while the vars are
   * the same and nothing read could have changed (the system's read generation): scope code
   * reads only through the System, whose reads are cached and watched.
   */
  async get(name: string, args: readonly unknown[] = []): Promise<GetResult> {
    const scope = this.scope(name);
    const vars = this.vars();
    const generation = this.readStamp();
    const key = args.length ? `${name}\0${JSON.stringify(args)}` : name;
    const last = this.answers.get(key);
    if (last && last.vars === vars && last.generation === generation) return last.result;
    const ctx = this.scopeContext(vars);
    const value = await this.scopeCode(scope, 'answer get', () => scope.get(ctx, args));
    const drift = this.driftFor(scope, await this.drift(this.registry.unitsReading(scope.vars), vars, name));
    const result = { name, value: redactValue(value, scope.secretFields), revision: this.scopeRevision(scope), drift };
    if (!this.lock.busy && this.readStamp() === generation && this.vars() === vars) {
      if (this.answers.size >= 1_000) this.answers.clear();
      this.answers.set(key, { vars, generation, result });
    }
    return result;
  }

  /** Differences between what the vars ask of these units and what the system has. */
  async drift(units: readonly UnitDef[], vars: Record<string, unknown> = this.vars(), scope?: string): Promise<Drift[]> {
    const state = this.state;
    const stamp = this.readStamp();
    const quiet = !this.lock.busy;
    const planned = await this.plan(units, vars, true);
    const drift = this.driftOf(planned, scope);
    // Published only from a read that no converge overlapped (a commit replaces the state, a write
    // moves the read stamp): a half-applied system is not drift.
    if (!quiet || this.lock.busy || state !== this.state || stamp !== this.readStamp()) return drift;
    for (const unit of units) {
      const mine = drift.filter((d) => d.unit === unit.name);
      const signature = JSON.stringify(mine);
      if ((this.driftSeen.get(unit.name) ?? '[]') === signature) continue;
      this.driftSeen.set(unit.name, signature);
      if (mine.length) void this.onEvents([{ topic: 'drift.detected', data: { unit: unit.name, scope, drift: mine } }]);
    }
    return drift;
  }

  /**
   * Drift as users read it: each difference names the var behind it and the scope that
   * declares that var (mail.smart-host for relayhost, even when found through net.hostname).
   */
  private driftOf(planned: readonly Planned[], scope?: string): Drift[] {
    return planned.flatMap(({ unit, changes }) =>
      changes
        .filter((c) => c.kind !== 'service')
        .map((c) => {
          const d: Drift = { unit: unit.name, target: changeTarget(c), ...changeDrift(this.marked(c), REDACTED) };
          const v = c.var ?? (unit.reads.length === 1 ? unit.reads[0] : undefined);
          const owner = v ? this.scopeOfVar(v) : undefined;
          if (owner ?? scope) d.scope = (owner ?? scope)!;
          if (v) d.var = v;
          return d;
        }),
    );
  }

  /** The scope that declares a var (the first one, by registration), if any but cp.bootstrapper does. */
  private scopeOfVar(v: string): string | undefined {
    for (const s of this.registry.scopes.values()) if (s.vars.includes(v)) return s.name;
    return undefined;
  }

  /** A scope's own share of the drift of the units it drives: the vars it declares. */
  private driftFor(scope: ScopeDef, drift: Drift[]): Drift[] {
    if (!scope.vars.length) return drift;
    return drift.filter((d) => !d.var || scope.vars.includes(d.var));
  }

  async check(name?: string): Promise<{ ok: boolean; drift: Drift[] }> {
    const drift: Drift[] = [];
    if (name) {
      const scope = this.scope(name);
      drift.push(...this.driftFor(scope, await this.drift(this.registry.unitsReading(scope.vars), this.vars(), name)));
    } else {
      const units = [...this.registry.units.values()].filter((u) => !this.registry.disabled('unit', u.name));
      drift.push(...(await this.drift(units)));
    }
    return { ok: drift.length === 0, drift };
  }

  /**
   * Observe and plan each unit, within its time limit. A unit that overruns takes its plugin
   * out of service (reported in daemon.status) so it cannot hold up anything again; a unit
   * that throws answers plugin-error.
   */
  private async plan(units: readonly UnitDef[], vars: Record<string, unknown>, reuse = false, ctx = this.planContext): Promise<Planned[]> {
    const out: Planned[] = [];
    for (const unit of units) {
      const changes = reuse ? await this.planForRead(unit, vars) : await this.planUnit(unit, vars, ctx);
      if (changes.length) out.push({ unit, changes });
    }
    return out;
  }

  private planUnit(unit: UnitDef, vars: Record<string, unknown>, ctx = this.planContext): Promise<Change[]> {
    return this.unitCode(unit, 'observe and plan', async () => unit.plan(vars, await unit.observe(ctx), ctx));
  }

  /**
   * The vars among a caller's values that carry a non-empty secret part (VarDef.secret): a
   * password given again must be planned and applied as a new one (PlanContext.rewrite).
   */
  private secretsGiven(values: Record<string, unknown>): Set<string> {
    const filled = (v: unknown) => v !== undefined && v !== null && v !== '' && v !== false;
    const given = new Set<string>();
    for (const [name, value] of Object.entries(values)) {
      const secret = this.registry.vars.get(name)?.secret;
      if (secret === undefined) continue;
      if (secret === true ? filled(value) : value !== null && typeof value === 'object' && secret.some((k) => filled((value as Record<string, unknown>)[k]))) given.add(name);
    }
    return given;
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
    return `${this.system.readGeneration()}:${this.registry.outages}`;
  }

  /** Run a unit's own code within its time limit. */
  private unitCode<T>(unit: UnitDef, what: string, fn: () => Promise<T>): Promise<T> {
    const off = this.registry.disabled('unit', unit.name);
    if (off) return Promise.reject(new RpcError(ErrorCodes.PluginError, off));
    return this.pluginCode('unit', unit.name, unit.timeoutMs ?? 10_000, what, fn);
  }

  /**
   * Plugin code under a time limit. Overrunning takes the plugin out of service (so it can
   * never hold the engine's lock for longer); anything but a refusal it throws is a plugin error.
   */
  private pluginCode<T>(kind: 'unit' | 'scope', name: string, limit: number, what: string, fn: () => Promise<T>): Promise<T> {
    const fail = (err: unknown): never => {
      if (err instanceof RpcError && err.code === ErrorCodes.Timeout) {
        this.registry.disablePluginOf(kind, name, err.message);
        this.log.error(`${kind} timed out; its plugin is disabled`, { [kind]: name, reason: err.message });
        throw new RpcError(ErrorCodes.PluginError, `${err.message}; its plugin is disabled until scoped restarts`);
      }
      if (err instanceof RpcError || err instanceof ScopeInputError) throw err;
      throw new RpcError(ErrorCodes.PluginError, `${kind} ${name} failed in ${what}: ${this.thrownBy(kind, name, err)}`);
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

  /** Wait (at most `ms`) until no mutation runs or waits: before the store closes at shutdown. */
  async settle(ms: number): Promise<void> {
    await withTimeout(this.lock.run(async () => {}), ms, 'a converge was still running').catch(() => undefined);
  }

  /**
   * What plugin code threw, as a caller may read it. Code that sees a secret may have put it in
   * its message, so from such code only the error's kind goes out (and its stack to the log).
   */
  private thrownBy(kind: 'unit' | 'scope', name: string, err: unknown): string {
    if (!this.handlesSecret(kind, name)) return err instanceof Error ? err.message : String(err);
    this.log.error(`${kind} failed; its message is withheld because it handles a secret`, { [kind]: name, error: thrownSummary(err), at: stackFrames(err) });
    return `${thrownSummary(err)} (the message is withheld: this ${kind} handles a secret; the daemon log has where it was thrown)`;
  }

  private show(planned: readonly Planned[]): PlanChange[] {
    return planned.flatMap(({ unit, changes }) => changes.map((c) => ({ unit: unit.name, kind: c.kind, target: changeTarget(c), summary: this.describe(c) })));
  }

  /** Turn a scope's value (or CLI words) into validated var changes. */
  async scopeVars(scope: ScopeDef, input: { value?: unknown; args?: readonly unknown[] }): Promise<{ value: unknown; vars: Record<string, unknown> }> {
    const ctx = this.scopeContext();
    if (input.value !== undefined && input.args !== undefined) throw new RpcError(ErrorCodes.InvalidParams, 'give either value or args, not both');
    if (input.value === undefined && input.args === undefined) throw new RpcError(ErrorCodes.InvalidParams, `give a value for ${scope.name}; usage: ${scope.name} ${scope.usage}`);
    const fault = input.args !== undefined ? valueFault(input.args, (i) => `argument ${Number(i) + 1}`) : valueFault(input.value);
    if (fault) throw faultError(scope.name, fault);
    const raw = input.args !== undefined ? await this.scopeCode(scope, 'parse its arguments', () => scope.parseArgs(input.args!, ctx)) : input.value;
    const parsed = scope.schema.safeParse(raw);
    if (!parsed.success) throw invalid(`invalid value for ${scope.name}`, parsed.error, scope.usage);
    const vars = await this.scopeCode(scope, 'turn its value into vars', () => scope.toVars(parsed.data, ctx));
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
      const def = this.varDef(name);
      const fault = valueFault(value);
      if (fault) throw faultError(name, fault);
      const r = def.schema.safeParse(value);
      if (!r.success) throw invalid(`invalid value for ${name}`, r.error);
      out[name] = r.data;
    }
    return out;
  }

  /** Why a var cannot hold a value (as validateVars would refuse it), or undefined. */
  private valueProblem(def: VarDef, value: unknown): string | undefined {
    const fault = valueFault(value);
    if (fault) return faultText(fault);
    const r = def.schema.safeParse(value);
    return r.success ? undefined : issuesText(r.error.issues);
  }

  async set(
    params: { name: string; value?: unknown; args?: readonly unknown[]; dryRun?: boolean; ifRevision?: number; converge?: boolean; verify?: boolean },
    actor: Actor,
    progress?: Progress,
  ): Promise<ApplyResult & { name: string; value: unknown }> {
    return (await this.prepareSet(params, actor))(progress);
  }

  /**
   * Everything of a set that can refuse it (the scope, the value, --verify), done now; the
   * mutation itself is returned to run now or as a job.
   */
  async prepareSet(
    params: { name: string; value?: unknown; args?: readonly unknown[]; dryRun?: boolean; ifRevision?: number; converge?: boolean; verify?: boolean },
    actor: Actor,
  ): Promise<(progress?: Progress) => Promise<ApplyResult & { name: string; value: unknown }>> {
    const scope = this.scope(params.name);
    if (params.converge === false && !scope.allowNoConverge) {
      throw new RpcError(ErrorCodes.InvalidParams, `${scope.name} always converges; --no-converge applies to cp.bootstrapper only`);
    }
    const input: { value?: unknown; args?: readonly unknown[] } = {};
    if (params.value !== undefined) input.value = params.value;
    if (params.args !== undefined) input.args = params.args;
    const { value, vars } = await this.scopeVars(scope, input);
    // Refused now rather than in a queued job; mutate checks again.
    requireAdmin(actor, this.adminOnly(vars));
    const ctx = this.scopeContext();
    if (params.verify) {
      if (!scope.verify) throw new RpcError(ErrorCodes.InvalidParams, `${scope.name} has nothing to verify; --verify applies to scopes that reach outside, such as mail.smart-host`);
      await inputErrors(() => scope.verify!(value, ctx));
    }
    const shown = this.redactScopeValue(scope, value, ctx);
    const old = () => this.oldValue(scope, this.scopeContext(), vars);
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

  /** Run a scope's own code (get, parseArgs, toVars, adopt) within its time limit; its input errors answer invalid params. */
  private scopeCode<T>(scope: ScopeDef, what: string, fn: () => T | Promise<T>): Promise<T> {
    return this.pluginCode('scope', scope.name, scope.timeoutMs ?? 10_000, what, () => inputErrors(fn));
  }

  private async oldValue(scope: ScopeDef, ctx: ScopeContext, vars: Record<string, unknown>): Promise<unknown> {
    if (scope.vars.length === 0) return Object.fromEntries(Object.keys(vars).map((v) => [v, this.redactVar(v, ctx.vars[v])]));
    try {
      return redactValue(await this.scopeCode(scope, 'answer get', () => scope.get(ctx, [])), scope.secretFields);
    } catch (err) {
      // A scope that cannot say what it has now is still set, unless its plugin was just taken out of service.
      if (err instanceof RpcError && err.code === ErrorCodes.PluginError && this.registry.disabled('scope', scope.name)) throw err;
      return undefined;
    }
  }

  async reset(params: { name: string; dryRun?: boolean }, actor: Actor): Promise<ApplyResult & { name: string; value: unknown }> {
    const scope = this.scope(params.name);
    if (scope.vars.length === 0 && !scope.resetVars) throw new RpcError(ErrorCodes.InvalidParams, `${scope.name} has nothing to reset; reset a var with cpcmd scope:set cp.bootstrapper VAR VALUE`);
    const ctx = this.scopeContext();
    const vars = scope.resetVars ? scope.resetVars(ctx) : Object.fromEntries(scope.vars.map((v) => [v, this.varDef(v).default]));
    const result = await this.mutate({
      action: 'scope.reset',
      target: scope.name,
      varChanges: vars,
      converge: true,
      dryRun: params.dryRun ?? false,
      revisionVars: scope.vars,
      old: () => this.oldValue(scope, this.scopeContext(), vars),
      new: 'default',
      actor,
    });
    return { ...result, name: scope.name, value: Object.fromEntries(Object.entries(vars).map(([k, v]) => [k, this.redactVar(k, v)])) };
  }

  /** Take what the system has now into the scope's vars, then converge whatever else differs. */
  async adopt(params: { name: string; dryRun?: boolean }, actor: Actor): Promise<ApplyResult & { name: string; value: unknown; notes?: string[] }> {
    const scope = this.scope(params.name);
    if (!scope.adopt) throw new RpcError(ErrorCodes.InvalidParams, `${scope.name} cannot adopt what the system has; converge it instead (cpcmd converge)`);
    const ctx = this.scopeContext();
    const adopted = await this.scopeCode(scope, 'adopt', () => scope.adopt!(ctx));
    const vars = this.validateVars(adopted.vars);
    const notes = adopted.notes?.length ? { notes: [...adopted.notes] } : {};
    const shown = Object.fromEntries(Object.entries(vars).map(([k, v]) => [k, this.redactVar(k, v)]));
    const result = await this.mutate({
      action: 'scope.adopt',
      target: scope.name,
      varChanges: vars,
      converge: true,
      dryRun: params.dryRun ?? false,
      revisionVars: scope.vars,
      old: () => Object.fromEntries(Object.keys(vars).map((k) => [k, this.redactVar(k, this.vars()[k])])),
      new: shown,
      actor,
    });
    return { ...result, name: scope.name, value: shown, ...notes };
  }

  async setVar(params: { name: string; value: unknown; dryRun?: boolean; converge?: boolean; ifRevision?: number }, actor: Actor) {
    const def = this.varDef(params.name);
    const vars = this.validateVars({ [def.name]: params.value });
    const result = await this.mutate({
      action: 'var.set',
      target: def.name,
      varChanges: vars,
      converge: params.converge ?? true,
      dryRun: params.dryRun ?? false,
      ifRevision: params.ifRevision,
      revisionVars: [def.name],
      old: () => this.redactVar(def.name, this.vars()[def.name]),
      new: this.redactVar(def.name, vars[def.name]),
      actor,
      supplied: true,
    });
    return { ...result, name: def.name, value: this.redactVar(def.name, vars[def.name]) };
  }

  async converge(params: { units?: string[]; dryRun?: boolean }, actor: Actor, progress?: Progress): Promise<ApplyResult> {
    return this.prepareConverge(params, actor)(progress);
  }

  /** Look the units up now (an unknown one is refused at once); return the converge to run now or as a job. */
  prepareConverge(params: { units?: string[]; dryRun?: boolean }, actor: Actor): (progress?: Progress) => Promise<ApplyResult> {
    const units = params.units?.length
      ? params.units.map((u) => this.unit(u))
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

  /**
   * Record one audit entry durably; its values are already redacted and its reason built
   * without secrets. A refusal goes to the refusal store and a call that changed nothing to
   * the no-op store, each collapsed per caller, action and target and limited per caller,
   * never into the history of changes, which they could otherwise push out of its bounded log.
   * Values are kept small (auditValue).
   */
  audit(e: { actor: Actor; action: string; target: string; old?: unknown; new?: unknown; plan?: string[]; outcome: AuditEntry['outcome']; reason?: string }): Promise<void> {
    const limits = { keep: this.options.refusalKeep ?? 1_000, newPerMinute: this.options.refusalNewPerMinute ?? 30 };
    const who = { time: new Date().toISOString(), actor: clip(e.actor.name, 200), transport: clip(e.actor.transport, 200), action: clip(e.action, 100), target: clip(e.target, 200) };
    if (e.outcome === 'refused') return this.store.refusals.record({ ...who, ...(e.reason ? { reason: clip(e.reason, 300) } : {}) }, limits);
    if (e.outcome === 'unchanged') return this.store.noops.record({ ...who, ...(e.new !== undefined ? { value: auditValue(e.new) } : {}) }, limits);
    return this.store.appendAudit(
      {
        time: who.time,
        actor: e.actor.name,
        transport: e.actor.transport,
        action: e.action,
        target: who.target,
        ...(e.old !== undefined ? { old: auditValue(e.old) } : {}),
        ...(e.new !== undefined ? { new: auditValue(e.new) } : {}),
        plan: (e.plan ?? []).map((p) => clip(p, 300)),
        outcome: e.outcome,
        ...(e.reason ? { reason: clip(e.reason, 1_000) } : {}),
        revision: this.state.revision,
      },
      { keep: this.options.auditKeep ?? 10_000, maxAgeDays: this.options.auditMaxAgeDays ?? 0 },
      // Token changes are kept in a log of their own: no token holder's changes can push them out.
      e.action.startsWith('token.'),
    );
  }

  /** The history of changes (never refusals or no-ops, even from trails written before they had stores of their own). */
  auditEntries(limit: number, filter: (e: AuditEntry) => boolean): Promise<AuditEntry[]> {
    return this.store.auditEntries(limit, (e) => e.outcome !== 'refused' && e.outcome !== 'unchanged' && filter(e));
  }

  /** The refused calls, one row per caller, action and target, with counts. */
  refusals(limit: number, filter: (r: Refusal) => boolean): Promise<Refusal[]> {
    return this.store.refusals.list(limit, filter);
  }

  /** The calls that changed nothing, one row per caller, action and target, with counts and the last value. */
  noops(limit: number, filter: (r: Noop) => boolean): Promise<Noop[]> {
    return this.store.noops.list(limit, filter);
  }

  /** The eight steps: validate (done by the caller), diff vars, plan, apply, verify, persist, audit, notify. */
  private mutate(m: Mutation): Promise<ApplyResult> {
    return this.lock.run(async () => {
      // What is replaced is read under the lock, so concurrent sets each record the value they replaced.
      m.progress?.started();
      let old: unknown;
      let before: Record<string, unknown>, next: Record<string, unknown>, changedVars: string[], planned: Planned[], plan: PlanChange[];
      try {
        old = await m.old?.();
        if (m.progress?.signal.aborted) throw new RpcError(ErrorCodes.ConvergeFailed, 'cancelled before it started; nothing was changed');
        if (m.ifRevision !== undefined) {
          const current = Math.max(0, ...(m.revisionVars ?? []).map((v) => this.state.varRevisions[v] ?? 0));
          if (current !== m.ifRevision) {
            throw new RpcError(ErrorCodes.Conflict, `${m.target} is at revision ${current}, not ${m.ifRevision}; read it again and retry`, { revision: current });
          }
        }
        before = this.vars();
        next = { ...before, ...m.varChanges };
        // A supplied secret counts as a change even when it equals the stored one, or the answer would say whether it does.
        const rewrite = m.supplied ? this.secretsGiven(m.varChanges) : new Set<string>();
        changedVars = Object.keys(m.varChanges).filter((k) => rewrite.has(k) || !same(before[k], next[k]));
        requireAdmin(m.actor, this.adminOnly(m.varChanges));
        for (const unit of this.registry.unitsReading(changedVars)) {
          const problem = await this.unitCode(unit, 'validate', async () => unit.validate?.(next, this.planContext));
          if (problem) throw new RpcError(ErrorCodes.InvalidParams, problem);
        }
        const units = m.units ?? (m.converge ? this.registry.unitsReading(changedVars) : []);
        planned = await this.plan(units, next, false, rewrite.size ? { ...this.planContext, rewrite } : this.planContext);
        plan = this.show(planned);
      } catch (err) {
        // Refused inside the lock (also when running as a job): audited here, once.
        if (err instanceof RpcError) {
          await this.audit({ actor: m.actor, action: m.action, target: m.target, old, new: m.new, outcome: 'refused', reason: err.message });
          this.audited.add(err);
        }
        throw err;
      }
      if (m.dryRun) return { status: 'planned', plan, revision: this.state.revision };
      const audit = (outcome: 'applied' | 'unchanged' | 'rolled-back', reason?: string) =>
        this.audit({ actor: m.actor, action: m.action, target: m.target, old, new: m.new, plan: plan.map((p) => p.summary), outcome, ...(reason ? { reason } : {}) });
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
          this.log.error('converge failed; rolled back', { target: m.target, reason });
          await audit('rolled-back', reason);
          throw new RpcError(ErrorCodes.ConvergeFailed, `converge failed and was rolled back: ${reason}`, { plan });
        }
      }
      if (changedVars.length) {
        const revision = toRevision;
        const varRevisions = { ...this.state.varRevisions };
        for (const v of changedVars) varRevisions[v] = revision;
        const vars = { ...this.state.vars };
        for (const v of changedVars) vars[v] = next[v];
        const state: State = { revision, vars, varRevisions };
        await this.store.saveState(state);
        this.state = state;
        crashpoint();
      }
      await audit('applied');
      crashpoint();
      // Announced while the journal still stands: a crash before it is cleared makes the restart announce it again (marked recovered) rather than never.
      await this.announce(m, changedVars, planned);
      if (planned.length) {
        await this.store.saveJournal(undefined);
        crashpoint();
      }
      this.log.info('applied', { action: m.action, target: m.target, actor: m.actor.name, changes: plan.length, revision: this.state.revision });
      return { status: 'applied', plan, revision: this.state.revision };
    });
  }

  /** Events for an applied mutation (each scope whose vars changed, the units that converged), stored before the answer goes out. */
  private async announce(m: Mutation, changedVars: readonly string[], planned: readonly Planned[]): Promise<void> {
    const revision = this.state.revision;
    const actor = m.actor.name;
    // The scopes that declare a changed var, and the one set; cp.bootstrapper for vars no other scope declares.
    const scopes = new Set([...this.registry.scopes.values()].filter((s) => s.vars.some((v) => changedVars.includes(v))).map((s) => s.name));
    if (this.registry.scopes.has(m.target)) scopes.add(m.target);
    if (changedVars.some((v) => this.scopeOfVar(v) === undefined)) scopes.add('cp.bootstrapper');
    const events: { topic: string; data: unknown }[] = [...scopes].map((scope) => ({
      topic: 'scope.changed',
      data: { scope, action: m.action, revision, actor, ...(scope === m.target ? { value: auditValue(m.new) } : {}) },
    }));
    if (planned.length) events.push({ topic: 'unit.converged', data: { units: planned.map((p) => p.unit.name), action: m.action, target: m.target, revision, actor } });
    for (const p of planned) this.driftSeen.delete(p.unit.name);
    await this.onEvents(events);
  }

  /** Snapshot, apply, verify; on any failure restore the snapshot and rethrow. */
  private async applyPlanned(
    planned: readonly Planned[],
    vars: Record<string, unknown>,
    intent: Pick<Journal, 'action' | 'target' | 'actor' | 'fromRevision' | 'toRevision'>,
    progress?: Progress,
  ): Promise<void> {
    const all = planned.flatMap((p) => p.changes);
    let done = 0;
    // Set when an apply overran its time limit: it stops at its next change instead of writing over the rollback.
    let overran = false;
    // The change being carried out, so a failure is reported as that change's.
    let inFlight: Change | undefined = all[0];
    const afterEach = (c: Change) => {
      done++;
      inFlight = all[done];
      if (overran) throw new RpcError(ErrorCodes.ConvergeFailed, 'stopped: the apply overran its time limit');
      progress?.step(this.describe(c), done, all.length);
      if (progress?.signal.aborted) throw new RpcError(ErrorCodes.ConvergeFailed, `cancelled after ${done} of ${all.length} changes`);
    };
    progress?.begin(all.length);
    const snapshot = await this.system.snapshot(all);
    await this.store.saveJournal<Journal>({
      ...intent,
      units: planned.map((p) => p.unit.name),
      services: all.filter((c) => c.kind === 'service'),
      snapshot: serializeSnapshot(snapshot),
      startedAt: new Date().toISOString(),
    });
    crashpoint();
    try {
      for (const { unit, changes } of planned) {
        const applying = this.system.apply(changes, afterEach).catch((err: unknown) => {
          throw this.applyFailure(err, inFlight);
        });
        try {
          await withTimeout(applying, unit.timeoutMs ?? 30_000, `unit ${unit.name} did not finish applying in ${unit.timeoutMs ?? 30_000} ms`);
        } catch (err) {
          // Let a change in flight land (for a while) before the snapshot goes back over it.
          overran = true;
          await withTimeout(applying, 10_000, 'the overrunning apply did not stop').catch(() => undefined);
          throw err;
        }
      }
      const left = (await this.plan(planned.map((p) => p.unit), vars)).flatMap((p) => p.changes.filter((c) => c.kind !== 'service').map((c) => `${p.unit.name}: ${this.describe(c)}`));
      if (left.length) throw new Error(`verification found the system still differs: ${left.join('; ')}`);
    } catch (err) {
      try {
        await this.system.restore(snapshot);
        const services = all.filter((c) => c.kind === 'service');
        if (services.length) await this.system.apply(services);
        await this.store.saveJournal(undefined);
      } catch (restoreErr) {
        // The journal stays: the next start tries the rollback again.
        this.log.error('rollback failed', { error: thrownSummary(restoreErr), at: stackFrames(restoreErr) });
      }
      throw err;
    }
  }

  /**
   * A failure while carrying out a change, as the caller and the audit trail get it. A tool's
   * output (postmap, postconf, a file write) may quote what it was given, so for a change that
   * holds a secret only what failed and how is told, built from what the engine knows.
   */
  private applyFailure(err: unknown, change: Change | undefined): unknown {
    if (err instanceof RpcError || !change || !this.secretChange(change)) return err;
    return new Error(`${this.describe(change)} failed: ${thrownSummary(err)} (its output is withheld because the change holds a secret; run that step by hand to see it)`);
  }
}

/**
 * Calls in flight under a time limit, checked by one watchdog timer rather than a timer per
 * call: a scope.get runs several limited calls, and thousands of them run each second.
 */
const deadlines = new Set<{ at: number; expire: () => void }>();
const WATCHDOG_MS = 100;
let watchdog: NodeJS.Timeout | undefined;

function withTimeout<T>(p: Promise<T>, ms: number, message: string | (() => string)): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const entry = { at: Date.now() + ms, expire: () => reject(new RpcError(ErrorCodes.Timeout, typeof message === 'string' ? message : message())) };
    deadlines.add(entry);
    watchdog ??= setInterval(() => {
      const now = Date.now();
      for (const d of deadlines) {
        if (d.at > now) continue;
        deadlines.delete(d);
        d.expire();
      }
      if (deadlines.size === 0) {
        clearInterval(watchdog);
        watchdog = undefined;
      }
    }, WATCHDOG_MS).unref();
    p.then(
      (v) => {
        deadlines.delete(entry);
        resolve(v);
      },
      (err: unknown) => {
        deadlines.delete(entry);
        reject(err);
      },
    );
  });
}

/** What is wrong with a value and where: a path of keys and indexes, and the problem. */
interface Fault {
  path: (string | number)[];
  message: string;
  /** How the first path element reads (`argument 2` for CLI words). */
  label?: (first: string | number) => string;
}

/** A lone surrogate (half of a UTF-16 pair): no UTF-8 file can hold it. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
/** NUL ends a C string; U+2028 and U+2029 end a line for some readers (main.cf's among them) and not for others. */
const LINE_BREAKING = /[\0\u2028\u2029]/;

function textProblem(s: string): string | undefined {
  if (LONE_SURROGATE.test(s)) return 'holds a lone UTF-16 surrogate (half of a character), which no config file can hold; send whole characters';
  const m = LINE_BREAKING.exec(s);
  if (!m) return undefined;
  const what = m[0] === '\0' ? 'NUL' : m[0] === '\u2028' ? 'U+2028 (line separator)' : 'U+2029 (paragraph separator)';
  return `holds ${what}, which no config file line can carry; remove it`;
}

/**
 * Whether a value is too big for a var or holds text that no config line can carry, in any
 * string or key at any depth (walked without recursion: a stored value may be arbitrarily deep).
 */
function valueFault(value: unknown, label?: Fault['label']): Fault | undefined {
  const bytes = Buffer.byteLength(JSON.stringify(value) ?? '');
  if (bytes > MAX_VAR_BYTES) return { path: [], message: `the value takes ${bytes} bytes as JSON; a var holds at most ${MAX_VAR_BYTES} (64 KiB)`, ...(label ? { label } : {}) };
  const stack: [unknown, (string | number)[]][] = [[value, []]];
  while (stack.length) {
    const [v, path] = stack.pop()!;
    const problem = typeof v === 'string' ? textProblem(v) : undefined;
    if (problem) return { path, message: problem, ...(label ? { label } : {}) };
    if (v === null || typeof v !== 'object') continue;
    for (const [k, child] of Object.entries(v)) {
      const key = Array.isArray(v) ? Number(k) : k;
      const keyProblem = Array.isArray(v) ? undefined : textProblem(k);
      if (keyProblem) return { path: [...path, key], message: `its key ${keyProblem}`, ...(label ? { label } : {}) };
      stack.push([child, [...path, key]]);
    }
  }
  return undefined;
}

function faultText(f: Fault): string {
  const [first, ...rest] = f.path;
  const where = first === undefined ? [] : [f.label ? f.label(first) : String(first), ...rest.map(String)];
  return where.length ? `${where.join('.')}: ${f.message}` : f.message;
}

/**
 * Issues as one line. A union's "Invalid input" says nothing, so the reasons its branches gave
 * in their own words (custom issues, such as "the hostname contains whitespace") are shown instead.
 */
function issuesText(issues: readonly z.core.$ZodIssue[], at: PropertyKey[] = []): string {
  return issues
    .map((i) => {
      const path = [...at, ...i.path];
      if (i.code === 'invalid_union') {
        const custom = i.errors.flat().filter((b) => b.code === 'custom');
        if (custom.length) return issuesText(custom, path);
      }
      return path.length ? `${path.map(String).join('.')}: ${i.message}` : i.message;
    })
    .join('; ');
}

/** A fault as invalid params naming the scope or var and the field, never echoing the value. */
function faultError(name: string, f: Fault): RpcError {
  return new RpcError(ErrorCodes.InvalidParams, `invalid value for ${name}: ${faultText(f)}`, { issues: [{ path: f.path, message: f.message }] });
}

/** A zod failure as invalid params, with its issues in data and a readable message. */
export function invalid(prefix: string, error: z.ZodError, usage?: string): RpcError {
  const issues = error.issues.map((i) => ({ path: i.path.map((p) => (typeof p === 'symbol' ? String(p) : p)), message: i.message }));
  const why = issues.map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message)).join('; ');
  return new RpcError(ErrorCodes.InvalidParams, `${prefix}: ${why}${usage ? ` (usage: ${usage})` : ''}`, { issues });
}

/** Runs scope code, turning its ScopeInputError into invalid params. */
/** Refuse a non-admin whose mutation touches adminOnly vars, on every path (var.set, cp.bootstrapper, a scope's set, reset, adopt). */
function requireAdmin(actor: Actor, adminOnly: readonly string[]): void {
  if (adminOnly.length === 0 || actor.admin) return;
  const vars = adminOnly.join(', ');
  throw new RpcError(ErrorCodes.Forbidden, `forbidden: ${actor.name} lacks the admin role needed to change ${vars}; ask an admin (the unix socket or an admin token)`, {
    missing: `the admin role needed to change ${vars}`,
  });
}

function inputErrors<T>(fn: () => T | Promise<T>): Promise<T> {
  const convert = (err: unknown): never => {
    if (err instanceof ScopeInputError && err.kind === 'not-found') throw new RpcError(ErrorCodes.ScopeNotFound, err.message);
    if (err instanceof ScopeInputError) throw new RpcError(ErrorCodes.InvalidParams, err.message, { issues: [{ path: err.path, message: err.message }] });
    throw err;
  };
  try {
    return Promise.resolve(fn()).catch(convert);
  } catch (err) {
    return Promise.reject(err).catch(convert);
  }
}
