import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ErrorCodes } from '@scoped/protocol';
import { createRequire } from 'node:module';
import path from 'node:path';
import { promisify } from 'node:util';
import { brotliCompress, constants as zlib, gzip } from 'node:zlib';
import type { Gate } from '../auth.js';
import type { Principal } from '../tokens.js';
import { type GuiSessions, KEY_HEADER, SESSION_COOKIE, cookieValues } from '../gui.js';
import { type ConnectionCap, errorText } from './edge.js';

/** The Content Security Policy of every answer of the page's routes: no inline script or style, nothing from elsewhere. */
export const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** Headers on every answer of the page's routes. */
const PAGE_HEADERS: Record<string, string> = {
  'content-security-policy': CSP,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.json': 'application/json',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.woff': 'font/woff',
  '.txt': 'text/plain; charset=utf-8',
};
/** What is worth compressing. */
const TEXT = new Set(['.html', '.js', '.css', '.svg', '.json', '.txt']);
/** A hashed asset's name: no directories, no dot files. */
const ASSET_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$/;
/** The largest body POST /session reads: a code or a token is well under this. */
const MAX_LOGIN_BYTES = 4_096;

const gzipAsync = promisify(gzip);
const brotliAsync = promisify(brotliCompress);

/** The built page (packages/web's dist), or null when @scoped/web is not installed or not built. */
export function findWebDist(): string | null {
  try {
    const dist = path.join(path.dirname(createRequire(import.meta.url).resolve('@scoped/web/package.json')), 'dist');
    return existsSync(path.join(dist, 'index.html')) ? dist : null;
  } catch {
    return null;
  }
}

interface Served {
  type: string;
  body: Buffer;
  gzip?: Buffer;
  br?: Buffer;
}

export interface GuiOptions {
  /** The built page's directory, or null (the page's routes then answer 503 saying how to build it). */
  dist: string | null;
  gate: Gate;
  sessions: GuiSessions;
  cap: ConnectionCap;
  /** The origins the page is served from (the listener's own), known once it listens. */
  origins: () => ReadonlySet<string>;
  /** The scopes a principal may see (what scope.list answers it): the login and GET /session send them, so the first page needs no call. */
  visibleScopes: (p: Principal) => { name: string; summary: string }[];
}

/** What POST and GET /session answer: who the session speaks for, and the scopes it may see. */
function sessionAnswer(p: Principal, opts: GuiOptions) {
  return { name: p.name, role: p.role, scopes: p.scopes, scopeList: opts.visibleScopes(p) };
}

/** The encoding to send, from Accept-Encoding: brotli, else gzip, else none. */
function encodingFor(header: string | undefined): 'br' | 'gzip' | undefined {
  const accepted = new Set<string>();
  for (const part of (header ?? '').split(',')) {
    const [name, ...params] = part.trim().toLowerCase().split(';');
    const q = params.map((p) => /^\s*q=([\d.]+)\s*$/.exec(p)?.[1]).find((x) => x !== undefined);
    if (name && (q === undefined || Number(q) > 0)) accepted.add(name.trim());
  }
  if (accepted.has('br')) return 'br';
  if (accepted.has('gzip') || accepted.has('*')) return 'gzip';
  return undefined;
}

/** A JSON answer of the session routes (never cached). */
function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string | string[]> = {}): void {
  const text = JSON.stringify(body);
  res
    .writeHead(status, {
      ...PAGE_HEADERS,
      'cache-control': 'no-store',
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
      ...headers,
    })
    .end(text);
}

function sendEmpty(res: ServerResponse, status: number, headers: Record<string, string | string[]> = {}): void {
  res.writeHead(status, { ...PAGE_HEADERS, 'cache-control': 'no-store', ...headers }).end();
}

/**
 * The Scope GUI's routes on the TCP listener, answered before the bearer-token gate:
 * `GET /` (the page), `GET /assets/FILE` (its hashed files), and `/session`: POST trades a
 * one-time code or a pasted token for a session cookie, GET says whose session it is, DELETE
 * logs out. No GET changes anything. Returns false for every other path (the JSON-RPC routes).
 */
export function guiRoutes(opts: GuiOptions): (req: IncomingMessage, res: ServerResponse) => boolean {
  const cache = new Map<string, Promise<Served | null>>();

  const load = (file: string): Promise<Served | null> => {
    let hit = cache.get(file);
    if (!hit) {
      hit = (async () => {
        const body = await readFile(file).catch(() => null);
        if (!body) return null;
        const ext = path.extname(file);
        const served: Served = { type: TYPES[ext] ?? 'application/octet-stream', body };
        if (TEXT.has(ext)) {
          served.gzip = await gzipAsync(body, { level: 9 });
          served.br = await brotliAsync(body, { params: { [zlib.BROTLI_PARAM_QUALITY]: 11, [zlib.BROTLI_PARAM_SIZE_HINT]: body.length } });
        }
        return served;
      })();
      cache.set(file, hit);
      // A file missing now may be built later: only what was found is kept.
      void hit.then((s) => {
        if (!s) cache.delete(file);
      });
    }
    return hit;
  };

  const serveFile = (req: IncomingMessage, res: ServerResponse, file: string, cacheControl: string): void => {
    void load(file).then(
      (served) => {
        if (!served) return sendJson(res, 404, { error: `not found: ${req.url}` });
        const encoding = served.gzip ? encodingFor(req.headers['accept-encoding'] as string | undefined) : undefined;
        const body = encoding === 'br' ? served.br! : encoding === 'gzip' ? served.gzip! : served.body;
        const headers: Record<string, string | number> = {
          ...PAGE_HEADERS,
          'content-type': served.type,
          'content-length': body.length,
          'cache-control': cacheControl,
          vary: 'Accept-Encoding',
        };
        if (encoding) headers['content-encoding'] = encoding;
        res.writeHead(200, headers);
        res.end(req.method === 'HEAD' ? undefined : body);
      },
      () => sendJson(res, 500, { error: 'the page could not be read; see the daemon log' }),
    );
  };

  /** Whether a request that changes something comes from the page itself (or from no browser page at all, when allowed). */
  const fromPage = (req: IncomingMessage, required: boolean): boolean => {
    const origin = req.headers.origin;
    return origin === undefined ? !required : opts.origins().has(origin);
  };

  const cookiesOf = (req: IncomingMessage) => cookieValues(req.headers.cookie, SESSION_COOKIE);
  const keyOf = (req: IncomingMessage) => {
    const k = req.headers[KEY_HEADER];
    return typeof k === 'string' ? k : undefined;
  };
  const sessionPrincipal = (req: IncomingMessage) => opts.gate.sessionPrincipal(cookiesOf(req), keyOf(req));

  const login = (req: IncomingMessage, res: ServerResponse): void => {
    if (!fromPage(req, true))
      return void (sendJson(res, 403, { error: 'forbidden: log in from the Scope GUI itself (the Origin header is not this server)' }), req.resume());
    const type = String(req.headers['content-type'] ?? '')
      .split(';')[0]!
      .trim()
      .toLowerCase();
    if (type !== 'application/json') return void (sendJson(res, 415, { error: 'send JSON: Content-Type: application/json' }), req.resume());
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    req.on('data', (chunk: Buffer) => {
      if (refused) return;
      size += chunk.length;
      if (size > MAX_LOGIN_BYTES) {
        refused = true;
        return sendJson(res, 413, { error: `the body exceeds ${MAX_LOGIN_BYTES} bytes: send {"code": CODE} or {"token": TOKEN}` }, { connection: 'close' });
      }
      chunks.push(chunk);
    });
    req.on('error', () => res.destroy());
    req.on('end', () => {
      if (refused) return;
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        body = undefined;
      }
      const b = body as { code?: unknown; token?: unknown } | undefined;
      const keys = b && typeof b === 'object' && !Array.isArray(b) ? Object.keys(b) : [];
      const what =
        keys.length === 1 && typeof b!.code === 'string' && b!.code
          ? { code: b!.code }
          : keys.length === 1 && typeof b!.token === 'string' && b!.token
            ? { token: b!.token }
            : undefined;
      if (!what) return sendJson(res, 400, { error: 'send {"code": CODE} (from cpcmd gui) or {"token": TOKEN}' });
      const verdict = opts.gate.login(what, req.socket.remoteAddress ?? 'unknown');
      if (!verdict.ok) {
        const message = verdict.status === 429 ? verdict.message : 'code' in what ? verdict.message : 'the token is unknown, revoked or expired';
        return sendJson(res, verdict.status, { error: message }, verdict.retryAfter ? { 'retry-after': String(verdict.retryAfter) } : {});
      }
      const { cookie, key, id } = opts.sessions.open(verdict.principal);
      const headers: Record<string, string> = { 'set-cookie': `${SESSION_COOKIE}=${cookie}; HttpOnly; SameSite=Strict; Path=/` };
      if (opts.cap.admit(req.socket, { ...verdict.principal, session: id })) headers.connection = 'close';
      // The key goes to the page only: it keeps it in its own origin and sends it with the cookie.
      sendJson(res, 200, { ...sessionAnswer(verdict.principal, opts), key }, headers);
    });
  };

  return (req, res) => {
    const url = (req.url ?? '/').split('?')[0]!;
    const method = req.method ?? 'GET';
    const read = method === 'GET' || method === 'HEAD';
    if (url === '/session') {
      if (method === 'POST') return (login(req, res), true);
      if (method === 'GET') {
        const p = sessionPrincipal(req);
        if (!p) sendJson(res, 401, { error: 'not logged in: open the address cpcmd gui prints, or paste a token' });
        else {
          if (opts.cap.admit(req.socket, p)) res.setHeader('connection', 'close');
          sendJson(res, 200, sessionAnswer(p, opts));
        }
        return (req.resume(), true);
      }
      if (method === 'DELETE') {
        if (!fromPage(req, false)) sendJson(res, 403, { error: 'forbidden: log out from the Scope GUI itself (the Origin header is not this server)' });
        else {
          opts.sessions.logout(cookiesOf(req), keyOf(req));
          sendEmpty(res, 204, { 'set-cookie': `${SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0` });
        }
        return (req.resume(), true);
      }
      sendJson(
        res,
        405,
        { error: 'use POST /session to log in, GET /session to see who is logged in, DELETE /session to log out' },
        { allow: 'GET, POST, DELETE' },
      );
      return (req.resume(), true);
    }
    // Browsers ask for an icon by themselves: answered here, so it is not a failed login of the peer at the token gate.
    if (url === '/favicon.ico' && read) return (sendJson(res, 404, { error: 'no icon' }), req.resume(), true);
    const asset = url.startsWith('/assets/') ? url.slice('/assets/'.length) : undefined;
    if (url !== '/' && asset === undefined) return false;
    req.resume();
    if (!read) {
      // Like every other refusal of the daemon's HTTP listener, in JSON-RPC's shape.
      const text = errorText(ErrorCodes.InvalidRequest, 'Method not allowed: the Scope GUI is read with GET; JSON-RPC is served at POST /rpc');
      res
        .writeHead(405, {
          ...PAGE_HEADERS,
          'cache-control': 'no-store',
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(text),
          allow: 'GET, HEAD',
        })
        .end(text);
      return true;
    }
    if (!opts.dist) {
      sendJson(res, 503, { error: 'the Scope GUI is not built: run npm run build (or npm run build -w @scoped/web), then restart scoped' });
      return true;
    }
    if (asset === undefined) serveFile(req, res, path.join(opts.dist, 'index.html'), 'no-store');
    else if (!ASSET_NAME.test(asset)) sendJson(res, 404, { error: `not found: ${url}` });
    else serveFile(req, res, path.join(opts.dist, 'assets', asset), 'public, max-age=31536000, immutable');
    return true;
  };
}

/** The origins a page served on this listener has: the listen address and its loopback names, at the port. */
export function listenerOrigins(host: string, port: number): Set<string> {
  const named = host.includes(':') ? `[${host}]` : host;
  return new Set([named, '127.0.0.1', 'localhost', '[::1]'].map((h) => `http://${h}:${port}`));
}
