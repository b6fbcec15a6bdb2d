import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { ErrorCodes } from '@scoped/protocol';
import type { Gate } from '../auth.js';
import { type ConnectionCap, errorText, gateRefusal, refusal, writeRefusal } from './edge.js';
import { toRpcError } from '../engine.js';
import type { CallContext, RpcDispatcher } from '../rpc.js';
import { ADMIN_SOCKET } from '../tokens.js';

export interface HttpOptions {
  maxBodyBytes: number;
  /** Null on the unix socket, whose file permissions are its authentication (admin). */
  gate: Gate | null;
  transport: 'unix' | 'http';
  /** The TCP connection cap: refused connections are answered 503; an authenticated request admits its connection. */
  cap?: ConnectionCap;
  /** The Scope GUI's routes (/, /assets/*, /session), answered before the token gate; true when one took the request. */
  page?: (req: IncomingMessage, res: ServerResponse) => boolean;
  /** The origins of the page served on this listener: a browser request from any other is refused (403). */
  origins?: () => ReadonlySet<string>;
}

function send(res: ServerResponse, status: number, body?: string): void {
  if (body === undefined) {
    res.writeHead(status).end();
    return;
  }
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
}

/**
 * End a keep-alive connection whose token was revoked: at once when its last answer is out
 * (it is idle), else right after the answer it is on (a call let in before the revocation).
 */
function endAfter(socket: Socket, res: ServerResponse): void {
  if (res.writableFinished) socket.destroy();
  else if (!res.headersSent) res.setHeader('connection', 'close');
  else res.once('finish', () => socket.destroy());
}

/** `POST /rpc` over HTTP, for TCP (with a bearer token) and for the unix socket. */
export function httpHandler(dispatcher: RpcDispatcher, opts: HttpOptions) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    let principal = ADMIN_SOCKET;
    const over = opts.cap?.refusalFor(req.socket);
    if (over) return void (writeRefusal(res, over), req.resume());
    if (opts.page?.(req, res)) return;
    // A browser page elsewhere (another site, a rebound DNS name) may not call the daemon, even with a token.
    const origin = req.headers.origin;
    if (origin !== undefined && opts.origins && !opts.origins().has(origin))
      return void (writeRefusal(res, refusal(403, ErrorCodes.Forbidden, 'Forbidden: a request from another site (its Origin header) is refused')),
      req.resume());
    if (opts.gate) {
      const verdict = opts.gate.check(req.headers.authorization, req.socket.remoteAddress ?? 'unknown');
      if (!verdict.ok) return void (writeRefusal(res, gateRefusal(verdict)), req.resume());
      principal = verdict.principal;
      const refused = opts.cap?.admit(req.socket, principal);
      if (refused) return void (writeRefusal(res, refused), req.resume());
      opts.cap?.whenRevoked(req.socket, () => endAfter(req.socket, res));
    }
    const url = (req.url ?? '/').split('?')[0];
    if (url !== '/rpc')
      return void (send(res, 404, errorText(ErrorCodes.InvalidRequest, `Not found: JSON-RPC is served at POST /rpc${opts.page ? ', the Scope GUI at /' : ''}`)),
      req.resume());
    if (req.method !== 'POST') {
      res.setHeader('allow', 'POST');
      send(res, 405, errorText(ErrorCodes.InvalidRequest, 'Method not allowed: use POST /rpc, or a WebSocket on /rpc'));
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    req.on('data', (chunk: Buffer) => {
      if (refused) return;
      size += chunk.length;
      if (size > opts.maxBodyBytes) {
        refused = true;
        res.setHeader('connection', 'close');
        send(res, 413, errorText(ErrorCodes.TooLarge, `Request too large: the body exceeds the limit of ${opts.maxBodyBytes} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (refused) return;
      const ctx: CallContext = { principal, transport: opts.transport };
      const peer = req.socket.remoteAddress;
      if (peer) ctx.peer = peer;
      dispatcher.handleText(Buffer.concat(chunks).toString('utf8'), ctx).then(
        (answer) => {
          if (answer === null) return send(res, 204);
          // The answer's bytes stay taken until it has been written out (or the peer went away).
          res.once('finish', answer.release).once('close', answer.release);
          send(res, 200, answer.text);
        },
        (err: unknown) => {
          const e = toRpcError(err, dispatcher.log, { transport: opts.transport });
          send(res, 500, errorText(e.code, e.message));
        },
      );
    });
    req.on('error', () => res.destroy());
  };
}
