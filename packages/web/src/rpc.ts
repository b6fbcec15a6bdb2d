/**
 * JSON-RPC 2.0 over the page's one WebSocket to /rpc. The browser sends the session cookie with
 * the upgrade, so no token ever passes through this code. Calls answer promises; `event`
 * notifications go to the listeners registered with onEvent.
 */

import { KEY_PROTOCOL, sessionKey } from './session.js';

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
  /** Calls made while the socket still opens, sent the moment it is open. */
  private readonly queued: string[] = [];
  private nextId = 1;
  /** Whether the socket has closed (or never opened). */
  closed = false;

  private constructor(
    private readonly ws: WebSocket,
    /** Called once when the socket closes (a revoked token, a daemon restart, a logout), or fails to open. */
    onClose: () => void,
  ) {
    ws.addEventListener('open', () => {
      for (const text of this.queued.splice(0)) ws.send(text);
    });
    ws.addEventListener('message', (m) => this.receive(String(m.data)));
    ws.addEventListener('close', () => {
      this.closed = true;
      this.queued.length = 0;
      for (const p of this.pending.values()) p.reject(new RpcError(-32000, 'the connection to scoped closed; reload the page'));
      this.pending.clear();
      onClose();
    });
  }

  /**
   * Start opening the socket to this page's own host. Usable at once: calls made before it is
   * open wait for it, so the page need not wait for the socket before it shows what it has.
   */
  static connect(onClose: () => void): Rpc {
    const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    // The session's key rides as the subprotocol: a browser's WebSocket can send no other header.
    const key = sessionKey();
    return new Rpc(new WebSocket(`${scheme}${location.host}/rpc`, key === null ? [] : [`${KEY_PROTOCOL}${key}`]), onClose);
  }

  call<T = unknown>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    if (this.closed) return Promise.reject(new RpcError(-32000, 'the connection to scoped closed; reload the page'));
    const id = this.nextId++;
    const text = JSON.stringify({ jsonrpc: '2.0', id, method, params });
    if (this.ws.readyState === WebSocket.CONNECTING) this.queued.push(text);
    else this.ws.send(text);
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
