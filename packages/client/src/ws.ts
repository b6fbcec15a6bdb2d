import WebSocket from 'ws';
import { TransportError, rpcErrorOf, type StreamingTransport } from './transport.js';

export interface WsTransportOptions {
  /** Reconnect after an unexpected close while subscriptions are live (default true). */
  reconnect?: boolean;
  /** First and longest pause between reconnect attempts (default 100 ms and 5 s, doubling). */
  minDelayMs?: number;
  maxDelayMs?: number;
}

/**
 * JSON-RPC over one WebSocket. Answers are matched to requests by id, so many calls can be
 * in flight at once; notifications from the daemon (events) go to `onNotification`. When the
 * connection drops while someone listens for reconnects (a subscription), it is re-opened
 * with backoff and the listeners run, so they can resume where they were.
 */
export class WsTransport implements StreamingTransport {
  private socket: WebSocket | undefined;
  private opening: Promise<WebSocket> | undefined;
  private closed = false;
  private retry: NodeJS.Timeout | undefined;
  /** Calls in flight, per socket: a socket that closes fails only its own. */
  private readonly pending = new WeakMap<WebSocket, { waiting: Map<string, (text: string) => void>; failures: Set<(err: Error) => void> }>();
  private readonly notificationHandlers = new Set<(method: string, params: unknown) => void>();
  private readonly reconnectHandlers = new Set<() => void | Promise<void>>();
  private readonly giveUpHandlers = new Set<(err: Error) => void>();
  private readonly opts: Required<WsTransportOptions>;

  constructor(
    private readonly url: string,
    private readonly token?: string,
    opts: WsTransportOptions = {},
  ) {
    this.opts = { reconnect: true, minDelayMs: 100, maxDelayMs: 5_000, ...opts };
  }

  private open(): Promise<WebSocket> {
    if (this.closed) return Promise.reject(new TransportError('the client was closed'));
    if (this.socket?.readyState === WebSocket.OPEN) return Promise.resolve(this.socket);
    this.opening ??= new Promise((resolve, reject) => {
      const headers: Record<string, string> = this.token ? { authorization: `Bearer ${this.token}` } : {};
      const ws = new WebSocket(this.url, { headers });
      const calls = { waiting: new Map<string, (text: string) => void>(), failures: new Set<(err: Error) => void>() };
      this.pending.set(ws, calls);
      ws.once('open', () => {
        this.opening = undefined;
        if (this.closed) {
          ws.terminate();
          return reject(new TransportError('the client was closed'));
        }
        this.socket = ws;
        resolve(ws);
      });
      ws.once('unexpected-response', (_req, res) => {
        this.opening = undefined;
        // The daemon explains a refused upgrade (401, 429, 503) with a JSON-RPC error in the body.
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.once('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          const error = rpcErrorOf(body);
          if (error) reject(error);
          else
            reject(
              new TransportError(
                res.statusCode === 401 ? 'Unauthorized: give a valid token (SCOPED_TOKEN)' : `WebSocket refused with HTTP ${res.statusCode}`,
                res.statusCode,
                body,
              ),
            );
          ws.terminate();
        });
      });
      ws.once('error', (err) => {
        this.opening = undefined;
        reject(new TransportError(`cannot reach scoped at ${this.url}: ${err.message}`));
      });
      ws.on('message', (data) => this.dispatch(ws, data.toString()));
      ws.once('close', (code, reason) => {
        const wasOpen = this.socket === ws;
        if (wasOpen) this.socket = undefined;
        const err = new TransportError(`the WebSocket closed (${code}${reason.length ? ` ${reason.toString()}` : ''})`);
        for (const fail of calls.failures) fail(err);
        calls.failures.clear();
        calls.waiting.clear();
        if (!wasOpen) return;
        // 4401: the daemon ended the connection because the token was revoked or expired; retrying cannot help.
        if (code === 4401) this.giveUp(new TransportError('Unauthorized: the token was revoked or has expired', 401));
        else this.scheduleReconnect(this.opts.minDelayMs);
      });
    });
    return this.opening;
  }

  /** Re-open after an unexpected close when someone waits for it, doubling the pause on each failure. */
  private scheduleReconnect(delay: number): void {
    if (this.closed || !this.opts.reconnect || this.reconnectHandlers.size === 0 || this.retry) return;
    const next = Math.min(delay * 2, this.opts.maxDelayMs);
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.open()
        .then(async () => {
          for (const fn of this.reconnectHandlers) await fn();
        })
        .catch((err: unknown) => {
          const e = err as { status?: number; code?: number };
          // Refused for good (bad token, forbidden): tell the listeners instead of retrying forever.
          if (e.status === 401 || e.status === 403 || e.code === -32001 || e.code === -32003) this.giveUp(err as Error);
          else this.scheduleReconnect(next);
        });
    }, delay);
  }

  private giveUp(err: Error): void {
    for (const fn of this.giveUpHandlers) fn(err);
  }

  private dispatch(ws: WebSocket, text: string): void {
    let parsed: { id?: unknown; method?: unknown; params?: unknown } | { id?: unknown }[];
    try {
      parsed = JSON.parse(text) as typeof parsed;
    } catch {
      return;
    }
    if (!Array.isArray(parsed) && typeof parsed.method === 'string' && parsed.id === undefined) {
      for (const fn of this.notificationHandlers) fn(parsed.method, parsed.params);
      return;
    }
    const waiting = this.pending.get(ws)?.waiting;
    if (!waiting) return;
    const id = Array.isArray(parsed) ? parsed.map((p) => p.id).join(',') : parsed.id;
    const key = String(id);
    const resolve = waiting.get(key) ?? (waiting.size === 1 ? [...waiting.values()][0] : undefined);
    if (!resolve) return;
    waiting.delete(waiting.has(key) ? key : [...waiting.keys()][0]!);
    resolve(text);
  }

  async send(payload: string): Promise<string | null> {
    const ws = await this.open();
    const parsed = JSON.parse(payload) as { id?: unknown } | { id?: unknown }[];
    const ids = Array.isArray(parsed) ? parsed.filter((p) => p.id !== undefined).map((p) => p.id) : parsed.id === undefined ? [] : [parsed.id];
    if (ids.length === 0) {
      ws.send(payload);
      return null;
    }
    const calls = this.pending.get(ws)!;
    return new Promise((resolve, reject) => {
      calls.failures.add(reject);
      calls.waiting.set(ids.join(','), (text) => {
        calls.failures.delete(reject);
        resolve(text);
      });
      ws.send(payload);
    });
  }

  onNotification(fn: (method: string, params: unknown) => void): () => void {
    this.notificationHandlers.add(fn);
    return () => this.notificationHandlers.delete(fn);
  }

  onReconnect(fn: () => void | Promise<void>): () => void {
    this.reconnectHandlers.add(fn);
    return () => this.reconnectHandlers.delete(fn);
  }

  /** Run `fn` when reconnecting stops for good (the token was revoked, expired or refused). */
  onGiveUp(fn: (err: Error) => void): () => void {
    this.giveUpHandlers.add(fn);
    return () => this.giveUpHandlers.delete(fn);
  }

  /** Drop the connection as if the network failed (reconnect follows when subscriptions are live). */
  drop(): void {
    this.socket?.terminate();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retry);
    const ws = this.socket;
    if (!ws) return;
    await new Promise<void>((resolve) => {
      ws.once('close', () => resolve());
      ws.close(1000);
    });
  }
}
