import type { Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { ErrorCodes } from '@scoped/protocol/errors';
import type { GateResult } from '../auth.js';
import type { Principal } from '../tokens.js';

/**
 * What the transports answer before a request reaches the dispatcher (over the connection
 * cap, not authenticated, malformed HTTP, wrong path): an HTTP status with a JSON-RPC error
 * body, written the same way by the HTTP handler and by a WebSocket upgrade.
 */
export interface Refusal {
  status: number;
  headers: Record<string, string>;
  body: string;
}

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  413: 'Payload Too Large',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  503: 'Service Unavailable',
};

/** A JSON-RPC error answer with no id (the request could not be read or was not let in). */
export const errorText = (code: number, message: string): string => JSON.stringify({ jsonrpc: '2.0', id: null, error: { code, message } });

export function refusal(status: number, code: number, message: string, headers: Record<string, string> = {}): Refusal {
  return { status, headers: { connection: 'close', 'content-type': 'application/json', ...headers }, body: errorText(code, message) };
}

/** The answer to a request the gate did not let in: 401 with a Bearer challenge, or 429 with Retry-After. */
export function gateRefusal(verdict: Extract<GateResult, { ok: false }>): Refusal {
  const headers: Record<string, string> = verdict.status === 401 ? { 'www-authenticate': 'Bearer' } : {};
  if (verdict.retryAfter) headers['retry-after'] = String(verdict.retryAfter);
  return refusal(verdict.status, verdict.code, verdict.message, headers);
}

/** Answer through the HTTP server. */
export function writeRefusal(res: ServerResponse, r: Refusal): void {
  res.writeHead(r.status, { ...r.headers, 'content-length': Buffer.byteLength(r.body) }).end(r.body);
}

/** Answer on a raw socket: an upgrade the WebSocket server does not take, or a request the HTTP parser rejected. */
export function endWithRefusal(socket: Duplex, r: Refusal): void {
  const lines = Object.entries({ ...r.headers, 'content-length': String(Buffer.byteLength(r.body)) }).map(([k, v]) => `${k}: ${v}`);
  socket.end(`HTTP/1.1 ${r.status} ${REASONS[r.status] ?? 'Error'}\r\n${lines.join('\r\n')}\r\n\r\n${r.body}`);
}

const OVER_CAP_WAITING = 32;
/** How long a connection refused at the cap has to send its request and read the 503, in all. */
const OVER_CAP_ANSWER_MS = 1_000;

/** The limits of a ConnectionCap (config keys of the same names). */
export interface CapLimits {
  /** Open TCP connections, authenticated or not. */
  maxConnections: number;
  /** Connections from one peer address not yet authenticated; beyond, its oldest pending one is dropped. */
  maxConnectionsPerPeer: number;
  /** Connections that have not yet authenticated a request; beyond, the oldest of them is dropped. */
  maxPendingConnections: number;
  /** How long a connection may take to send a complete, authenticated request before it is destroyed. */
  authTimeoutMs: number;
  /** Authenticated connections of one non-admin token. */
  maxConnectionsPerToken: number;
  /** The last slots of maxConnections, which only admins may take (at most half the cap). */
  adminReservedConnections: number;
}

/**
 * A cap on open TCP connections that holds against a flood without a token. Every connection
 * starts pending: it must send a complete, authenticated request (HTTP or WebSocket upgrade)
 * within authTimeoutMs, or it is destroyed (Node's own header timeout only half-closes it).
 * Pending connections may take only part of the cap (maxPendingConnections); a new one
 * beyond that, or beyond the whole cap, pushes out the oldest pending one. So sockets that
 * send nothing or trickle bytes can never hold the slots an admin needs: every local process
 * shares 127.0.0.1, so a limit per address alone cannot tell the admin from the flood, but
 * a request with a valid token is authenticated within moments of connecting, long before
 * it would be the oldest. One address holds at most maxConnectionsPerPeer pending
 * connections (beyond, its oldest pending one is dropped); authenticated connections (an HTTP
 * keep-alive, a WebSocket) hold their slot until they close and are not counted per address:
 * they are bounded per token instead, so readers on 127.0.0.1 never lock out the admin there.
 * Token holders are bounded like the flood: one non-admin token holds at most
 * maxConnectionsPerToken authenticated connections, and non-admin tokens together leave the
 * last adminReservedConnections slots free, so readers spread over several addresses (or
 * several tokens) cannot keep an admin out either.
 *
 * Connections that find the cap full of authenticated ones are answered (HTTP 503 with a
 * JSON-RPC error and Retry-After) instead of dropped unseen, so a client can tell "busy" from
 * "down"; they do not count, and are closed after their answer.
 */
export class ConnectionCap {
  /** Every connection holding a slot, with its peer address. */
  private readonly held = new Map<Socket, string>();
  /** The pending ones among them, oldest first (a Map keeps insertion order), with their deadline. */
  private readonly pending = new Map<Socket, NodeJS.Timeout>();
  /** Pending connections per peer address (authenticated ones are bounded per token instead). */
  private readonly perPeer = new Map<string, number>();
  /** The authenticated connections of non-admin tokens, with their token, and how many each token holds. */
  private readonly byToken = new Map<Socket, string>();
  private readonly perToken = new Map<string, number>();
  /** The authenticated connections of every created token (admins' too), by socket, with its id: revoking it ends them. */
  private readonly ofToken = new Map<Socket, string>();
  /** The connections opened through a Scope GUI session, with its id: logging out ends them. */
  private readonly ofSession = new Map<Socket, string>();
  /** How a transport ends a connection whose token is revoked (else it is destroyed). */
  private readonly enders = new Map<Socket, () => void>();
  private waiting = 0;
  private readonly over = new WeakMap<Socket, Refusal>();
  private readonly full: Refusal;

  constructor(
    server: Server,
    private readonly limits: CapLimits,
  ) {
    this.full = refusal(
      503,
      ErrorCodes.Busy,
      `Too many connections: scoped serves at most ${limits.maxConnections} at once (maxConnections); try again shortly`,
      { 'retry-after': '1' },
    );
    server.prependListener('connection', (socket: Socket) => this.accept(socket));
  }

  /** The answer for a connection let in only to be refused, or undefined when it holds a slot. */
  refusalFor(socket: Socket): Refusal | undefined {
    return this.over.get(socket);
  }

  /**
   * A request on this connection passed the gate: it keeps its slot until it closes, unless its
   * token already holds its share (the answer to send instead; the connection is then closed).
   * A connection is counted against the token of its first authenticated request.
   */
  admit(socket: Socket, principal: Principal): Refusal | undefined {
    if (!this.pending.has(socket)) return undefined;
    if (principal.role !== 'admin') {
      const over = this.tokenRefusal(principal);
      if (over) return over;
      const token = tokenKey(principal);
      this.byToken.set(socket, token);
      this.perToken.set(token, (this.perToken.get(token) ?? 0) + 1);
    }
    if (principal.tokenId !== undefined) this.ofToken.set(socket, principal.tokenId);
    if (principal.session !== undefined) this.ofSession.set(socket, principal.session);
    this.settle(socket);
    return undefined;
  }

  /** How to end this connection when its token is revoked (a WebSocket says why first); replaces the previous one. */
  whenRevoked(socket: Socket, end: () => void): void {
    if (this.held.has(socket)) this.enders.set(socket, end);
  }

  /**
   * A token was revoked: end its connections now, so that idle ones (a WebSocket whose pings
   * the client library answers by itself, an HTTP keep-alive) do not keep their slots, or their
   * share of the cap, until their next message or their idle timeout.
   */
  endToken(tokenId: string): void {
    for (const [socket, id] of this.ofToken) if (id === tokenId) this.end(socket);
  }

  /** A Scope GUI session ended (logout, expiry): end the connections it opened now. */
  endSession(sessionId: string): void {
    for (const [socket, id] of this.ofSession) if (id === sessionId) this.end(socket);
  }

  private end(socket: Socket): void {
    const end = this.enders.get(socket);
    if (end) end();
    else socket.destroy();
  }

  /** Why a non-admin token may not hold one more connection, if it may not. */
  private tokenRefusal(principal: Principal): Refusal | undefined {
    const { maxConnections, maxConnectionsPerToken } = this.limits;
    if ((this.perToken.get(tokenKey(principal)) ?? 0) >= maxConnectionsPerToken) {
      const answer = `Too many connections for token ${principal.name}: scoped serves at most ${maxConnectionsPerToken} at once with one token (maxConnectionsPerToken); close some or try again shortly`;
      return refusal(503, ErrorCodes.Busy, answer, { 'retry-after': '1' });
    }
    const reserve = Math.min(this.limits.adminReservedConnections, Math.floor(maxConnections / 2));
    if (this.byToken.size >= maxConnections - reserve) {
      const answer = `Too many connections: the last ${reserve} of the ${maxConnections} slots are kept for admins (adminReservedConnections); try again shortly`;
      return refusal(503, ErrorCodes.Busy, answer, { 'retry-after': '1' });
    }
    return undefined;
  }

  /** The connection is no longer pending: its deadline is off, and it no longer counts against its address. */
  private settle(socket: Socket): void {
    if (!this.pending.has(socket)) return;
    clearTimeout(this.pending.get(socket));
    this.pending.delete(socket);
    const peer = this.held.get(socket)!;
    const left = this.fromPeer(peer) - 1;
    if (left > 0) this.perPeer.set(peer, left);
    else this.perPeer.delete(peer);
  }

  /**
   * A new connection takes a pending slot. Its address's oldest pending connection makes room
   * when the address holds maxConnectionsPerPeer pending ones, so an address is never refused
   * outright: who is behind a connection (an admin, a reader) is known only once it
   * authenticates, and authenticated connections are bounded per token.
   */
  private accept(socket: Socket): void {
    const peer = socket.remoteAddress ?? 'unknown';
    const { maxConnections, maxConnectionsPerPeer, maxPendingConnections, authTimeoutMs } = this.limits;
    if (this.fromPeer(peer) >= maxConnectionsPerPeer) this.dropOldestPending(peer);
    if (this.pending.size >= maxPendingConnections || this.held.size >= maxConnections) this.dropOldestPending();
    if (this.held.size >= maxConnections) return this.refuse(socket, this.full);
    this.held.set(socket, peer);
    this.perPeer.set(peer, this.fromPeer(peer) + 1);
    const deadline = setTimeout(() => socket.destroy(), authTimeoutMs);
    deadline.unref();
    this.pending.set(socket, deadline);
    socket.once('close', () => this.release(socket));
  }

  private fromPeer(peer: string): number {
    return this.perPeer.get(peer) ?? 0;
  }

  /** Give a connection's slot back (once: when it is dropped, and again when it closes). */
  private release(socket: Socket): void {
    const peer = this.held.get(socket);
    if (peer === undefined) return;
    this.settle(socket);
    this.held.delete(socket);
    this.ofToken.delete(socket);
    this.ofSession.delete(socket);
    this.enders.delete(socket);
    const token = this.byToken.get(socket);
    if (token !== undefined) {
      this.byToken.delete(socket);
      const others = (this.perToken.get(token) ?? 1) - 1;
      if (others > 0) this.perToken.set(token, others);
      else this.perToken.delete(token);
    }
  }

  /** Destroy the oldest pending connection (of one peer, when given); its slot is free at once. */
  private dropOldestPending(peer?: string): void {
    for (const socket of this.pending.keys()) {
      if (peer !== undefined && this.held.get(socket) !== peer) continue;
      this.release(socket);
      socket.destroy();
      return;
    }
  }

  /**
   * Answer 503 if the request comes within a second; beyond a few waiting, drop at once (a flood
   * must not eat file descriptors). The second is absolute, not an idle timeout, so a client
   * trickling a byte at a time cannot keep a refused socket.
   */
  private refuse(socket: Socket, answer: Refusal): void {
    if (this.waiting >= OVER_CAP_WAITING) return void socket.destroy();
    this.waiting++;
    const deadline = setTimeout(() => socket.destroy(), OVER_CAP_ANSWER_MS);
    deadline.unref();
    socket.once('close', () => {
      clearTimeout(deadline);
      this.waiting--;
    });
    this.over.set(socket, answer);
  }
}

/** What a connection is counted against: the token's id (the admin token file's has none). */
const tokenKey = (p: Principal): string => p.tokenId ?? p.name;

/**
 * Requests Node's HTTP parser rejects before any handler runs (a bad byte in the target, an
 * oversized header) still get a JSON-RPC error body, like every other refusal.
 */
export function answerClientErrors(server: Server): void {
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (!socket.writable) return void socket.destroy();
    const tooLarge = err.code === 'HPE_HEADER_OVERFLOW';
    endWithRefusal(
      socket,
      tooLarge
        ? refusal(431, ErrorCodes.InvalidRequest, 'Invalid Request: the headers are too large')
        : refusal(400, ErrorCodes.InvalidRequest, 'Invalid Request: malformed HTTP'),
    );
  });
}
