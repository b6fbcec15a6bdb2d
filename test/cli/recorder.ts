/**
 * A small JSON-RPC server that records every request cpcmd sends and answers with canned
 * results, each checked against the method's result schema from the protocol (and each
 * request against its params schema: an invalid one is refused with -32602, as scoped does).
 * It listens on a unix socket and on HTTP on 127.0.0.1, like scoped.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { methods } from '@scoped/protocol';

export interface Recorded {
  /** Which listener got it. */
  via: 'socket' | 'http';
  /** The Authorization header, if any. */
  authorization?: string;
  /** The JSON-RPC request as sent. */
  body: unknown;
}

const NOW = '2026-01-31T12:00:00.000Z';
const PLAN = [{ unit: 'net/hostname', kind: 'file', target: '/etc/hostname', summary: 'write /etc/hostname' }];
const APPLIED = { status: 'applied', plan: PLAN, revision: 4 };

type Params = Record<string, unknown>;

/** Canned answers, by method: enough for every command of cpcmd. */
const canned: Record<string, (p: Params) => unknown> = {
  'scope.list': () => ({
    scopes: [
      { name: 'mail.smart-host', summary: 'relay outgoing mail through a smart host' },
      { name: 'net.hostname', summary: "the server's hostname" },
      { name: 'recorder.only-from-daemon', summary: 'a scope only this server knows' },
    ],
  }),
  'scope.info': (p) => ({
    name: p.name,
    summary: "the server's hostname",
    help: 'Sets /etc/hostname.',
    usage: 'HOSTNAME',
    examples: ['cpcmd scope:set net.hostname mail.example.com'],
    vars: ['system_hostname'],
    units: ['net/hostname'],
    secretFields: [],
    valueSchema: { type: 'string' },
  }),
  'scope.get': (p) => ({ name: p.name, value: p.args ? { system_hostname: 'mail.example.com' } : 'mail.example.com', revision: 3, drift: [] }),
  'scope.set': (p) =>
    p.dryRun ? { status: 'planned', plan: PLAN, revision: 3, name: p.name, value: 'mail.example.com' } : { status: 'queued', job: 'job-0123456789ab' },
  'scope.reset': (p) => ({ status: p.dryRun ? 'planned' : 'applied', plan: PLAN, revision: 3, name: p.name, value: '' }),
  'scope.check': (p) =>
    p.name === 'mail.smart-host'
      ? { ok: false, drift: [{ scope: 'mail.smart-host', unit: 'postfix/main', target: 'relayhost', expected: '[relay.example]:587', actual: null }] }
      : { ok: true, drift: [] },
  'unit.converge': (p) => (p.dryRun ? { status: 'planned', plan: PLAN, revision: 3 } : { status: 'queued', job: 'job-0123456789ab' }),
  'job.get': (p) => ({
    id: p.id,
    action: 'scope.set',
    target: 'net.hostname',
    state: 'done',
    done: 1,
    total: 1,
    step: null,
    result: APPLIED,
    createdAt: NOW,
    updatedAt: NOW,
  }),
  'var.list': () => ({
    vars: [
      {
        name: 'system_hostname',
        description: 'the hostname',
        type: 'string',
        secret: false,
        default: '',
        value: 'mail.example.com',
        isDefault: false,
        units: ['net/hostname'],
      },
    ],
  }),
  'daemon.status': () => ({
    version: '0.1.0',
    pid: 4242,
    uptimeSeconds: 12,
    root: '/',
    store: '/var/lib/scoped/store.db',
    listeners: ['unix:/run/scoped/scoped.sock'],
    plugins: [{ name: '@scoped/plugin-net', version: '0.1.0', scopes: ['net.hostname'], status: 'loaded' }],
    revision: 3,
  }),
  'token.list': () => ({
    tokens: [{ id: 'tok-1', name: 'ci', role: 'reader', scopes: [], createdAt: NOW, expiresAt: null, lastUsedAt: null, revoked: false }],
  }),
  'audit.list': () => ({
    entries: [
      {
        seq: 1,
        time: NOW,
        actor: 'root',
        transport: 'unix',
        action: 'scope.set',
        target: 'net.hostname',
        new: 'mail.example.com',
        plan: ['write /etc/hostname'],
        outcome: 'applied',
        revision: 4,
      },
    ],
  }),
};

const byName = new Map<string, (typeof methods)[number]>(methods.map((m) => [m.name, m]));

export class Recorder {
  private constructor(
    readonly dir: string,
    readonly socket: string,
    readonly url: string,
    private readonly servers: Server[],
    /** Every request since the last clear(), in order. */
    readonly requests: Recorded[],
  ) {}

  /** A recorder with its own temp dir (its socket is DIR/scoped.sock) and an HTTP port. */
  static async start(): Promise<Recorder> {
    const dir = await mkdtemp(path.join(tmpdir(), 'cpcmd-rec-'));
    const socket = path.join(dir, 'scoped.sock');
    const requests: Recorded[] = [];
    const make = (via: Recorded['via']) => createServer((req, res) => void answer(req, res, via, requests));
    const unix = make('socket');
    const http = make('http');
    await new Promise<void>((r) => unix.listen(socket, r));
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    const port = (http.address() as AddressInfo).port;
    return new Recorder(dir, socket, `http://127.0.0.1:${port}/rpc`, [unix, http], requests);
  }

  /** Forget what was recorded. */
  clear(): void {
    this.requests.length = 0;
  }

  async stop(): Promise<void> {
    for (const s of this.servers) {
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    }
    await rm(this.dir, { recursive: true, force: true });
  }
}

async function answer(req: IncomingMessage, res: ServerResponse, via: Recorded['via'], requests: Recorded[]): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id: unknown; method: string; params: Params };
  requests.push({ via, ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}), body });
  const method = byName.get(body.method);
  let reply: unknown;
  if (!method || !canned[body.method]) reply = { jsonrpc: '2.0', id: body.id, error: { code: -32601, message: `no canned answer for ${body.method}` } };
  else {
    const params = method.params.safeParse(body.params);
    if (!params.success) reply = { jsonrpc: '2.0', id: body.id, error: { code: -32602, message: `invalid params for ${body.method}` } };
    // A canned answer that does not fit the result schema is a bug in this file: it throws.
    else reply = { jsonrpc: '2.0', id: body.id, result: method.result.parse(canned[body.method]!(body.params)) };
  }
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(reply));
}
