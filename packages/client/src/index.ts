export { Client } from './client.js';
export { HttpTransport, TransportError, connectionError } from './transport.js';
export type { Endpoint, Transport } from './transport.js';
export { WsTransport } from './ws.js';
