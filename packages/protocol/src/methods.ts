import { z } from 'zod';
import { defineMethod } from './method.js';

const Name = z.string().min(1).max(200);
const Json = z.json();
/** Any JSON value, as params and results carry it. */
export type Json = z.infer<typeof Json>;

/** One change of a plan, as shown to users: secrets are already redacted. */
export const PlanChange = z.object({
  unit: z.string(),
  kind: z.string(),
  target: z.string(),
  summary: z.string(),
});
export type PlanChange = z.infer<typeof PlanChange>;

/** A difference between what the vars ask for and what the system has. */
export const Drift = z.object({
  scope: z.string().optional(),
  var: z.string().optional(),
  unit: z.string(),
  target: z.string(),
  expected: z.string().nullable(),
  actual: z.string().nullable(),
});
export type Drift = z.infer<typeof Drift>;

/** What a set, a reset or a converge answers. */
export const ApplyResult = z.object({
  status: z.enum(['applied', 'unchanged', 'planned']),
  plan: z.array(PlanChange),
  revision: z.number().int(),
});
export type ApplyResult = z.infer<typeof ApplyResult>;

/**
 * Crash recovery as daemon.status and scope.check report it. stuck: an interrupted or failed
 * change could not be finished or undone; scoped serves reads, refuses other changes, and
 * `cpcmd converge` tries again. completed: the last recovery this daemon finished.
 */
export const RecoveryStatus = z.object({
  state: z.enum(['stuck', 'completed']),
  /** The change being recovered: its method, target and who made it, and when it started. */
  action: z.string(),
  target: z.string(),
  actor: z.string(),
  startedAt: z.string(),
  /** stuck: since when (the first failed attempt); the last attempt's error. */
  since: z.string().optional(),
  error: z.string().optional(),
  /** completed: when, how it ended, and what was done. */
  at: z.string().optional(),
  outcome: z.enum(['applied', 'rolled-back']).optional(),
  detail: z.string().optional(),
  /** What to do. */
  hint: z.string(),
});
export type RecoveryStatus = z.infer<typeof RecoveryStatus>;

/** What an `async: true` call answers at once: the job that carries the work out. */
export const Queued = z.object({ status: z.literal('queued'), job: z.string() });

const SetCommon = {
  async: z.boolean().optional(),
  dryRun: z.boolean().optional(),
  verify: z.boolean().optional(),
  ifRevision: z.number().int().nonnegative().optional(),
  converge: z.boolean().optional(),
};

/** A glob over scope names: letters, digits, `.`, `-`, `_` and the wildcards `*` and `?`. */
const ScopeGlob = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[A-Za-z0-9._*?-]+$/, 'a glob has letters, digits, . - _ and the wildcards * and ?, such as mail.* or net.hostname');

/**
 * The text each of `args` was typed as (cpcmd sends it): for a scalar, the word with its quotes
 * and escapes removed, so a scope that wants a string gets `1.50`, not the number 1.5; null for a
 * list or a map. Callers that send `args` alone are read as before.
 */
const Words = z.array(z.string().max(65_536).nullable()).max(64);
const NUMERAL = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;

/** Whether `text` can be what `arg` was typed as: the string itself, a numeral of the number, true/false or null in any case. */
function typedAs(arg: unknown, text: string | null): boolean {
  if (arg === null) return text === null || /^(?:null|none)$/i.test(text);
  if (typeof arg === 'string') return text === arg;
  if (typeof arg === 'number') return text !== null && NUMERAL.test(text) && Number(text) === arg;
  if (typeof arg === 'boolean') return text !== null && text.toLowerCase() === String(arg);
  return text === null;
}

/** `words` must be as long as `args`, and each the text its argument was read from. */
function wordsMatchArgs(p: { args?: unknown[] | undefined; words?: (string | null)[] | undefined }, ctx: z.RefinementCtx): void {
  if (p.words === undefined) return;
  if (p.args === undefined || p.args.length !== p.words.length) {
    ctx.addIssue({ code: 'custom', path: ['words'], message: 'words gives the typed text of each of args: send both, of the same length' });
    return;
  }
  p.words.forEach((text, i) => {
    if (!typedAs(p.args![i], text)) {
      ctx.addIssue({
        code: 'custom',
        path: ['words', i],
        message: `words[${i}] is not the text argument ${i + 1} was read from (the string itself, a numeral of the number, true/false, null; null for a list or map)`,
      });
    }
  });
}

export const scopeList = defineMethod('scope.list', {
  summary: 'List the scopes, optionally filtered by a glob such as mail.*',
  params: z.object({ glob: ScopeGlob.optional() }).strict(),
  result: z.object({ scopes: z.array(z.object({ name: z.string(), summary: z.string() })) }),
});

export const scopeInfo = defineMethod('scope.info', {
  summary: 'Describe a scope: help, arguments, examples, vars, units and value schema',
  params: z.object({ name: Name }).strict(),
  result: z.object({
    name: z.string(),
    summary: z.string(),
    help: z.string(),
    usage: z.string(),
    examples: z.array(z.string()),
    vars: z.array(z.string()),
    units: z.array(z.string()),
    secretFields: z.array(z.string()),
    valueSchema: Json,
  }),
});

export const scopeGet = defineMethod('scope.get', {
  summary: 'Read a scope as the system has it now; secrets come back redacted',
  params: z
    .object({ name: Name, args: z.array(Json).max(64).optional(), words: Words.optional() })
    .strict()
    .superRefine(wordsMatchArgs),
  result: z.object({ name: z.string(), value: Json, revision: z.number().int(), drift: z.array(Drift) }),
});

export const scopeSet = defineMethod('scope.set', {
  summary: 'Set a scope from a typed value or from CLI words, then converge the units it drives',
  params: z
    .object({
      name: Name,
      value: Json.optional(),
      args: z.array(Json).max(64).optional(),
      words: Words.optional(),
      ...SetCommon,
      /** Delete what the set stops using instead of keeping it (scopes that allow it, such as mail.dkim's keys). */
      purge: z.boolean().optional(),
    })
    .strict()
    .superRefine(wordsMatchArgs),
  result: z.union([ApplyResult.extend({ name: z.string(), value: Json }), Queued]),
  mutates: true,
});

export const scopeReset = defineMethod('scope.reset', {
  summary: 'Put a scope back to its default value and converge',
  params: z.object({ name: Name, dryRun: z.boolean().optional() }).strict(),
  result: ApplyResult.extend({ name: z.string(), value: Json }),
  mutates: true,
});

/**
 * A var that still holds the value scoped found on the system at its first start, whose
 * default differs: the default is not yet applied (never silently), and `apply` is the command
 * that applies it. Not drift: the system is as the vars say.
 */
export const Pending = z.object({
  var: z.string(),
  scope: z.string().optional(),
  /** What the system had and the var holds (redacted). */
  value: Json,
  default: Json,
  apply: z.string(),
});
export type Pending = z.infer<typeof Pending>;

export const scopeCheck = defineMethod('scope.check', {
  summary: 'Report drift between the stored vars and the system, for one scope or all',
  params: z.object({ name: Name.optional() }).strict(),
  // recovery: a stuck recovery (ok is then false), present only while there is one.
  // pending: defaults not yet applied (ok stays true), present only when there are some.
  result: z.object({ ok: z.boolean(), drift: z.array(Drift), recovery: RecoveryStatus.optional(), pending: z.array(Pending).optional() }),
});

export const scopeAdopt = defineMethod('scope.adopt', {
  summary: 'Take what the system has now into the vars of a scope (the answer to drift that should stay)',
  params: z.object({ name: Name, dryRun: z.boolean().optional() }).strict(),
  // notes: what the user should know, such as credentials that were not adopted (cpcmd prints them on stderr).
  result: ApplyResult.extend({ name: z.string(), value: Json, notes: z.array(z.string()).optional() }),
  mutates: true,
});

const VarInfo = z.object({
  name: z.string(),
  description: z.string(),
  type: z.string(),
  secret: z.boolean(),
  default: Json,
  value: Json,
  isDefault: z.boolean(),
  units: z.array(z.string()),
});

export const varList = defineMethod('var.list', {
  summary: 'List every declared var with its value (secrets redacted)',
  params: z.object({}).strict(),
  result: z.object({ vars: z.array(VarInfo) }),
});

export const varGet = defineMethod('var.get', {
  summary: 'Read one var',
  params: z.object({ name: Name }).strict(),
  result: VarInfo,
});

export const varSet = defineMethod('var.set', {
  summary: 'Validate and store one var, then converge the units that read it unless converge is false',
  params: z.object({ name: Name, value: Json, ...SetCommon }).strict(),
  result: ApplyResult.extend({ name: z.string(), value: Json }),
  mutates: true,
});

export const unitList = defineMethod('unit.list', {
  summary: 'List the units and the vars each reads',
  params: z.object({}).strict(),
  result: z.object({ units: z.array(z.object({ name: z.string(), description: z.string(), reads: z.array(z.string()) })) }),
});

export const unitConverge = defineMethod('unit.converge', {
  summary: 'Bring units (all when none is named) back to what the vars say; first finishes a stuck recovery (see daemon.status)',
  params: z.object({ units: z.array(Name).max(64).optional(), dryRun: z.boolean().optional(), async: z.boolean().optional() }).strict(),
  result: z.union([ApplyResult, Queued]),
  mutates: true,
});

export const daemonStatus = defineMethod('daemon.status', {
  summary: 'The daemon: version, uptime, root, listeners, store, plugins and crash recovery',
  params: z.object({}).strict(),
  result: z.object({
    version: z.string(),
    pid: z.number().int(),
    uptimeSeconds: z.number(),
    root: z.string(),
    store: z.string(),
    listeners: z.array(z.string()),
    plugins: z.array(
      z.object({
        name: z.string(),
        version: z.string(),
        scopes: z.array(z.string()),
        status: z.enum(['loaded', 'failed', 'disabled']),
        error: z.string().optional(),
        source: z.string().optional(),
      }),
    ),
    revision: z.number().int(),
    /** A stuck recovery, else the last one finished since the daemon started; absent when there was none. */
    recovery: RecoveryStatus.optional(),
  }),
});

export const Role = z.enum(['admin', 'operator', 'reader']);
export type Role = z.infer<typeof Role>;

const TokenInfo = z.object({
  id: z.string(),
  name: z.string(),
  role: Role,
  scopes: z.array(z.string()),
  createdAt: z.string(),
  expiresAt: z.string().nullable(),
  lastUsedAt: z.string().nullable(),
  revoked: z.boolean(),
});

export const tokenCreate = defineMethod('token.create', {
  summary: 'Create a bearer token with a role, optional scope globs and expiry; the secret is shown once',
  params: z
    .object({
      role: Role,
      name: z
        .string()
        .min(1)
        .max(64)
        .regex(/^[\w.@-]+$/, 'letters, digits, and . _ @ - only')
        .optional(),
      scopes: z.array(ScopeGlob).max(32).optional(),
      expires: z
        .string()
        .regex(/^\d+[smhd]$/, 'a duration such as 30d, 12h, 90m or 3600s')
        .optional(),
    })
    .strict(),
  result: TokenInfo.extend({ token: z.string() }),
  mutates: true,
});

export const tokenList = defineMethod('token.list', {
  summary: 'List the tokens: name, role, scopes, expiry, last use (never the secret)',
  params: z.object({}).strict(),
  result: z.object({ tokens: z.array(TokenInfo) }),
});

export const tokenRevoke = defineMethod('token.revoke', {
  summary: 'Revoke a token by id or name; it stops working at once',
  params: z.object({ id: z.string().min(1).max(64) }).strict(),
  result: TokenInfo,
  mutates: true,
});

export const guiLogin = defineMethod('gui.login', {
  summary:
    "A one-time login address for the Scope GUI (http://HOST:PORT/#login=CODE on the daemon's TCP listener) for the caller's own token: same role and scopes; the code is good once, for guiLoginTtlMs (60 s)",
  params: z.object({}).strict(),
  result: z.object({ url: z.string(), expiresAt: z.string() }),
});

export const AuditEntry = z.object({
  seq: z.number().int(),
  time: z.string(),
  actor: z.string(),
  transport: z.string(),
  action: z.string(),
  target: z.string(),
  old: Json.optional(),
  new: Json.optional(),
  plan: z.array(z.string()),
  /** Calls that changed nothing are not in the history: audit.list with unchanged lists them. */
  outcome: z.enum(['applied', 'rolled-back']),
  reason: z.string().optional(),
  revision: z.number().int(),
});
export type AuditEntry = z.infer<typeof AuditEntry>;

/** Calls of one caller, action and target, collapsed into one row with a count (refused, or changing nothing). */
const CollapsedRow = z.object({
  actor: z.string(),
  /** The transport (and peer) of the last such call. */
  transport: z.string(),
  /** `*`, with target `*`, for the row counting a caller's calls beyond its rate limit. */
  action: z.string(),
  target: z.string(),
  count: z.number().int(),
  first: z.string(),
  last: z.string(),
});

/** The refused calls of one caller, action and target. */
export const AuditRefusal = CollapsedRow.extend({
  /** Why the last one was refused (secrets redacted, clipped). */
  reason: z.string().optional(),
});
export type AuditRefusal = z.infer<typeof AuditRefusal>;

/** The calls of one caller, action and target that changed nothing ('unchanged'). */
export const AuditNoop = CollapsedRow.extend({
  /** The value the last one set (secrets redacted; a value over 1 KiB of JSON as a marker with its size). */
  value: Json.optional(),
  /** Only on the over-the-limit row: what it counts. */
  reason: z.string().optional(),
});
export type AuditNoop = z.infer<typeof AuditNoop>;

/** The most entries or rows one audit.list answers: more are read with since or scope. */
export const AUDIT_LIST_MAX = 1_000;

export const auditList = defineMethod('audit.list', {
  summary:
    'The audit trail, newest last: who changed what, when, and how it ended (secrets redacted); with refused, the refused calls instead, and with unchanged, the calls that changed nothing, each one row per caller, action and target with a count',
  params: z
    .object({
      scope: z
        .string()
        .min(1)
        .max(200)
        .regex(/^[A-Za-z0-9._*?/,-]+$/, 'a glob over what was changed (a scope, a unit, a var), such as mail.* or net/hostname')
        .optional(),
      since: z.string().max(64).optional(),
      limit: z.number().int().min(1).max(AUDIT_LIST_MAX, `limit is at most ${AUDIT_LIST_MAX}; read older entries with since or scope`).optional(),
      /** The refused calls (in refusals, entries then empty) instead of the history of changes. */
      refused: z.boolean().optional(),
      /** The calls that changed nothing (in unchanged, entries then empty) instead of the history of changes. */
      unchanged: z.boolean().optional(),
    })
    .strict(),
  result: z.object({ entries: z.array(AuditEntry), refusals: z.array(AuditRefusal).optional(), unchanged: z.array(AuditNoop).optional() }),
});

export const Job = z.object({
  id: z.string(),
  action: z.string(),
  target: z.string(),
  state: z.enum(['queued', 'running', 'done', 'failed', 'cancelled']),
  done: z.number().int(),
  total: z.number().int(),
  step: z.string().nullable(),
  result: Json.optional(),
  error: z.object({ code: z.number().int(), message: z.string(), data: Json.optional() }).optional(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type Job = z.infer<typeof Job>;

/** The longest a job.get may wait for a job to end (waitMs), so no call is held open for long. */
export const JOB_WAIT_MAX_MS = 10_000;

export const jobGet = defineMethod('job.get', {
  summary: "A job's state and progress, and its result or error once it ended; with waitMs, answered when the job ends or after that long",
  params: z
    .object({
      id: z.string().min(1).max(64),
      /** Wait up to this long (ms) for a queued or running job to end before answering: its end is told at once, without polling. */
      waitMs: z.number().int().min(0).max(JOB_WAIT_MAX_MS, `waitMs is at most ${JOB_WAIT_MAX_MS}; call again to wait longer`).optional(),
    })
    .strict(),
  result: Job,
});

export const jobCancel = defineMethod('job.cancel', {
  summary:
    "Cancel a queued or running job; what it applied so far is rolled back. A job that already ended answers conflict (-32004), saying how it ended, with the job in the error's data",
  params: z.object({ id: z.string().min(1).max(64) }).strict(),
  result: Job,
  mutates: true,
});

export const eventsSubscribe = defineMethod('events.subscribe', {
  summary:
    'WebSocket only: receive events as `event` notifications. Topics are globs (scope.changed, job.*, drift.detected, unit.converged). ' +
    'With since, every kept event after that revision comes first, then live ones, with no gap and no duplicate',
  params: z
    .object({
      topics: z
        .array(
          z
            .string()
            .min(1)
            .max(100)
            .regex(/^[a-z0-9._*?-]+$/, 'a topic glob such as scope.changed or job.*'),
        )
        .min(1)
        .max(32),
      since: z.number().int().nonnegative().optional(),
    })
    .strict(),
  result: z.object({ subscription: z.string(), revision: z.number().int(), gap: z.boolean() }),
});

export const eventsUnsubscribe = defineMethod('events.unsubscribe', {
  summary: 'WebSocket only: stop a subscription',
  params: z.object({ subscription: z.string().min(1).max(64) }).strict(),
  result: z.object({ ok: z.boolean() }),
});

/** The notification that carries an event to a subscriber. */
export const EVENT_NOTIFICATION = 'event';
export const EventMessage = z.object({ subscription: z.string(), revision: z.number().int(), topic: z.string(), time: z.string(), data: Json });
export type EventMessage = z.infer<typeof EventMessage>;

export const rpcDiscover = defineMethod('rpc.discover', {
  summary: 'This API as an OpenRPC document, with JSON Schemas generated from the same zod schemas the daemon validates with',
  params: z.object({}).strict(),
  result: z.record(z.string(), Json),
});

/** Every method, for registration and discovery. */
export const methods = [
  scopeList,
  scopeInfo,
  scopeGet,
  scopeSet,
  scopeReset,
  scopeCheck,
  scopeAdopt,
  varList,
  varGet,
  varSet,
  unitList,
  unitConverge,
  daemonStatus,
  tokenCreate,
  tokenList,
  tokenRevoke,
  guiLogin,
  auditList,
  jobGet,
  jobCancel,
  eventsSubscribe,
  eventsUnsubscribe,
  rpcDiscover,
] as const;

export type AnyMethod = (typeof methods)[number];

/** The method whose name is N, for typing calls made by name without loading the schemas. */
export type MethodByName = { [M in AnyMethod as M['name']]: M };
export type MethodName = keyof MethodByName;
