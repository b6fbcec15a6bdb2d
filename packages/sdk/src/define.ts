import type { z } from 'zod';
import type { Change } from './changes.js';
import type { System } from './system.js';

/** The values of every var, by name, as the engine hands them to units and scopes. */
export type VarValues = Readonly<Record<string, unknown>>;

/** A var: one named, typed piece of desired state, stored by the daemon. */
export interface VarDef<T = unknown> {
  readonly name: string;
  readonly description: string;
  readonly schema: z.ZodType<T>;
  readonly default: T;
  /**
   * Secret handling: `true` when the whole value is secret, or the object keys that are.
   * Secret parts never appear in output, plans, logs or the audit trail.
   */
  readonly secret?: true | readonly string[];
  /**
   * Only an admin may change this var, through any path (var.set, cp.bootstrapper, a scope's
   * set, reset or adopt): for vars that are powers over the whole machine, such as raw
   * Postfix parameters. The daemon refuses other principals with forbidden, naming the var.
   */
  readonly adminOnly?: boolean;
}

export function defineVar<T>(def: VarDef<T>): VarDef<T> {
  if (!/^[a-z][a-z0-9_]*$/.test(def.name)) throw new Error(`var name ${def.name} must be snake_case`);
  return def;
}

/** Context a unit gets while planning. */
export interface PlanContext {
  readonly system: System;
  /** Options of the daemon that change what units do, such as managing the kernel hostname. */
  readonly options: Readonly<{ kernelHostname: boolean }>;
  /**
   * Vars whose secret parts the caller has just supplied (a set that gives a password): the
   * unit plans the writing of their secrets anew (the file, postmap, reload) even when the
   * system already has them, exactly as for a new secret. Otherwise the plan, the status and
   * the revision would tell the caller whether a guessed secret equals the stored one. Only
   * set while planning such a set; reads, drift, converge and the verification after an apply
   * plan without it, so they stay idempotent.
   */
  readonly rewrite?: ReadonlySet<string>;
}

/** A converger: observes part of the machine and plans the changes that make it match the vars. */
export interface UnitDef<O = unknown> {
  readonly name: string;
  readonly description: string;
  /** The vars this unit reads; a change to any of them converges the unit. */
  readonly reads: readonly string[];
  observe(ctx: PlanContext): Promise<O>;
  /** Pure: the changes that turn `observed` into what `vars` say. Empty when they already match. */
  plan(vars: VarValues, observed: O, ctx: PlanContext): Change[] | Promise<Change[]>;
  /**
   * Constraints across vars, checked on every change of a var this unit reads (converging
   * or not): return why the combination is refused, phrased as what to do instead.
   */
  validate?(vars: VarValues, ctx: PlanContext): string | undefined | Promise<string | undefined>;
  /** Longest time an apply of this unit may take, in ms (default 30 s). */
  readonly timeoutMs?: number;
  /**
   * The values of the vars this unit reads, as the system has them now (only those it can
   * tell; a var left out keeps its value). On its first start on a system, scoped stores these
   * as the starting values of every var no one has set yet, so a set changes only what it
   * names. The values must make `plan` answer no change for what they cover. `vars` are the
   * current values, for vars that depend on one another (a TLS level on the smart host).
   */
  adopt?(observed: O, vars: VarValues, ctx: PlanContext): Record<string, unknown> | Promise<Record<string, unknown>>;
}

export function defineUnit<O>(def: UnitDef<O>): UnitDef<O> {
  if (!/^[a-z][a-z0-9-]*\/[a-z][a-z0-9-]*$/.test(def.name)) throw new Error(`unit name ${def.name} must be area/name`);
  return def;
}

/** Context a scope gets when it parses arguments or reads the system. */
export interface ScopeContext {
  readonly system: System;
  readonly vars: VarValues;
  /** The declared vars, for scopes that expose them (cp.bootstrapper). */
  readonly varDefs: ReadonlyMap<string, VarDef>;
  /** A var's value with its secret parts replaced by the redaction marker. */
  redactVar(name: string, value: unknown): unknown;
  /**
   * While parsing CLI words (parseArgs, then toVars of the same call) and in get:
   * the text each argument was typed as, null for a list or a map; absent when the caller sent
   * args alone. Read it with argText(args, i, ctx) where the scope wants a string.
   */
  readonly words?: readonly (string | null)[];
  /**
   * While parsing and turning a set's value into vars: the caller asked for --purge, so what
   * the scope stops using is deleted, not kept (only for scopes with allowPurge).
   */
  readonly purge?: boolean;
  /**
   * The vars that still hold the value scoped found on the system at its first start (never
   * set since): a scope may treat such a value as no one's choice, such as a TLS level that
   * credentials need raised.
   */
  readonly adopted?: ReadonlySet<string>;
}

/** What a scope's adopt takes into its vars, and what the user should know about it (such as what it left out). */
export interface Adoption {
  readonly vars: Record<string, unknown>;
  /** Shown to the user with the answer (cpcmd prints them on stderr), such as credentials that were not adopted. */
  readonly notes?: readonly string[];
}

/** The typed public face over vars. */
export interface ScopeDef<V = unknown> {
  readonly name: string;
  readonly summary: string;
  readonly help: string;
  /** The argument synopsis shown by `scope:info`, such as `HOST [USER PASS] | false`. */
  readonly usage: string;
  readonly examples: readonly string[];
  readonly schema: z.ZodType<V>;
  /** The vars this scope writes; their units converge on set. */
  readonly vars: readonly string[];
  /** Object keys of the value that are secret. */
  readonly secretFields?: readonly string[];
  /** Longest time this scope's own code (get, parseArgs, toVars, adopt) may take, in ms (default 10 s); beyond it the plugin is disabled. */
  readonly timeoutMs?: number;
  /**
   * Turn CLI words (already parsed by the grammar) into a value; throw ScopeInputError when they
   * do not fit. Where a string is wanted, take argText(args, i, ctx): the word as typed.
   */
  parseArgs(args: readonly unknown[], ctx: ScopeContext): V | Promise<V>;
  /** The var changes that a value means. Validation beyond the schema goes here (throw ScopeInputError). */
  toVars(value: V, ctx: ScopeContext): Record<string, unknown> | Promise<Record<string, unknown>>;
  /** The value as the system has it now (what `scope:get` shows). `args` narrow it, such as one var name. */
  get(ctx: ScopeContext, args: readonly unknown[]): unknown | Promise<unknown>;
  /** The default value (what `scope:reset` restores); by default the vars' defaults apply. */
  readonly resetVars?: (ctx: ScopeContext) => Record<string, unknown>;
  /**
   * A set value as it may be shown (results, audit); by default secretFields are redacted.
   * What get() returns is redacted by secretFields only, so a scope whose secrets depend on
   * the value (cp.bootstrapper) redacts in get() itself.
   */
  redact?(value: V, ctx: ScopeContext): unknown;
  /** The vars that would make the system's current state the desired one (`scope:check --adopt`). */
  adopt?(ctx: ScopeContext): Adoption | Promise<Adoption>;
  /**
   * Check a value against the outside world before anything is written (`--verify`), such
   * as logging in to a relay; throw ScopeInputError with what went wrong.
   */
  verify?(value: V, ctx: ScopeContext): Promise<void>;
  /** Whether setting this scope converges by default (cp.bootstrapper allows --no-converge). */
  readonly allowNoConverge?: boolean;
  /** Whether a set takes --purge (ScopeContext.purge): delete what the scope stops using, such as mail.dkim's keys. */
  readonly allowPurge?: boolean;
  /**
   * get reads more than the System (the DNS, the network), which scoped cannot watch: its
   * answer is never reused, each scope:get asks again (mail.deliverability).
   */
  readonly live?: boolean;
}

export function defineScope<V>(def: ScopeDef<V>): ScopeDef<V> {
  if (!/^[a-z][a-z0-9]*\.[a-z][a-z0-9-]*$/.test(def.name)) throw new Error(`scope name ${def.name} must be group.kebab-name`);
  return def;
}

/** A bundle of vars, units and scopes: what a plugin's default export is. */
export interface PluginDef {
  readonly name: string;
  readonly version: string;
  /** The plugin API version this plugin was written against. */
  readonly apiVersion: number;
  /**
   * The plugins (by name) whose vars this plugin's units and scopes read or write, such as
   * `['@scoped/plugin-net']` for a unit that reads `system_hostname`. They are registered
   * before it; a plugin that uses another's var without naming it here, names one that is
   * not loaded, or is part of a cycle, is refused at load with the reason.
   */
  readonly dependsOn?: readonly string[];
  readonly vars?: readonly VarDef<any>[];
  readonly units?: readonly UnitDef<any>[];
  readonly scopes?: readonly ScopeDef<any>[];
}

export const API_VERSION = 1;

export function definePlugin(def: PluginDef): PluginDef {
  return def;
}

/** Marks a ScopeInputError made by any copy of this package (a plugin installed outside scoped has its own copy). */
const SCOPE_INPUT_ERROR = Symbol.for('@scoped/sdk.ScopeInputError');

/**
 * Bad input to a scope: crosses the wire as invalid params (-32602) with this message, which
 * should say what to type instead.
 */
export class ScopeInputError extends Error {
  override readonly name = 'ScopeInputError';
  /**
   * `instanceof` holds for a ScopeInputError of another copy of the sdk too: a plugin built
   * outside the daemon's install brings its own, and its refusals must still reach the user
   * as invalid params, not as a plugin failure.
   */
  static override [Symbol.hasInstance](value: unknown): boolean {
    // biome-ignore lint/complexity/noThisInStatic: `this` is the class instanceof was asked about; a subclass keeps the ordinary check.
    if (this !== ScopeInputError) return Function.prototype[Symbol.hasInstance].call(this, value);
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[SCOPE_INPUT_ERROR] === true;
  }
  constructor(
    message: string,
    readonly path: (string | number)[] = [],
    /** `not-found` when the input names something that does not exist (an unknown var): cpcmd exits 7, not 6. */
    readonly kind: 'invalid' | 'not-found' = 'invalid',
  ) {
    super(message);
    Object.defineProperty(this, SCOPE_INPUT_ERROR, { value: true });
  }
}
