import { existsSync, mkdirSync } from 'node:fs';
import { chmod, unlink } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { HostSystem } from '@scoped/system';
import { ErrorCodes, RpcError } from '@scoped/protocol';
import { Gate, loadOrCreateToken } from './auth.js';
import { ConnectionCap, answerClientErrors } from './transports/edge.js';
import type { ResolvedConfig } from './config.js';
import { Engine } from './engine.js';
import { GuiSessions } from './gui.js';
import type { Actor } from './engine/types.js';
import { EventBus } from './events.js';
import { JobManager } from './jobs.js';
import { actorOf, registerHandlers, visibleScopes } from './handlers.js';
import { type NameKind, isName } from './names.js';
import { authorize } from './permissions.js';
import { loadPlugins } from './plugins.js';
import { FailureLimiter } from './ratelimit.js';
import { type Principal, TokenRegistry } from './tokens.js';
import { type Logger, jsonLogger } from './log.js';
import { Registry } from './registry.js';
import { RpcDispatcher } from './rpc.js';
import { Store } from './store.js';
import { httpHandler } from './transports/http.js';
import { findWebDist, guiRoutes, listenerOrigins } from './transports/gui.js';
import { attachWebSocket } from './transports/ws.js';

export const VERSION = '0.1.0';

/** What the audit keeps for a name that fails every name grammar: never the caller's text. */
export const INVALID_NAME = '(invalid name)';

/** Every kind of name a call can give (the method's own grammar refused it already if it is wrong for it). */
const NAME_KINDS: readonly NameKind[] = ['scope', 'var', 'unit', 'job', 'token'];

/** `text` when it is a well-formed name of some kind, else the placeholder. */
const named = (text: string) => (NAME_KINDS.some((kind) => isName(kind, text)) ? text : INVALID_NAME);

/**
 * What a refused call was about, from params that may be anything at all. Only well-formed
 * names are kept: a refused call's name is the caller's text, which may hold line breaks or
 * escape sequences that would forge lines in the admin's `cpcmd audit:list --refused`.
 */
export function auditTarget(params: Record<string, unknown>): string {
  const scalar = (v: unknown) => (typeof v === 'string' || typeof v === 'number' ? named(String(v)) : undefined);
  const units = Array.isArray(params.units) ? params.units.filter((u): u is string => typeof u === 'string').map(named) : [];
  return scalar(params.name) ?? scalar(params.id) ?? (units.length ? (units.includes(INVALID_NAME) ? INVALID_NAME : units.join(',')) : undefined) ?? 'all';
}

/** A running daemon; close() stops every listener and removes the socket. */
export interface RunningDaemon {
  readonly engine: Engine;
  /** Listening addresses: the socket path and, when TCP is on, http://HOST:PORT. */
  readonly listeners: string[];
  readonly tcpPort: number | null;
  close(): Promise<void>;
}

/** Refuse to start over a live socket; remove a stale one left by a crash. */
async function claimSocket(file: string): Promise<void> {
  if (!existsSync(file)) return;
  const live = await new Promise<boolean>((resolve) => {
    const s = connect(file);
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
  if (live) throw new Error(`another scoped is already listening on ${file}; stop it or pass --socket`);
  await unlink(file);
}

function listen(server: Server, target: string | { host: string; port: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const done = () => (server.off('error', reject), resolve());
    if (typeof target === 'string') {
      // Bind with a umask that leaves the socket 0660 from the start; chmod again after.
      const old = process.umask(0o117);
      try {
        server.listen(target, done);
      } finally {
        process.umask(old);
      }
    } else server.listen(target.port, target.host, done);
  });
}

const closeServer = (server: Server) =>
  new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });

/** Start scoped with a resolved config. */
export async function startDaemon(config: ResolvedConfig, opts: { log?: Logger } = {}): Promise<RunningDaemon> {
  const started = Date.now();
  const log = opts.log ?? jsonLogger({ level: config.logLevel });
  const registry = new Registry();
  // The first-party plugins first, then the admin's: all through the same checks, in dependency order.
  await loadPlugins(config.plugins, config.pluginDir, registry, log);
  const store = await Store.open(config.store);
  const system = new HostSystem({ root: config.root, kernelHostname: config.kernelHostname });
  const engine = new Engine(
    registry,
    store,
    system,
    {
      kernelHostname: config.kernelHostname,
      auditKeep: config.auditKeep,
      auditMaxAgeDays: config.auditMaxAgeDays,
      refusalKeep: config.refusalKeep,
      refusalNewPerMinute: config.refusalNewPerMinute,
      resetVars: config.resetVars,
    },
    log,
  );
  const bus = new EventBus(store, config.eventKeep, config.maxReplays);
  await bus.init();
  const publishMany = (events: { topic: string; data: unknown }[]): Promise<void> =>
    bus.publishMany(events).then(
      () => undefined,
      (err: unknown) => log.error('events not recorded', { topics: events.map((e) => e.topic), error: String(err) }),
    );
  const publish = (topic: string, data: unknown) => publishMany([{ topic, data }]);
  // Wired before init, so a converge completed at restart still announces itself. Events that
  // carry a change's own writes fail with it: the change is not stored either.
  engine.onEvents = (events, alongside) => (alongside ? bus.publishMany(events, alongside).then(() => undefined) : publishMany(events));
  try {
    await engine.init();
  } catch (err) {
    // A store that fails its checks stops the start; nothing stays open. (A recovery that cannot finish does not: it is reported.)
    system.close();
    await store.close();
    throw err;
  }
  const tokens = new TokenRegistry(store);
  await tokens.init();
  const jobs = new JobManager(publish, log, { perPrincipal: config.maxJobsPerPrincipal, total: config.maxJobs, changesPerMinute: config.maxChangesPerMinute });

  const rpc = new RpcDispatcher(
    log,
    { maxBatch: config.maxBatch, maxResponseBytes: config.maxResponseBytes, maxAnswerBytesInFlight: config.maxAnswerBytesInFlight },
    (method, params, ctx) => authorize(method, params, ctx.principal, engine),
    // Refused calls go to the refusal store (collapsed, rate-limited), apart from the history of changes.
    async (method, params, ctx, err) => {
      // Busy is load shedding (a job cap), like a 429 or 503 at the door, not a decision about
      // the change: recording each would make a flood cost one durable write per call.
      if (engine.audited.has(err) || err.code === ErrorCodes.Busy) return;
      await engine.audit({ actor: actorOf(ctx), action: method, target: auditTarget(params), outcome: 'refused', reason: err.message });
    },
  );
  const listeners: string[] = [];
  // The Scope GUI's logins; its page is served on the TCP listener, whose address is known once it listens.
  const sessions = new GuiSessions(config.guiLoginTtlMs, config.guiSessionTtlMs);
  tokens.onRevoked((id) => sessions.endToken(id));
  let pageUrl: string | undefined;
  let origins: ReadonlySet<string> = new Set();
  const guiLogin = (p: Principal) => {
    if (!pageUrl)
      throw new RpcError(
        ErrorCodes.NotFound,
        'this scoped serves no Scope GUI: it has no TCP listener (--listen none); start scoped with --listen 127.0.0.1:8740 and run cpcmd gui again',
      );
    const { code, expiresAt } = sessions.issueCode(p);
    return { url: `${pageUrl}#login=${code}`, expiresAt: new Date(expiresAt).toISOString() };
  };
  registerHandlers(
    rpc,
    engine,
    tokens,
    jobs,
    bus,
    () => ({
      version: VERSION,
      pid: process.pid,
      uptimeSeconds: Math.round((Date.now() - started) / 1000),
      root: config.root,
      store: config.store.replace(/^(\w+:\/\/)[^@/]*@/, '$1'),
      listeners,
      plugins: registry.plugins.map((p) => ({ ...p })),
      revision: engine.revision,
    }),
    guiLogin,
  );

  const servers: Server[] = [];
  const closers: (() => void)[] = [];
  let tcpPort: number | null = null;
  try {
    mkdirSync(path.dirname(config.socket), { recursive: true, mode: 0o755 });
    await claimSocket(config.socket);
    const unix = createServer(httpHandler(rpc, { maxBodyBytes: config.maxBodyBytes, gate: null, transport: 'unix' }));
    answerClientErrors(unix);
    await listen(unix, config.socket);
    await chmod(config.socket, 0o660);
    servers.push(unix);
    listeners.push(`unix:${config.socket}`);

    if (config.listen) {
      const gate = new Gate(
        await loadOrCreateToken(config.tokenFile),
        tokens,
        new FailureLimiter(config.authFailureLimit, config.authFailureWindowMs),
        sessions,
      );
      const tcp = createServer();
      const cap = new ConnectionCap(tcp, config);
      tokens.onRevoked((id) => cap.endToken(id));
      sessions.onEnded((id) => cap.endSession(id));
      answerClientErrors(tcp);
      const page = guiRoutes({ dist: findWebDist(), gate, sessions, cap, origins: () => origins, visibleScopes: (p: Principal) => visibleScopes(engine, p) });
      tcp.on('request', httpHandler(rpc, { maxBodyBytes: config.maxBodyBytes, gate, transport: 'http', cap, page, origins: () => origins }));
      const ws = attachWebSocket(tcp, rpc, {
        maxPayloadBytes: config.maxWsPayloadBytes,
        gate,
        pingIntervalMs: config.wsPingIntervalMs,
        cap,
        maxBufferedBytes: config.maxWsBufferedBytes,
        maxSubscriptions: config.maxSubscriptionsPerConnection,
        stallTimeoutMs: config.wsStallTimeoutMs,
        maxInFlight: config.maxWsRequestsInFlight,
        origins: () => origins,
      });
      closers.push(() => ws.close());
      await listen(tcp, config.listen);
      servers.push(tcp);
      tcpPort = (tcp.address() as AddressInfo).port;
      const host = config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host;
      listeners.push(`http://${host}:${tcpPort}/rpc`, `ws://${host}:${tcpPort}/rpc`);
      pageUrl = `http://${host}:${tcpPort}/`;
      origins = listenerOrigins(config.listen.host, tcpPort);
    }
  } catch (err) {
    for (const s of servers) await closeServer(s);
    await tokens.close();
    await store.close();
    throw err;
  }
  log.info('listening', { listeners, root: config.root, pid: process.pid, version: VERSION });

  // A daemon the config wants running (a spam filter) that died is started again: when the only
  // changes a converge would make are starts of services, scoped makes them, as itself, audited.
  const supervisor: Actor = { name: 'scoped (supervisor)', transport: 'internal', admin: true };
  let supervising = false;
  const supervise = async () => {
    if (supervising || closing) return;
    supervising = true;
    try {
      const dry = await engine.converge({ dryRun: true }, supervisor);
      const starts = dry.plan.filter((c) => c.kind === 'service' && /^start /.test(c.summary));
      if (!starts.length || starts.length !== dry.plan.length) return;
      const units = [...new Set(starts.map((c) => c.unit))];
      log.warn('a daemon scoped runs was found dead; starting it again', { starts: starts.map((c) => c.summary), units });
      await engine.converge({ units }, supervisor);
    } catch (err) {
      log.error('could not start again a daemon found dead', { error: err instanceof Error ? err.message : String(err) });
    } finally {
      supervising = false;
    }
  };
  if (config.superviseIntervalMs > 0) {
    const timer = setInterval(() => void supervise(), config.superviseIntervalMs);
    timer.unref();
    closers.push(() => clearInterval(timer));
  }

  let closing: Promise<void> | undefined;
  return {
    engine,
    listeners,
    tcpPort,
    close() {
      closing ??= (async () => {
        for (const c of closers) c();
        for (const s of servers) await closeServer(s);
        await unlink(config.socket).catch(() => {});
        // A job still converging finishes (or the journal recovers it at the next start).
        await engine.settle(20_000);
        system.close();
        await bus.drain();
        await tokens.close();
        await store.close();
        log.info('stopped');
      })();
      return closing;
    },
  };
}
