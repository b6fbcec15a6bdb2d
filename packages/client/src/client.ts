import { RpcError } from '@scoped/protocol/errors';
import type { EventMessage, MethodByName, MethodName, ParamsOf, ResultOf } from '@scoped/protocol';
import { HttpTransport, TransportError, isStreaming, type Endpoint, type Transport } from './transport.js';

/** A live subscription; it follows the client across reconnects. */
export interface Subscription {
  /** The daemon's id of the subscription (it changes when a reconnect re-subscribes). */
  readonly id: string;
  /** The revision of the last event delivered (or the bus's revision when subscribed). */
  readonly revision: number;
  /** Stop receiving events. */
  close(): Promise<void>;
}

export interface SubscribeOptions {
  /** Start after this revision: every kept event after it is delivered first, then live ones. */
  since?: number;
  /** Called when the daemon no longer keeps some events after `since` (they were rotated out). */
  onGap?: (since: number) => void;
  /** Called after each reconnect, once the subscription is live again. */
  onResume?: (revision: number) => void;
  /** Called when the subscription ends for good: the daemon refused the token on reconnect (revoked, expired). */
  onError?: (err: Error) => void;
}

interface Response {
  jsonrpc: '2.0';
  id: unknown;
  result?: unknown;
  error?: { code: number; message: string; data?: unknown };
}

/**
 * A typed scoped client. Calls are typed by the method's name from the protocol package,
 * without loading its schemas, so a command line that uses it starts fast.
 */
export class Client {
  private nextId = 1;

  constructor(private readonly transport: Transport) {}

  /** Connect to a unix socket, or to an http:// or ws:// URL with a token. */
  static async connect(endpoint: Endpoint): Promise<Client> {
    if ('url' in endpoint && /^wss?:/.test(endpoint.url)) {
      const { WsTransport } = await import('./ws.js');
      return new Client(new WsTransport(endpoint.url, endpoint.token));
    }
    if ('url' in endpoint && !/^https?:/.test(endpoint.url))
      throw new TransportError(`unsupported URL ${endpoint.url}: use http://HOST:PORT/rpc or ws://HOST:PORT/rpc`);
    return new Client(new HttpTransport(endpoint));
  }

  /** Call a method; rejects with RpcError carrying the daemon's code, message and data. */
  async call<N extends MethodName>(method: N, params: ParamsOf<MethodByName[N]>): Promise<ResultOf<MethodByName[N]>> {
    const id = this.nextId++;
    const text = await this.transport.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
    if (text === null) throw new TransportError('the daemon sent no answer');
    const response = JSON.parse(text) as Response;
    if (response.error) throw new RpcError(response.error.code as never, response.error.message, response.error.data);
    return response.result as ResultOf<MethodByName[N]>;
  }

  /** Send a notification: no answer comes back. */
  async notify<N extends MethodName>(method: N, params: ParamsOf<MethodByName[N]>): Promise<void> {
    await this.transport.send(JSON.stringify({ jsonrpc: '2.0', method, params }));
  }

  /**
   * Receive events whose topic matches one of the globs (`scope.changed`, `job.*`, `*`), over
   * a WebSocket. When the connection drops, the client reconnects and re-subscribes from the
   * last revision it delivered, so `onEvent` sees every event once, in order, with no gap.
   */
  async subscribe(topics: string[], onEvent: (event: EventMessage) => void, opts: SubscribeOptions = {}): Promise<Subscription> {
    const transport = this.transport;
    if (!isStreaming(transport)) throw new TransportError('events need a WebSocket: connect with a ws://HOST:PORT/rpc URL');
    let id = '';
    let last = opts.since ?? -1;
    let active = true;
    // Replayed events arrive before the answer that names the subscription: hold them until then.
    let pending: EventMessage[] | undefined;
    const deliver = (e: EventMessage) => {
      if (e.subscription !== id || e.revision <= last) return;
      last = e.revision;
      onEvent(e);
    };
    const start = async (since?: number) => {
      pending = [];
      try {
        const r = await this.call('events.subscribe', since === undefined || since < 0 ? { topics } : { topics, since });
        id = r.subscription;
        if (r.gap && since !== undefined) opts.onGap?.(since);
        // The daemon's revisions went back (its store was replaced): follow them from here.
        if (r.revision < last) last = r.revision;
        for (const e of pending) deliver(e);
        if (last < 0) last = r.revision;
      } finally {
        pending = undefined;
      }
    };
    const stopEvents = transport.onNotification((method, params) => {
      if (method !== 'event' || !active) return;
      const e = params as EventMessage;
      if (pending) pending.push(e);
      else deliver(e);
    });
    const stopResume = transport.onReconnect(async () => {
      if (!active) return;
      await start(last);
      opts.onResume?.(last);
    });
    const stopGiveUp = transport.onGiveUp((err) => {
      if (!active) return;
      active = false;
      stopAll();
      opts.onError?.(err);
    });
    const stopAll = () => {
      stopEvents();
      stopResume();
      stopGiveUp();
    };
    try {
      await start(opts.since);
    } catch (err) {
      stopAll();
      throw err;
    }
    return {
      get id() {
        return id;
      },
      get revision() {
        return last;
      },
      close: async () => {
        active = false;
        stopAll();
        await this.call('events.unsubscribe', { subscription: id }).catch(() => undefined);
      },
    };
  }

  close(): Promise<void> {
    return this.transport.close();
  }
}
export type { Endpoint } from './transport.js';
