import { connect } from 'node:net';
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

/**
 * JSON-RPC over HTTP POST /rpc, on a unix socket or TCP. On the socket, the one request is
 * written and its answer read over a plain connection (see unixExchange), so a command line
 * never loads node's HTTP client, a good part of its start-up; TCP goes through node:http.
 */
export class HttpTransport implements Transport {
  constructor(private readonly endpoint: { socket: string } | { url: string; token?: string }) {}

  async send(payload: string): Promise<string | null> {
    const ep = this.endpoint;
    const { status, body } = 'socket' in ep ? await unixExchange(ep, payload) : await tcpExchange(ep, payload);
    if (status === 204) return null;
    if (body.startsWith('{') || body.startsWith('[')) return body;
    throw new TransportError(`the daemon answered HTTP ${status}`, status, body);
  }

  async close(): Promise<void> {}
}

interface HttpAnswer {
  status: number;
  body: string;
}

/** POST /rpc over TCP with node's HTTP client. */
async function tcpExchange(ep: { url: string; token?: string }, payload: string): Promise<HttpAnswer> {
  const { request } = await import('node:http');
  const u = new URL(ep.url);
  const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) };
  if (ep.token) headers.authorization = `Bearer ${ep.token}`;
  const options = { host: u.hostname.replace(/^\[|\]$/g, ''), port: u.port || 80, path: u.pathname === '/' ? '/rpc' : u.pathname, method: 'POST', headers };
  return new Promise((resolve, reject) => {
    const req = request(options, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', (err: NodeJS.ErrnoException) => reject(connectionError(err, ep)));
    req.end(payload);
  });
}

/**
 * POST /rpc over the unix socket: one HTTP/1.1 request with `connection: close`, so the daemon
 * closes the connection after its answer, which is read to the end and then parsed (status
 * line, headers, a body of content-length bytes or chunked). An answer cut short is reported
 * as the connection closing before the daemon answered.
 */
function unixExchange(ep: { socket: string }, payload: string): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const head = `POST /rpc HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(payload)}\r\nconnection: close\r\n\r\n`;
    const socket = connect(ep.socket);
    const chunks: Buffer[] = [];
    let settled = false;
    socket.on('connect', () => socket.write(head + payload));
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      // Complete by its length: done, whether or not the daemon has closed yet.
      const answer = parseAnswer(Buffer.concat(chunks), false);
      if (!answer) return;
      settled = true;
      socket.destroy();
      resolve(answer);
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (settled) return;
      settled = true;
      reject(connectionError(err, ep));
    });
    socket.on('close', () => {
      if (settled) return;
      settled = true;
      const answer = parseAnswer(Buffer.concat(chunks), true);
      if (answer) resolve(answer);
      else reject(connectionError(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }), ep));
    });
  });
}

/**
 * A whole HTTP/1.1 answer: its status and body; undefined when it is cut short or is not HTTP.
 * `ended`: the connection has closed, so an answer without a length ends here.
 */
export function parseAnswer(raw: Buffer, ended = true): HttpAnswer | undefined {
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) return undefined;
  const [statusLine = '', ...lines] = raw.subarray(0, end).toString('latin1').split('\r\n');
  const status = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(statusLine);
  if (!status) return undefined;
  const headers = new Map<string, string>();
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  let body: Buffer | undefined = raw.subarray(end + 4);
  if (/\bchunked\b/i.test(headers.get('transfer-encoding') ?? '')) body = dechunk(body);
  else if (headers.has('content-length')) {
    const length = Number(headers.get('content-length'));
    if (!Number.isSafeInteger(length) || length < 0 || body.length < length) return undefined;
    body = body.subarray(0, length);
  } else if (!ended) return undefined;
  return body === undefined ? undefined : { status: Number(status[1]), body: body.toString('utf8') };
}

/** A chunked body's bytes; undefined when it does not end with its last (empty) chunk. */
function dechunk(raw: Buffer): Buffer | undefined {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = raw.indexOf('\r\n', at);
    if (eol < 0) return undefined;
    const hex = raw.subarray(at, eol).toString('latin1').split(';')[0]!.trim();
    if (!/^[0-9a-f]{1,8}$/i.test(hex)) return undefined;
    const size = parseInt(hex, 16);
    if (size === 0) return Buffer.concat(parts);
    if (raw.length < eol + 2 + size + 2) return undefined;
    parts.push(raw.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
}

/** A connection failure phrased as what to do about it. */
export function connectionError(err: NodeJS.ErrnoException, ep: Endpoint): TransportError {
  const where = 'socket' in ep ? `the socket ${ep.socket}` : ep.url;
  if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED')
    return new TransportError(`cannot reach scoped at ${where}: is it running? (start it with scoped, or point --socket/--url at it)`);
  if (err.code === 'ECONNRESET' || err.message === 'socket hang up') {
    return new TransportError(
      `scoped at ${where} closed the connection before answering (did it stop?): cpcmd scope:check and cpcmd audit:list tell what happened`,
    );
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
