import type { Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { ErrorCodes } from '@scoped/protocol/errors';
import type { GateResult } from '../auth.js';

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

/**
 * A cap on open TCP connections that answers the ones over it (HTTP 503 with a JSON-RPC
 * error and Retry-After) instead of dropping them unseen, so a client can tell "busy" from
 * "down". Connections over the cap do not count, and are closed after their answer.
 */
export class ConnectionCap {
  private open = 0;
  private waiting = 0;
  private readonly over = new WeakSet<Socket>();
  readonly answer: Refusal;

  constructor(server: Server, max: number) {
    this.answer = refusal(503, ErrorCodes.Busy, `Too many connections: scoped serves at most ${max} at once (maxConnections); try again shortly`, { 'retry-after': '1' });
    server.prependListener('connection', (socket: Socket) => {
      if (this.open >= max) {
        // Answered 503 if it sends its request within a second; beyond a few waiting, dropped at once (a flood must not eat file descriptors).
        if (this.waiting >= OVER_CAP_WAITING) return void socket.destroy();
        this.waiting++;
        socket.once('close', () => this.waiting--);
        this.over.add(socket);
        socket.setTimeout(1_000, () => socket.destroy());
        return;
      }
      this.open++;
      socket.once('close', () => this.open--);
    });
  }

  refuses(socket: Socket): boolean {
    return this.over.has(socket);
  }
}

/**
 * Requests Node's HTTP parser rejects before any handler runs (a bad byte in the target, an
 * oversized header) still get a JSON-RPC error body, like every other refusal.
 */
export function answerClientErrors(server: Server): void {
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (!socket.writable) return void socket.destroy();
    const tooLarge = err.code === 'HPE_HEADER_OVERFLOW';
    endWithRefusal(socket, tooLarge ? refusal(431, ErrorCodes.InvalidRequest, 'Invalid Request: the headers are too large') : refusal(400, ErrorCodes.InvalidRequest, 'Invalid Request: malformed HTTP'));
  });
}
