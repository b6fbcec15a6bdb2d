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
  private readonly waiting = new Map<string, (text: string) => void>();
  private readonly failures = new Set<(err: Error) => void>();
  private readonly notificationHandlers = new Set<(method: string, params: unknown) => void>();
  private readonly reconnectHandlers = new Set<() => void | Promise<void>>();
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
      ws.once('open', () => {
        this.socket = ws;
        this.opening = undefined;
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
          else reject(new TransportError(res.statusCode === 401 ? 'Unauthorized: give a valid token (SCOPED_TOKEN)' : `WebSocket refused with HTTP ${res.statusCode}`, res.statusCode, body));
          ws.terminate();
        });
      });
      ws.once('error', (err) => {
        this.opening = undefined;
        reject(new TransportError(`cannot reach scoped at ${this.url}: ${err.message}`));
      });
      ws.on('message', (data) => this.dispatch(data.toString()));
      ws.once('close', (code, reason) => {
        const wasOpen = this.socket === ws;
        if (wasOpen) this.socket = undefined;
        const err = new TransportError(`the WebSocket closed (${code}${reason.length ? ` ${reason.toString()}` : ''})`);
        for (const fail of this.failures) fail(err);
        this.failures.clear();
        this.waiting.clear();
        if (wasOpen) this.scheduleReconnect(this.opts.minDelayMs);
      });
    });
    return this.opening;
  }

  /** Re-open after an unexpected close when someone waits for it, doubling the pause on each failure. */
  private scheduleReconnect(delay: number): void {
    if (this.closed || !this.opts.reconnect || this.reconnectHandlers.size === 0 || this.retry) return;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.open().then(
        async () => {
          for (const fn of this.reconnectHandlers) await fn();
        },
        () => this.scheduleReconnect(Math.min(delay * 2, this.opts.maxDelayMs)),
      );
    }, delay);
  }

  private dispatch(text: string): void {
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
    const id = Array.isArray(parsed) ? parsed.map((p) => p.id).join(',') : parsed.id;
    const key = String(id);
    const resolve = this.waiting.get(key) ?? (this.waiting.size === 1 ? [...this.waiting.values()][0] : undefined);
    if (!resolve) return;
    this.waiting.delete(this.waiting.has(key) ? key : [...this.waiting.keys()][0]!);
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
    return new Promise((resolve, reject) => {
      this.failures.add(reject);
      this.waiting.set(ids.join(','), (text) => {
        this.failures.delete(reject);
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
