import * as m from '@scoped/protocol';
import type { Engine } from './engine.js';
import { asJsonObject, globTest, hiddenStatus } from './engine.js';
import { ErrorCodes, RpcError } from '@scoped/protocol';
import type { CallContext, RpcDispatcher } from './rpc.js';
import type { EventBus, ScopedEvent } from './events.js';
import type { JobManager } from './jobs.js';
import { type Principal, type StoredToken, type TokenRegistry, scopeAllowed } from './tokens.js';
import type { Actor } from './engine.js';
import { z } from 'zod';

/** The audit trail's name for a caller: the token's name and id, or the unix socket. */

/** The scopes a principal may see (of those a glob matches), by name: scope.list's answer, and the Scope GUI's at login. */
export function visibleScopes(engine: Pick<Engine, 'registry'>, principal: Principal, glob?: string): { name: string; summary: string }[] {
  const test = glob ? globTest(glob) : () => true;
  return [...engine.registry.scopes.values()]
    .filter((s) => test(s.name) && scopeAllowed(principal, s.name))
    .map((s) => ({ name: s.name, summary: s.summary }))
    .sort((a, b) => a.name.localeCompare(b.name));
}
export const actorOf = (ctx: CallContext): Actor => ({
  name: ctx.principal.tokenId ? `${ctx.principal.name} (${ctx.principal.tokenId})` : ctx.principal.name,
  transport: ctx.peer && ctx.transport !== 'unix' ? `${ctx.transport} ${ctx.peer}` : ctx.transport,
  admin: ctx.principal.role === 'admin',
  ...(unlimited(ctx.principal) ? {} : { sees: (target: string) => scopeAllowed(ctx.principal, target) }),
});
const actor = actorOf;

const tokenInfo = ({ hash: _hash, ...t }: StoredToken) => t;

/** Optional keys present only when given, as exactOptionalPropertyTypes wants. */
function defined<T extends object>(o: T): { [K in keyof T]: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as { [K in keyof T]: Exclude<T[K], undefined> };
}

/** Who a job belongs to: the token that started it, or the admin's name. */
const ownerKey = (p: Principal) => p.tokenId ?? p.name;
/** Whose jobs a caller may see: every job for admins and tokens without scope limits, else its own. */
const viewerKey = (p: Principal) => (p.role === 'admin' || p.scopes.length === 0 ? undefined : ownerKey(p));

/** Whether a principal sees everything: admins and tokens without scope limits. */
const unlimited = (p: Principal) => p.role === 'admin' || p.scopes.length === 0;

/** The scope a drift item belongs to; an item no scope declares is a raw var's, which counts as cp.bootstrapper. */
const driftScope = (d: { scope?: unknown }) => (typeof d.scope === 'string' ? d.scope : 'cp.bootstrapper');

/** The drift items a principal may see: those of its scopes. */
function visibleDrift<T extends { scope?: unknown }>(p: Principal, drift: readonly T[]): T[] {
  return unlimited(p) ? [...drift] : drift.filter((d) => scopeAllowed(p, driftScope(d)));
}

/**
 * What of an event a subscriber may see, or nothing: a token limited to some scopes hears about
 * those and its own jobs only. drift.detected carries the drift of a whole unit, which can span
 * scopes (main.cf's relayhost and myhostname), so such a token gets a copy with its scopes'
 * items only, and nothing when none is left. Events are shared by every subscriber: never changed.
 */
function eventView(p: Principal, e: ScopedEvent): ScopedEvent | undefined {
  if (unlimited(p)) return e;
  const data = (e.data ?? {}) as { scope?: unknown; target?: unknown; owner?: unknown; drift?: unknown };
  if (e.topic.startsWith('job.')) return data.owner === ownerKey(p) ? e : undefined;
  if (e.topic === 'drift.detected' && Array.isArray(data.drift)) {
    const items = visibleDrift(p, data.drift as { scope?: unknown }[]);
    if (items.length === 0) return undefined;
    if (items.length === data.drift.length && typeof data.scope === 'string' && scopeAllowed(p, data.scope)) return e;
    // The scope whose read noticed it is told only when the token may see that scope.
    const { scope, ...rest } = data;
    return { ...e, data: { ...rest, ...(typeof scope === 'string' && scopeAllowed(p, scope) ? { scope } : {}), drift: items } };
  }
  const about = typeof data.scope === 'string' ? data.scope : typeof data.target === 'string' ? data.target : undefined;
  return about !== undefined && scopeAllowed(p, about) ? e : undefined;
}

/** A recovery as a principal may see it: a token limited to other scopes learns that one is stuck and what to do, not whose change or why. */
function recoveryView(p: Principal, r: m.RecoveryStatus | undefined): m.RecoveryStatus | undefined {
  return !r || unlimited(p) || scopeAllowed(p, r.target) ? r : hiddenStatus(r);
}

/** Wire every protocol method to the engine. */
export function registerHandlers(
  rpc: RpcDispatcher,
  engine: Engine,
  tokens: TokenRegistry,
  jobs: JobManager,
  bus: EventBus,
  status: () => z.input<typeof m.daemonStatus.result>,
  gui: (p: Principal) => z.input<typeof m.guiLogin.result>,
): void {
  /** A place for a job of this caller, taken before its plan is prepared (busy when it has too many). */
  const jobSlot = (p: Principal) => jobs.reserve(ownerKey(p), p.role === 'admin');
  /**
   * A change answered when done (not as a job) waits for the engine's lock as a job does, so it
   * holds a place among the caller's jobs while it waits and runs: a flood of synchronous calls
   * is refused busy like a flood of jobs, and an admin never waits behind thousands of them.
   */
  const held = <T>(p: Principal, run: () => Promise<T>): Promise<T> => {
    const slot = jobSlot(p);
    return Promise.resolve()
      .then(run)
      .finally(() => slot.release());
  };

  rpc.register(m.scopeList, ({ glob }, ctx) => ({ scopes: visibleScopes(engine, ctx.principal, glob) }));

  rpc.register(m.scopeInfo, ({ name }) => {
    const s = engine.scope(name);
    const units = engine.registry.unitsReading(s.vars).map((u) => u.name);
    return {
      name: s.name,
      summary: s.summary,
      help: s.help,
      usage: s.usage,
      examples: [...s.examples],
      vars: [...s.vars],
      units,
      secretFields: [...(s.secretFields ?? [])],
      valueSchema: asJsonObject(z.toJSONSchema(s.schema, { io: 'input', unrepresentable: 'any' })),
    };
  });

  // Answers are shared (reused while nothing changed): a limited token gets a copy with its scopes' drift only.
  rpc.register(m.scopeGet, async ({ name, args, words }, ctx) => {
    const r = await engine.get(name, args ?? [], words);
    return unlimited(ctx.principal) ? r : { ...r, drift: visibleDrift(ctx.principal, r.drift) };
  });
  rpc.register(m.scopeSet, (p, ctx) => {
    const { async: background, ...params } = defined(p);
    if (!background || params.dryRun) return held(ctx.principal, () => engine.set(params, actor(ctx)));
    const slot = jobSlot(ctx.principal);
    return engine.prepareSet(params, actor(ctx)).then(
      (run) => ({ status: 'queued' as const, job: slot.start('scope.set', params.name, run).id }),
      (err: unknown) => {
        slot.release();
        throw err;
      },
    );
  });
  rpc.register(m.scopeReset, (p, ctx) => held(ctx.principal, () => engine.reset(defined(p), actor(ctx))));
  rpc.register(m.scopeCheck, async ({ name }, ctx) => {
    const r = await engine.check(name);
    const drift = visibleDrift(ctx.principal, r.drift);
    // A stuck recovery fails every check: whatever scope is asked about, changes to it are refused until it is finished.
    const recovery = recoveryView(ctx.principal, engine.recovery.stuckStatus());
    // Defaults not yet applied are no drift: the system is as the vars say.
    const pending = visibleDrift(ctx.principal, engine.pending(name));
    return { ok: drift.length === 0 && !recovery, drift, ...(recovery ? { recovery } : {}), ...(pending.length ? { pending } : {}) };
  });
  rpc.register(m.scopeAdopt, (p, ctx) => held(ctx.principal, () => engine.adopt(defined(p), actor(ctx))));

  const varInfo = (name: string) => {
    const def = engine.varDef(name);
    const value = engine.vars()[name];
    return {
      name,
      description: def.description,
      type: describeType(z.toJSONSchema(def.schema, { io: 'input', unrepresentable: 'any' })),
      secret: def.secret !== undefined,
      default: engine.redactVar(name, def.default),
      value: engine.redactVar(name, value),
      isDefault: JSON.stringify(value) === JSON.stringify(def.default),
      units: engine.registry.unitsReading([name]).map((u) => u.name),
    };
  };
  rpc.register(m.varList, () => ({ vars: [...engine.registry.vars.keys()].sort().map(varInfo) }));
  rpc.register(m.varGet, ({ name }) => varInfo(name));
  rpc.register(m.varSet, (p, ctx) => held(ctx.principal, () => engine.setVar(defined(p), actor(ctx))));

  rpc.register(m.unitList, () => ({
    units: [...engine.registry.units.values()].map((u) => ({ name: u.name, description: u.description, reads: [...u.reads] })),
  }));
  rpc.register(m.unitConverge, (p, ctx) => {
    const { async: background, ...params } = defined(p);
    if (!background || params.dryRun) return held(ctx.principal, () => engine.converge(params, actor(ctx)));
    const slot = jobSlot(ctx.principal);
    try {
      const run = engine.prepareConverge(params, actor(ctx));
      return { status: 'queued' as const, job: slot.start('unit.converge', params.units?.join(',') || 'all', run).id };
    } catch (err) {
      slot.release();
      throw err;
    }
  });
  rpc.register(m.jobGet, ({ id, waitMs }, ctx) => (waitMs ? jobs.wait(id, waitMs, viewerKey(ctx.principal)) : jobs.get(id, viewerKey(ctx.principal))));
  // Seeing a job is not owning it: only the token that started a job, and admins, may cancel it
  // (an operator must not undo an admin's change it could not have made itself).
  rpc.register(m.jobCancel, ({ id }, ctx) => {
    const p = ctx.principal;
    if (p.role === 'admin') return jobs.cancel(id);
    jobs.get(id, viewerKey(p));
    try {
      return jobs.cancel(id, ownerKey(p));
    } catch (err) {
      if (err instanceof RpcError && err.code === ErrorCodes.NotFound)
        throw new RpcError(ErrorCodes.Forbidden, `forbidden: job ${id} was started by another caller; only it and admins may cancel it`);
      throw err;
    }
  });

  /** Subscriptions still replaying, per connection: they count against its limit too. */
  const opening = new WeakMap<object, number>();
  rpc.register(m.eventsSubscribe, async ({ topics, since }, ctx) => {
    const conn = ctx.connection;
    if (!conn) throw new RpcError(ErrorCodes.InvalidRequest, 'events.subscribe works over a WebSocket only (ws://HOST:PORT/rpc)');
    const held = conn.subscriptions.size + (opening.get(conn) ?? 0);
    if (held >= conn.maxSubscriptions) {
      throw new RpcError(
        ErrorCodes.Busy,
        `Too many subscriptions: a connection carries at most ${conn.maxSubscriptions} subscriptions (maxSubscriptionsPerConnection); subscribe to several topics in one, or events.unsubscribe one first`,
      );
    }
    const principal = ctx.principal;
    opening.set(conn, (opening.get(conn) ?? 0) + 1);
    let sub;
    try {
      // Replayed events (since) go out before this answer, already carrying the subscription's id, as fast as the peer reads;
      // the replay waits its turn (one per connection, a share of the daemon's per token).
      const turn = { lane: conn, owner: principal.tokenId ?? principal.name, open: () => conn.isOpen() };
      sub = await bus.subscribe(
        topics,
        (e, subscription) => conn.notify(m.EVENT_NOTIFICATION, { subscription, ...e }),
        since,
        (e) => eventView(principal, e),
        () => conn.ready(),
        turn,
      );
    } finally {
      opening.set(conn, opening.get(conn)! - 1);
    }
    conn.subscriptions.add(sub.id);
    // Registered after the await: onClose runs at once when the socket closed meanwhile.
    conn.onClose(() => bus.unsubscribe(sub.id));
    return { subscription: sub.id, revision: sub.revision, gap: sub.gap };
  });
  rpc.register(m.eventsUnsubscribe, ({ subscription }, ctx) => {
    // A connection ends only its own subscriptions.
    if (!ctx.connection?.subscriptions.delete(subscription)) return { ok: false };
    return { ok: bus.unsubscribe(subscription) };
  });
  rpc.register(m.daemonStatus, (_p, ctx) => {
    const recovery = recoveryView(ctx.principal, engine.recovery.status());
    return { ...status(), ...(recovery ? { recovery } : {}) };
  });
  let discovered: Record<string, m.Json> | undefined;
  rpc.register(m.rpcDiscover, () => (discovered ??= asJsonObject(m.buildOpenRpc(m.methods, status().version))));

  rpc.register(m.tokenCreate, async (p, ctx) => {
    const opts: Parameters<TokenRegistry['create']>[0] = { role: p.role };
    if (p.name !== undefined) opts.name = p.name;
    if (p.scopes !== undefined) opts.scopes = p.scopes;
    if (p.expires !== undefined) opts.expires = p.expires;
    let created;
    try {
      created = await tokens.create(opts);
    } catch (err) {
      throw new RpcError(ErrorCodes.Conflict, (err as Error).message);
    }
    const info = tokenInfo(created.info);
    await engine.audit({
      actor: actor(ctx),
      action: 'token.create',
      target: `${info.name} (${info.id})`,
      new: { role: info.role, scopes: info.scopes, expiresAt: info.expiresAt },
      outcome: 'applied',
    });
    return { ...info, token: created.token };
  });
  // A login address for the caller's own token (the Scope GUI trades it for a session of the same role and scopes).
  rpc.register(m.guiLogin, (_p, ctx) => gui(ctx.principal));
  rpc.register(m.tokenList, () => ({ tokens: tokens.list().map(tokenInfo) }));
  rpc.register(m.tokenRevoke, async ({ id }, ctx) => {
    const revoked = await tokens.revoke(id);
    if (!revoked) throw new RpcError(ErrorCodes.NotFound, `no active token with id or name ${id} (cpcmd token:list shows them)`);
    await engine.audit({ actor: actor(ctx), action: 'token.revoke', target: `${revoked.name} (${revoked.id})`, outcome: 'applied' });
    return tokenInfo(revoked);
  });

  // The history of changes, or with refused the refused calls, or with unchanged the calls that
  // changed nothing, both collapsed with counts; a token limited to some scopes sees those only.
  rpc.register(m.auditList, async ({ scope, since, limit, refused, unchanged }, ctx) => {
    if (refused && unchanged)
      throw new RpcError(ErrorCodes.InvalidParams, 'refused and unchanged list different tables: ask for one (cpcmd audit:list --refused or --unchanged)');
    const from = since ? parseSince(since) : 0;
    const test = scope ? globTest(scope) : () => true;
    const visible = (target: string) => test(target) && (ctx.principal.scopes.length === 0 || scopeAllowed(ctx.principal, target));
    const rows = <T extends { last: string; target: string }>(r: T) => Date.parse(r.last) >= from && visible(r.target);
    if (refused) return { entries: [], refusals: await engine.refusals(limit ?? 100, rows) };
    if (unchanged) return { entries: [], unchanged: await engine.noops(limit ?? 100, rows) };
    // A token change's target is a token's name, never a scope: a token limited to some scopes sees none.
    const limited = ctx.principal.scopes.length > 0;
    const entries = await engine.auditEntries(
      limit ?? 100,
      (e) => Date.parse(e.time) >= from && visible(e.target) && !(limited && e.action.startsWith('token.')),
    );
    return { entries };
  });
}

/** A time from `--since`: an ISO date, or a duration back from now such as 2h or 7d. */
function parseSince(since: string): number {
  const m = /^(\d+)([smhd])$/.exec(since);
  if (m) return Date.now() - Number(m[1]) * { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 's' | 'm' | 'h' | 'd'];
  const t = Date.parse(since);
  if (Number.isNaN(t)) throw new RpcError(ErrorCodes.InvalidParams, '--since takes an ISO time such as 2026-01-31T12:00:00Z or a duration such as 2h or 7d');
  return t;
}

/** A short type name from a JSON Schema, for var listings. */
function describeType(schema: Record<string, unknown>): string {
  if (Array.isArray(schema.enum)) return (schema.enum as unknown[]).map((e) => JSON.stringify(e)).join('|');
  const alts = (schema.anyOf ?? schema.oneOf) as Record<string, unknown>[] | undefined;
  if (alts) return alts.map(describeType).join('|');
  if ('const' in schema) return JSON.stringify(schema.const);
  return typeof schema.type === 'string' ? schema.type : 'any';
}
