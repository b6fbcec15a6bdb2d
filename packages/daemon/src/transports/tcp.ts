import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { ErrorCodes } from '@scoped/protocol/errors';

/**
 * A cap on open TCP connections that answers the ones over it (HTTP 503 with a JSON-RPC
 * error and Retry-After) instead of dropping them unseen, so a client can tell "busy" from
 * "down". Connections over the cap do not count, and are closed after their answer.
 */
const OVER_CAP_WAITING = 32;

export class ConnectionCap {
  private open = 0;
  private waiting = 0;
  private readonly over = new WeakSet<Socket>();

  constructor(
    server: Server,
    readonly max: number,
  ) {
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

  /** The answer for a refused connection: HTTP status, headers and body. */
  get answer(): { status: 503; headers: Record<string, string>; body: string } {
    const message = `Too many connections: scoped serves at most ${this.max} at once (maxConnections); try again shortly`;
    return {
      status: 503,
      headers: { 'retry-after': '1', connection: 'close', 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: ErrorCodes.Busy, message } }),
    };
  }
}

/** A raw HTTP response for a socket that is not (or no longer) served by the HTTP server. */
export function rawResponse(status: string, headers: Record<string, string>, body = ''): string {
  const lines = Object.entries({ ...headers, 'content-length': String(Buffer.byteLength(body)) }).map(([k, v]) => `${k}: ${v}`);
  return `HTTP/1.1 ${status}\r\n${lines.join('\r\n')}\r\n\r\n${body}`;
}

/**
 * Requests Node's HTTP parser rejects before any handler runs (a bad byte in the target, an
 * oversized header) still get a JSON-RPC error body, like every other refusal.
 */
export function answerClientErrors(server: Server): void {
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (!socket.writable) return void socket.destroy();
    const tooLarge = err.code === 'HPE_HEADER_OVERFLOW';
    const body = JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: ErrorCodes.InvalidRequest, message: tooLarge ? 'Invalid Request: the headers are too large' : 'Invalid Request: malformed HTTP' } });
    socket.end(rawResponse(tooLarge ? '431 Request Header Fields Too Large' : '400 Bad Request', { connection: 'close', 'content-type': 'application/json' }, body));
  });
}
