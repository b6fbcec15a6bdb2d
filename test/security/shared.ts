/**
 * What the security tests share: raw calls that keep the answer's text, the tokens most tests
 * start from, and a watcher of file modes.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { type Postfix, type Scoped, httpPost, run, scoped, waitFor } from '../helpers/scoped.js';

export const REDACTED = '[redacted]';
export const TOKEN_RE = /^scoped_[0-9a-f]{8}_[\w-]{16,}$/;

/** The parts of a token made by token:create: scoped_ID_SECRET. */
export const idOf = (token: string) => token.slice('scoped_'.length, 'scoped_'.length + 8);
export const secretOf = (token: string) => token.slice('scoped_'.length + 9);
export const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

export const body = (method: string, params: Record<string, unknown> = {}, id: number | string = 1) => JSON.stringify({ jsonrpc: '2.0', id, method, params });

export interface Answer {
  status: number;
  text: string;
  json: any;
}

/** One JSON-RPC call over TCP HTTP, optionally from a loopback address of its own; the raw text kept. */
export async function http(d: Scoped, token: string | undefined, method: string, params: Record<string, unknown> = {}, peer?: string): Promise<Answer> {
  const r = await httpPost({ port: d.port! }, body(method, params), { ...(token !== undefined ? { token } : {}), ...(peer ? { localAddress: peer } : {}) });
  return { status: r.status, text: r.text, json: JSON.parse(r.text) };
}

/** One JSON-RPC call over the unix socket, without a token; the raw text kept. */
export async function unix(d: Scoped, method: string, params: Record<string, unknown> = {}): Promise<Answer> {
  const r = await httpPost({ socket: d.socket }, body(method, params));
  return { status: r.status, text: r.text, json: JSON.parse(r.text) };
}

export const relayhostOf = async (box: Postfix) => (await box.postconf(['-h', 'relayhost'])).trim();

/** scoped on a Postfix config (Postfix not started), its hostname roles.example.test. */
export function rolesSandbox(): Promise<Scoped> {
  return scoped({ postfix: true, files: { 'etc/hostname': 'roles.example.test\n' } });
}

/**
 * The three tokens most tests start from, made by the admin over the unix socket: monitoring
 * (reader), ci (operator of net.hostname, expiring in 30 days) and root-ci (admin).
 */
export async function makeTokens(d: Scoped): Promise<{ reader: string; operator: string; admin: string }> {
  const make = async (params: Record<string, unknown>) => {
    const a = await unix(d, 'token.create', params);
    if (!a.json.result) throw new Error(`token.create ${JSON.stringify(params)}: ${a.text}`);
    return a.json.result.token as string;
  };
  return {
    reader: await make({ role: 'reader', name: 'monitoring' }),
    operator: await make({ role: 'operator', name: 'ci', scopes: ['net.hostname'], expires: '30d' }),
    admin: await make({ role: 'admin', name: 'root-ci' }),
  };
}

/**
 * A separate process that polls the modes of every file in some directories in a tight loop
 * (readdir + lstat, tens of thousands of times a second) until told to stop, recording each
 * mode it ever saw per file. Temp files (.NAME.HEX.tmp) are grouped under one name.
 */
export const WATCHER = `
const fs = require('fs'), path = require('path');
const [dirs, stopFile, readyFile] = [JSON.parse(process.argv[1]), process.argv[2], process.argv[3]];
const seen = {};
let loops = 0;
fs.writeFileSync(readyFile, '');
while (!fs.existsSync(stopFile)) {
  loops++;
  for (const dir of dirs) {
    let names;
    try { names = fs.readdirSync(dir); } catch { continue; }
    for (const n of names) {
      let st;
      try { st = fs.lstatSync(path.join(dir, n)); } catch { continue; }
      if (!st.isFile()) continue;
      const key = path.join(dir, n.replace(/\\.[0-9a-f]{8,}\\.tmp$/, '.HEX.tmp'));
      const mode = (st.mode & 0o7777).toString(8);
      (seen[key] ??= {})[mode] = (seen[key][mode] ?? 0) + 1;
    }
  }
}
process.stdout.write(JSON.stringify({ loops, seen }));
`;

export async function watchModes(
  dirs: string[],
  scratch: string,
): Promise<{ stop: () => Promise<{ loops: number; seen: Record<string, Record<string, number>> }> }> {
  await mkdir(scratch, { recursive: true });
  const stopFile = path.join(scratch, `stop-${randomBytes(4).toString('hex')}`);
  const readyFile = path.join(scratch, `ready-${randomBytes(4).toString('hex')}`);
  const done = run(process.execPath, ['-e', WATCHER, JSON.stringify(dirs), stopFile, readyFile], { timeoutMs: 60_000 });
  await waitFor('the mode watcher to start', async () => ((await stat(readyFile).catch(() => null)) ? true : undefined), 10_000, 10);
  return {
    async stop() {
      await writeFile(stopFile, '');
      const r = await done;
      if (r.code !== 0) throw new Error(`the watcher failed: ${r.stderr}`);
      return JSON.parse(r.stdout);
    },
  };
}
