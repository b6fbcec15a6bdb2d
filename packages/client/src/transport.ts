import { request as httpRequest } from 'node:http';
import { RpcError } from '@scoped/protocol/errors';

/** Sends one JSON-RPC payload and returns the raw answer (null for a 204 / no answer). */
export interface Transport {
  send(payload: string): Promise<string | null>;
  close(): Promise<void>;
}

/** A transport that also carries the daemon's notifications and survives reconnects (WebSocket). */
export interface StreamingTransport extends Transport {
  onNotification(fn: (method: string, params: unknown) => void): () => void;
  /** Run `fn` each time the connection was re-established after a drop. */
  onReconnect(fn: () => void | Promise<void>): () => void;
  /** Run `fn` when reconnecting stops for good (the token was revoked or refused). */
  onGiveUp(fn: (err: Error) => void): () => void;
}

export const isStreaming = (t: Transport): t is StreamingTransport => 'onNotification' in t && 'onReconnect' in t;

/** Where a daemon listens: its unix socket, or an http(s)/ws URL with a bearer token. */
export type Endpoint = { socket: string } | { url: string; token?: string };

export class TransportError extends Error {
  override readonly name = 'TransportError';
  constructor(
    message: string,
    readonly status?: number,
    readonly body?: string,
  ) {
    super(message);
  }
}

/** JSON-RPC over HTTP POST /rpc, on a unix socket or TCP. */
export class HttpTransport implements Transport {
  constructor(private readonly endpoint: { socket: string } | { url: string; token?: string }) {}

  send(payload: string): Promise<string | null> {
    const ep = this.endpoint;
    const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) };
    let options;
    if ('socket' in ep) options = { socketPath: ep.socket, path: '/rpc', method: 'POST', headers };
    else {
      const u = new URL(ep.url);
      if (ep.token) headers.authorization = `Bearer ${ep.token}`;
      options = { host: u.hostname.replace(/^\[|\]$/g, ''), port: u.port || 80, path: u.pathname === '/' ? '/rpc' : u.pathname, method: 'POST', headers };
    }
    return new Promise((resolve, reject) => {
      const req = httpRequest(options, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          if (res.statusCode === 204) return resolve(null);
          if (body.startsWith('{') || body.startsWith('[')) return resolve(body);
          reject(new TransportError(`the daemon answered HTTP ${res.statusCode}`, res.statusCode, body));
        });
        res.on('error', reject);
      });
      req.on('error', (err: NodeJS.ErrnoException) => reject(connectionError(err, ep)));
      req.end(payload);
    });
  }

  async close(): Promise<void> {}
}

/** A connection failure phrased as what to do about it. */
export function connectionError(err: NodeJS.ErrnoException, ep: Endpoint): TransportError {
  const where = 'socket' in ep ? `the socket ${ep.socket}` : ep.url;
  if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') return new TransportError(`cannot reach scoped at ${where}: is it running? (start it with scoped, or point --socket/--url at it)`);
  if (err.code === 'ECONNRESET' || err.message === 'socket hang up') {
    return new TransportError(`scoped at ${where} closed the connection before answering (did it stop?): cpcmd scope:check and cpcmd audit:list tell what happened`);
  }
  if (err.code === 'EACCES') return new TransportError(`no permission to use ${where}: run as root or as a member of the socket's group`);
  return new TransportError(`cannot reach scoped at ${where}: ${err.message}`);
}

/** The JSON-RPC error in a refusal's body (401, 429, 503 answers carry one), as an RpcError. */
export function rpcErrorOf(body: string): RpcError | undefined {
  try {
    const e = (JSON.parse(body) as { error?: { code?: unknown; message?: unknown; data?: unknown } }).error;
    if (typeof e?.code === 'number' && typeof e.message === 'string') return new RpcError(e.code as never, e.message, e.data);
  } catch {
    // not JSON: the caller reports the HTTP status
  }
  return undefined;
}
