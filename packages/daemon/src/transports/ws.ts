import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { ErrorCodes } from '@scoped/protocol/errors';
import type { Gate } from '../auth.js';
import { type ConnectionCap, endWithRefusal, errorText, gateRefusal, refusal } from './edge.js';
import { KEY_PROTOCOL, SESSION_COOKIE, cookieValues, keyFromProtocols } from '../gui.js';
import type { CallContext, Connection, RpcDispatcher } from '../rpc.js';

/** How long a peer has to answer a closing handshake ws started over a protocol error. */
const CLOSE_GRACE_MS = 2_000;

export interface WsOptions {
  maxPayloadBytes: number;
  gate: Gate;
  /** The TCP connection cap (shared with HTTP); refused upgrades are answered 503. */
  cap: ConnectionCap;
  /** How often to ping; a peer that has not answered the previous ping is dropped. */
  pingIntervalMs: number;
  /** Bytes a peer may leave unread before it is closed with TOO_FAR_BEHIND (maxWsBufferedBytes). */
  maxBufferedBytes: number;
  /** Event subscriptions one connection may carry (maxSubscriptionsPerConnection). */
  maxSubscriptions: number;
  /** How long a peer may leave its backlog unread before it is closed with TOO_FAR_BEHIND (wsStallTimeoutMs). */
  stallTimeoutMs: number;
  /** Requests one connection may have in flight (maxWsRequestsInFlight); beyond, the socket is paused. */
  maxInFlight: number;
  /** The origins of the page served on this listener: an upgrade with any other Origin is refused (403). */
  origins: () => ReadonlySet<string>;
}

/** The close code for a peer that left more than maxBufferedBytes unread; it may resume with `since`. */
export const TOO_FAR_BEHIND = 4008;

/**
 * Start the closing handshake and read again if the socket was paused (requests in flight):
 * the peer's closing frame must be read for the connection to end now rather than at ws's
 * close timeout; messages read meanwhile are dropped (the connection is no longer open).
 */
function closeReading(ws: WebSocket, code: number, reason: string): void {
  ws.close(code, reason);
  if (ws.isPaused) ws.resume();
}

/**
 * Sending on one WebSocket within a memory bound. Every answer and notification goes through
 * `send`; once more than `max` bytes wait to be written (the peer stopped reading), or more
 * than a quarter of `max` has waited for `stallMs` without the peer reading it down (a replay
 * or a live subscriber whose reader makes no progress), the connection is closed with
 * TOO_FAR_BEHIND instead of buffering on or holding a replay's turn and page: what was sent
 * before still arrives first, so the peer knows the last event it got and resumes from there.
 * `ready` lets a replay go no faster than the peer reads (below a quarter of `max`), so a
 * replay alone never closes a peer that does read.
 */
function boundedSender(ws: WebSocket, max: number, stallMs: number) {
  const low = Math.floor(max / 4);
  const waiting: ((open: boolean) => void)[] = [];
  const open = () => ws.readyState === ws.OPEN;
  const wake = () => {
    for (const w of waiting.splice(0)) w(open());
  };
  let stall: NodeJS.Timeout | undefined;
  const caughtUp = () => {
    clearTimeout(stall);
    stall = undefined;
  };
  // Closing wakes a waiting replay at once (false): it gives back its turn and its page now,
  // not when the peer at last reads the close.
  const tooFarBehind = (why: string) => {
    caughtUp();
    closeReading(ws, TOO_FAR_BEHIND, `too far behind (${why}); resubscribe with since=the last revision received`);
    wake();
  };
  const behind = () => {
    if (stall || !open()) return;
    stall = setTimeout(() => tooFarBehind(`nothing read for ${stallMs} ms`), stallMs);
    stall.unref();
  };
  // Called as each message is written out (or fails): wake a replay once the backlog is low.
  const written = () => {
    if (!open() || ws.bufferedAmount <= low) {
      caughtUp();
      if (waiting.length) wake();
    }
  };
  ws.once('close', written);
  return {
    /**
     * Send `text`, then call `done` once it has been written (or was dropped). What decides is
     * what the peer had already left unread: one answer larger than `max` still goes to a peer
     * that reads, and a peer that does not read gets at most one more answer before it is closed.
     */
    send(text: string, done?: () => void): void {
      if (!open()) return void done?.();
      if (ws.bufferedAmount > max) {
        tooFarBehind(`over ${max} bytes unread`);
        return void done?.();
      }
      ws.send(text, () => {
        done?.();
        written();
      });
      if (ws.bufferedAmount > low) behind();
    },
    ready(): true | Promise<boolean> {
      if (!open()) return Promise.resolve(false);
      if (ws.bufferedAmount <= low) return true;
      behind();
      return new Promise((resolve) => waiting.push(resolve));
    },
  };
}

/** WebSocket `/rpc` on an HTTP server: one JSON-RPC message (or batch) per WebSocket message. */
export function attachWebSocket(server: Server, dispatcher: RpcDispatcher, opts: WsOptions): { close(): void } {
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: opts.maxPayloadBytes,
    // The page offers its session key as a subprotocol; a browser drops a socket whose answer does not name the one it offered.
    handleProtocols: (protocols) => [...protocols].find((p) => p.startsWith(KEY_PROTOCOL)) ?? false,
  });
  const alive = new WeakMap<WebSocket, boolean>();
  /** Each connection's token check (closes it when its token is no longer good), run on every ping tick too. */
  const tokenGone = new WeakMap<WebSocket, () => boolean>();

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = (req.url ?? '/').split('?')[0];
    if (url !== '/rpc') return endWithRefusal(socket, refusal(404, ErrorCodes.InvalidRequest, 'Not found: JSON-RPC is served at POST /rpc and WebSocket /rpc'));
    const over = opts.cap.refusalFor(req.socket);
    if (over) return endWithRefusal(socket, over);
    // A page on another site (or a DNS name rebound to loopback) may not open a socket, even with the session cookie.
    const origin = req.headers.origin;
    if (origin !== undefined && !opts.origins().has(origin))
      return endWithRefusal(socket, refusal(403, ErrorCodes.Forbidden, 'Forbidden: a WebSocket from another site (its Origin header) is refused'));
    // The Scope GUI's page authenticates by its session cookie and key; every other client by its bearer token.
    const peer = req.socket.remoteAddress ?? 'unknown';
    const cookies = cookieValues(req.headers.cookie, SESSION_COOKIE);
    const key = keyFromProtocols(req.headers['sec-websocket-protocol']);
    const verdict =
      req.headers.authorization === undefined && cookies.length > 0 ? opts.gate.session(cookies, key, peer) : opts.gate.check(req.headers.authorization, peer);
    if (!verdict.ok) return endWithRefusal(socket, gateRefusal(verdict));
    const refused = opts.cap.admit(req.socket, verdict.principal);
    if (refused) return endWithRefusal(socket, refused);
    wss.handleUpgrade(req, socket, head, (ws) => {
      const closers: (() => void)[] = [];
      const out = boundedSender(ws, opts.maxBufferedBytes, opts.stallTimeoutMs);
      // A token revoked while the connection is open ends it at once (the cap calls this from
      // token.revoke); one that expires, at the next ping tick; either, at its next message or event.
      // A peer that does not answer the closing handshake is cut after a grace period.
      const revoked = (): boolean => {
        if (opts.gate.stillValid(verdict.principal)) return false;
        if (ws.readyState === ws.OPEN) {
          ws.send(errorText(ErrorCodes.Unauthorized, 'Unauthorized: the token was revoked or has expired'));
          closeReading(ws, 4401, 'token revoked or expired');
          setTimeout(() => ws.terminate(), CLOSE_GRACE_MS).unref();
        }
        return true;
      };
      tokenGone.set(ws, revoked);
      opts.cap.whenRevoked(req.socket, revoked);
      const connection: Connection = {
        notify: (method, params) => {
          if (ws.readyState === ws.OPEN && !revoked()) out.send(JSON.stringify({ jsonrpc: '2.0', method, params }));
        },
        ready: () => out.ready(),
        isOpen: () => ws.readyState === ws.OPEN,
        onClose: (fn) => {
          if (ws.readyState === ws.CLOSED || ws.readyState === ws.CLOSING) fn();
          else closers.push(fn);
        },
        subscriptions: new Set(),
        maxSubscriptions: opts.maxSubscriptions,
      };
      ws.once('close', () => {
        for (const fn of closers) fn();
      });
      const ctx: CallContext = { principal: verdict.principal, transport: 'ws', connection };
      if (req.socket.remoteAddress) ctx.peer = req.socket.remoteAddress;
      alive.set(ws, true);
      ws.on('pong', () => alive.set(ws, true));
      // A protocol error (a message over maxPayload: 1009, bad UTF-8: 1007) makes ws start the
      // closing handshake itself: let its close frame reach the peer, which may still be sending,
      // instead of cutting the socket under it (the peer then saw 1006); a peer that never answers
      // is cut after a grace period. Any other error ends the socket at once.
      ws.on('error', () => {
        if (ws.readyState !== ws.CLOSING) return void ws.terminate();
        setTimeout(() => ws.terminate(), CLOSE_GRACE_MS).unref();
      });
      // At most maxInFlight requests are answered at once; the next ones wait in `queue` and the
      // socket is paused meanwhile, so a peer sending faster than it is answered is held back by
      // TCP instead of buffered here (ws may still emit the few messages it had already read).
      const queue: string[] = [];
      let inFlight = 0;
      const dispatch = (text: string): void => {
        inFlight++;
        dispatcher.handleText(text, ctx).then(
          (answer) => {
            if (answer !== null) out.send(answer.text, answer.release);
            finished();
          },
          () => {
            closeReading(ws, 1011, 'internal error');
            finished();
          },
        );
      };
      const finished = (): void => {
        inFlight--;
        if (ws.readyState !== ws.OPEN || (queue.length && revoked())) return void queue.splice(0);
        const next = queue.shift();
        if (next !== undefined) return dispatch(next);
        if (ws.isPaused) ws.resume();
      };
      ws.on('message', (data, isBinary) => {
        if (ws.readyState !== ws.OPEN || revoked()) return;
        const text = isBinary ? Buffer.from(data as Buffer).toString('utf8') : data.toString();
        if (inFlight < opts.maxInFlight) return dispatch(text);
        queue.push(text);
        if (!ws.isPaused) ws.pause();
      });
    });
  });

  const timer = setInterval(() => {
    for (const ws of wss.clients) {
      if (tokenGone.get(ws)?.()) continue;
      if (!alive.get(ws)) {
        ws.terminate();
        continue;
      }
      alive.set(ws, false);
      ws.ping();
    }
  }, opts.pingIntervalMs);
  timer.unref();

  return {
    close() {
      clearInterval(timer);
      for (const ws of wss.clients) closeReading(ws, 1001, 'daemon shutting down');
      // A peer that does not answer the closing handshake (hung, suspended) must not hold up the shutdown.
      setTimeout(() => {
        for (const ws of wss.clients) ws.terminate();
      }, 1_000).unref();
      wss.close();
    },
  };
}
