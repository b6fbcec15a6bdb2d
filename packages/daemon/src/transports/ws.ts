import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { ErrorCodes } from '@scoped/protocol/errors';
import type { Gate } from '../auth.js';
import { type ConnectionCap, endWithRefusal, errorText, gateRefusal, refusal } from './edge.js';
import type { CallContext, Connection, RpcDispatcher } from '../rpc.js';

export interface WsOptions {
  maxPayloadBytes: number;
  gate: Gate;
  /** The TCP connection cap (shared with HTTP); refused upgrades are answered 503. */
  cap: ConnectionCap;
  /** How often to ping; a peer that has not answered the previous ping is dropped. */
  pingIntervalMs: number;
}

/** WebSocket `/rpc` on an HTTP server: one JSON-RPC message (or batch) per WebSocket message. */
export function attachWebSocket(server: Server, dispatcher: RpcDispatcher, opts: WsOptions): { close(): void } {
  const wss = new WebSocketServer({ noServer: true, maxPayload: opts.maxPayloadBytes });
  const alive = new WeakMap<WebSocket, boolean>();

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = (req.url ?? '/').split('?')[0];
    if (url !== '/rpc') return endWithRefusal(socket, refusal(404, ErrorCodes.InvalidRequest, 'Not found: JSON-RPC is served at POST /rpc and WebSocket /rpc'));
    const over = opts.cap.refusalFor(req.socket);
    if (over) return endWithRefusal(socket, over);
    const verdict = opts.gate.check(req.headers.authorization, req.socket.remoteAddress ?? 'unknown');
    if (!verdict.ok) return endWithRefusal(socket, gateRefusal(verdict));
    opts.cap.admit(req.socket);
    wss.handleUpgrade(req, socket, head, (ws) => {
      const closers: (() => void)[] = [];
      // A token revoked or expired while the connection is open ends it at its next message or event.
      const revoked = (): boolean => {
        if (opts.gate.stillValid(verdict.principal)) return false;
        if (ws.readyState === ws.OPEN) {
          ws.send(errorText(ErrorCodes.Unauthorized, 'Unauthorized: the token was revoked or has expired'));
          ws.close(4401, 'token revoked or expired');
        }
        return true;
      };
      const connection: Connection = {
        notify: (method, params) => {
          if (ws.readyState === ws.OPEN && !revoked()) ws.send(JSON.stringify({ jsonrpc: '2.0', method, params }));
        },
        onClose: (fn) => {
          if (ws.readyState === ws.CLOSED || ws.readyState === ws.CLOSING) fn();
          else closers.push(fn);
        },
        subscriptions: new Set(),
      };
      ws.once('close', () => {
        for (const fn of closers) fn();
      });
      const ctx: CallContext = { principal: verdict.principal, transport: 'ws', connection };
      if (req.socket.remoteAddress) ctx.peer = req.socket.remoteAddress;
      alive.set(ws, true);
      ws.on('pong', () => alive.set(ws, true));
      ws.on('error', () => ws.terminate());
      ws.on('message', (data, isBinary) => {
        if (revoked()) return;
        const text = isBinary ? Buffer.from(data as Buffer).toString('utf8') : data.toString();
        dispatcher.handleText(text, ctx).then(
          (reply) => {
            if (reply !== null && ws.readyState === ws.OPEN) ws.send(reply);
          },
          () => ws.close(1011, 'internal error'),
        );
      });
    });
  });

  const timer = setInterval(() => {
    for (const ws of wss.clients) {
      if (!alive.get(ws)) {
        ws.terminate();
        continue;
      }
      alive.set(ws, false);
      ws.ping();
    }
  }, opts.pingIntervalMs);
  timer.unref();

  return {
    close() {
      clearInterval(timer);
      for (const ws of wss.clients) ws.close(1001, 'daemon shutting down');
      // A peer that does not answer the closing handshake (hung, suspended) must not hold up the shutdown.
      setTimeout(() => {
        for (const ws of wss.clients) ws.terminate();
      }, 1_000).unref();
      wss.close();
    },
  };
}
