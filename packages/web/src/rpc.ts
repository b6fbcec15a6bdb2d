/**
 * JSON-RPC 2.0 over the page's one WebSocket to /rpc. The browser sends the session cookie with
 * the upgrade, so no token ever passes through this code. Calls answer promises; `event`
 * notifications go to the listeners registered with onEvent.
 */

/** An error the daemon answered, as it crossed the wire. */
export class RpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: unknown,
  ) {
    super(message);
  }
}

/** One `event` notification's params. */
export interface EventMessage {
  subscription: string;
  revision: number;
  topic: string;
  time: string;
  data: Record<string, unknown>;
}

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void };

export class Rpc {
  private readonly pending = new Map<number, Pending>();
  private readonly listeners = new Set<(e: EventMessage) => void>();
  private nextId = 1;

  private constructor(
    private readonly ws: WebSocket,
    /** Called once when the socket closes (a revoked token, a daemon restart, a logout). */
    onClose: () => void,
  ) {
    ws.addEventListener('message', (m) => this.receive(String(m.data)));
    ws.addEventListener('close', () => {
      for (const p of this.pending.values()) p.reject(new RpcError(-32000, 'the connection to scoped closed; reload the page'));
      this.pending.clear();
      onClose();
    });
  }

  /** Open the socket to this page's own host; resolves once it is open. */
  static open(onClose: () => void): Promise<Rpc> {
    const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    const ws = new WebSocket(`${scheme}${location.host}/rpc`);
    return new Promise((resolve, reject) => {
      ws.addEventListener('open', () => resolve(new Rpc(ws, onClose)), { once: true });
      ws.addEventListener('error', () => reject(new Error('could not reach scoped over WebSocket; is it still running?')), { once: true });
    });
  }

  call<T = unknown>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    const id = this.nextId++;
    this.ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
    return new Promise<T>((resolve, reject) => this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject }));
  }

  onEvent(listener: (e: EventMessage) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): void {
    this.ws.close();
  }

  private receive(text: string): void {
    let msg: { id?: number; result?: unknown; error?: { code: number; message: string; data?: unknown }; method?: string; params?: unknown };
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    if (msg.method === 'event' && msg.params !== undefined) {
      for (const l of this.listeners) l(msg.params as EventMessage);
      return;
    }
    if (typeof msg.id !== 'number') return;
    const p = this.pending.get(msg.id);
    if (p === undefined) return;
    this.pending.delete(msg.id);
    if (msg.error !== undefined) p.reject(new RpcError(msg.error.code, msg.error.message, msg.error.data));
    else p.resolve(msg.result);
  }
}
