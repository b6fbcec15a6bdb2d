import { RpcError } from '@scoped/protocol/errors';
import type { MethodByName, MethodName, ParamsOf, ResultOf } from '@scoped/protocol';
import { HttpTransport, TransportError, type Endpoint, type Transport } from './transport.js';

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
    if ('url' in endpoint && !/^https?:/.test(endpoint.url)) throw new TransportError(`unsupported URL ${endpoint.url}: use http://HOST:PORT/rpc or ws://HOST:PORT/rpc`);
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

  close(): Promise<void> {
    return this.transport.close();
  }
}
export type { Endpoint } from './transport.js';
