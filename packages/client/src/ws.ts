import WebSocket from 'ws';
import { TransportError, type Transport } from './transport.js';

/**
 * JSON-RPC over one WebSocket. Answers are matched to requests by id, so many calls can be
 * in flight at once.
 */
export class WsTransport implements Transport {
  private socket: WebSocket | undefined;
  private opening: Promise<WebSocket> | undefined;
  private readonly waiting = new Map<string, (text: string) => void>();
  private readonly failures = new Set<(err: Error) => void>();

  constructor(
    private readonly url: string,
    private readonly token?: string,
  ) {}

  private open(): Promise<WebSocket> {
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
        reject(new TransportError(res.statusCode === 401 ? 'Unauthorized: give a valid token (SCOPED_TOKEN)' : `WebSocket refused with HTTP ${res.statusCode}`, res.statusCode));
        ws.terminate();
      });
      ws.once('error', (err) => {
        this.opening = undefined;
        reject(new TransportError(`cannot reach scoped at ${this.url}: ${err.message}`));
      });
      ws.on('message', (data) => this.dispatch(data.toString()));
      ws.once('close', (code, reason) => {
        this.socket = undefined;
        const err = new TransportError(`the WebSocket closed (${code}${reason.length ? ` ${reason.toString()}` : ''})`);
        for (const fail of this.failures) fail(err);
        this.failures.clear();
        this.waiting.clear();
      });
    });
    return this.opening;
  }

  private dispatch(text: string): void {
    let id: unknown;
    try {
      const parsed = JSON.parse(text) as { id?: unknown } | { id?: unknown }[];
      id = Array.isArray(parsed) ? parsed.map((p) => p.id).join(',') : parsed.id;
    } catch {
      return;
    }
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

  async close(): Promise<void> {
    const ws = this.socket;
    if (!ws) return;
    await new Promise<void>((resolve) => {
      ws.once('close', () => resolve());
      ws.close(1000);
    });
  }
}
