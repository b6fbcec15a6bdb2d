/**
 * Converges as jobs, end to end: the real scoped with a third-party plugin loaded from a
 * directory outside the repository, whose unit writes many files so that an apply takes long
 * enough to watch and to cancel halfway; JSON-RPC over the unix socket, job.progress events
 * over a real WebSocket, and the real cpcmd.
 */
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PluginDirs } from './helpers/plugin-dir.js';
import { expectExit } from './helpers/expect.js';
import { type RpcAnswer, type Scoped, type WsClient, scoped, treeDigest, waitFor } from './helpers/scoped.js';

/** Files the bulk plugin's unit manages: one change each, so one progress step each. */
const N = 200;

/**
 * A plugin as a third party ships it (plain ESM). `bulk.files VALUE` writes VALUE into N
 * files under /etc/bulk; the value `boom` also plans a write under one of those files, which
 * fails at apply time after the N writes, so the apply has to be rolled back.
 */
const BULK_PLUGIN = `
import { ScopeInputError, definePlugin, defineScope, defineUnit, defineVar, z } from '@scoped/sdk';

const N = ${N};
const FILES = Array.from({ length: N }, (_, i) => '/etc/bulk/f' + String(i).padStart(3, '0') + '.conf');
const text = (value, i) => '# bulk file ' + i + ', written by scoped-plugin-bulk\\nvalue = ' + value + '\\n';
const Value = z.string().regex(/^[a-z0-9-]*$/, 'lowercase letters, digits and dashes');

const bulkVar = defineVar({ name: 'bulk_value', description: 'what every bulk file says', schema: Value, default: '' });

const bulkUnit = defineUnit({
  name: 'bulk/files',
  description: 'the files under /etc/bulk',
  reads: ['bulk_value'],
  // While /etc/bulk/slow exists, observing takes 600 ms more: a converge then surely runs past the 300 ms after which cpcmd shows progress.
  async observe({ system }) {
    const files = await Promise.all(FILES.map((f) => system.readFile(f)));
    if ((await system.readFile('/etc/bulk/slow')) !== null) await new Promise((r) => setTimeout(r, 600));
    return files;
  },
  plan(vars, observed) {
    const value = vars.bulk_value;
    const changes = [];
    FILES.forEach((path, i) => {
      const current = observed[i];
      if (value === '') {
        if (current !== null) changes.push({ kind: 'file.remove', path, current });
      } else if (current !== text(value, i)) changes.push({ kind: 'file', path, content: text(value, i), mode: 0o644, current });
    });
    if (value === 'boom') changes.push({ kind: 'file', path: FILES[N - 1] + '/under-a-file', content: 'x\\n', mode: 0o644, current: null });
    return changes;
  },
});

const bulkScope = defineScope({
  name: 'bulk.files',
  summary: 'Write one value into ${N} files under /etc/bulk',
  help: 'A test plugin whose converge takes a while.',
  usage: 'VALUE',
  examples: ['cpcmd scope:set bulk.files v1'],
  schema: Value,
  vars: ['bulk_value'],
  parseArgs(args) {
    if (args.length !== 1) throw new ScopeInputError('bulk.files takes one VALUE');
    return String(args[0]);
  },
  toVars: (value) => ({ bulk_value: value }),
  async get({ system }) {
    const t = await system.readFile(FILES[0]);
    return t === null ? '' : /^value = (.*)$/m.exec(t)[1];
  },
});

export default definePlugin({ name: 'scoped-plugin-bulk', version: '1.0.0', apiVersion: 1, vars: [bulkVar], units: [bulkUnit], scopes: [bulkScope] });
`;

const FILES = Array.from({ length: N }, (_, i) => `etc/bulk/f${String(i).padStart(3, '0')}.conf`);
const bulkText = (value: string, i: number) => `# bulk file ${i}, written by scoped-plugin-bulk\nvalue = ${value}\n`;

interface EventNote {
  method: string;
  params: {
    subscription: string;
    revision: number;
    topic: string;
    time: string;
    data: { job: string; done?: number; total?: number; step?: string; error?: string };
  };
}

let plugins: PluginDirs | undefined;
let d: Scoped;
let ws: WsClient;
let subscription: string;

const cp = (...args: string[]) => d.cpcmd(args);

/** Every `event` notification received so far about a job, in order. */
function jobEvents(job: string, topic?: string): EventNote['params'][] {
  return ws.messages
    .map((m) => JSON.parse(m) as Partial<EventNote>)
    .filter((m): m is EventNote => m.method === 'event' && m.params?.data?.job === job && (topic === undefined || m.params.topic === topic))
    .map((m) => m.params);
}

function waitJobEvent(job: string, topic: string, timeoutMs = 20_000): Promise<string> {
  return ws.waitFor((m) => {
    const e = JSON.parse(m) as Partial<EventNote>;
    return e.method === 'event' && e.params?.topic === topic && e.params.data?.job === job;
  }, timeoutMs);
}

/** A call that must answer a result. */
function result<T = any>(a: RpcAnswer): T {
  if ('error' in a) throw new Error(`expected a result, got ${JSON.stringify(a.error)}`);
  return a.result as T;
}

const etc = () => path.join(d.root, 'etc');
const bulkFile = (i: number) => readFile(path.join(d.root, FILES[i]!), 'utf8');

async function expectBulkValue(value: string): Promise<void> {
  for (let i = 0; i < N; i++) expect(await bulkFile(i), FILES[i]).toBe(bulkText(value, i));
}

/**
 * Set the bulk value with `cpcmd --no-wait` and wait for the job's end as the WebSocket
 * reports it. Events go out in order, so once this job's job.done arrived no event of an
 * earlier job is still on its way: a job started next has its first job.progress delivered
 * promptly, while its apply is still running.
 */
async function setBulk(value: string): Promise<string> {
  const r = await cp('scope:set', 'bulk.files', value, '--no-wait');
  expectExit(r, 'ok');
  const id = r.stdout.trim();
  const end = JSON.parse(
    await ws.waitFor((m) => {
      const e = JSON.parse(m) as Partial<EventNote>;
      return e.method === 'event' && e.params?.data?.job === id && /^job\.(done|failed|cancelled)$/.test(e.params.topic);
    }, 30_000),
  ) as EventNote;
  expect(end.params.topic).toBe('job.done');
  return id;
}

async function storedValue(): Promise<unknown> {
  const r = await cp('scope:get', 'cp.bootstrapper', 'bulk_value', '-o', 'json');
  expectExit(r, 'ok');
  return JSON.parse(r.stdout);
}

async function startJob(method: 'scope.set' | 'unit.converge', params: Record<string, unknown>): Promise<string> {
  const r = result<{ status: string; job: string }>(await d.call(method, { ...params, async: true }));
  expect(r).toEqual({ status: 'queued', job: expect.stringMatching(/^job-[0-9a-f]+$/) });
  return r.job;
}

async function jobWhenEnded(id: string): Promise<any> {
  return waitFor(`job ${id} to end`, async () => {
    const job = await d.ok('job.get', { id });
    return ['done', 'failed', 'cancelled'].includes(job.state) ? job : undefined;
  });
}

describe('converges as jobs (real scoped, a plugin from outside the repository, WebSocket events, cpcmd)', () => {
  beforeAll(async () => {
    plugins = await PluginDirs.create();
    const dir = await plugins.write('bulk', BULK_PLUGIN);
    d = await scoped({ args: ['--plugin', dir] });
    ws = await d.ws();
    const sub = result<{ subscription: string }>(await ws.call('events.subscribe', { topics: ['job.*'] }));
    subscription = sub.subscription;
    const list = await cp('plugin:list', '-o', 'json');
    expectExit(list, 'ok');
    expect(JSON.parse(list.stdout)).toContainEqual(expect.objectContaining({ name: 'scoped-plugin-bulk', status: 'loaded', scopes: ['bulk.files'] }));
  });

  afterAll(async () => {
    ws?.terminate();
    await d?.close();
    await plugins?.remove();
  });

  it('scope.set with async: true answers a job id at once; one job.progress event per change applied; job.get ends done with the result', async () => {
    const id = await startJob('scope.set', { name: 'bulk.files', args: ['v1'] });
    // Answered before the N writes are through.
    expect(['queued', 'running']).toContain((await d.ok('job.get', { id })).state);

    await waitJobEvent(id, 'job.done');
    const progress = jobEvents(id, 'job.progress');
    expect(progress.map((e) => e.data.done)).toEqual(Array.from({ length: N }, (_, i) => i + 1));
    for (const e of progress) {
      expect(e.subscription).toBe(subscription);
      expect(e.data.total).toBe(N);
      expect(e.data.step).toMatch(/^create \/etc\/bulk\/f\d{3}\.conf \(mode 0644\)/);
    }
    const revisions = jobEvents(id).map((e) => e.revision);
    expect([...revisions].sort((a, b) => a - b)).toEqual(revisions);
    expect(jobEvents(id).at(-1)!.topic).toBe('job.done');

    const job = await d.ok('job.get', { id });
    expect(job).toMatchObject({ id, action: 'scope.set', target: 'bulk.files', state: 'done', done: N, total: N });
    expect(job.result).toMatchObject({ status: 'applied', revision: expect.any(Number) });
    expect(job.result.plan).toHaveLength(N);
    await expectBulkValue('v1');
    expect(await storedValue()).toBe('v1');
  });

  it('a job cancelled midway leaves the files as before', async () => {
    await setBulk('v1');
    const before = await treeDigest(etc());
    expect(Object.keys(before).filter((p) => p.startsWith('bulk/'))).toHaveLength(N);

    const started = result<{ job: string }>(await ws.call('scope.set', { name: 'bulk.files', args: ['v2'], async: true }));
    const id = started.job;
    await waitJobEvent(id, 'job.progress');
    const cancel = result<{ state: string; done: number }>(await ws.call('job.cancel', { id }));
    expect(cancel, `cancelled at ${cancel.done}/${N}`).toMatchObject({ id, state: 'running' });
    await waitJobEvent(id, 'job.cancelled');

    const job = await d.ok('job.get', { id });
    expect(job.state).toBe('cancelled');
    expect(job.total).toBe(N);
    expect(job.done).toBeGreaterThanOrEqual(1);
    expect(job.done).toBeLessThan(N);
    expect(job.error).toMatchObject({ code: -32005, message: expect.stringMatching(/cancelled after \d+ of 200 changes/) });
    expect(jobEvents(id, 'job.done')).toEqual([]);
    // Some files were rewritten before the cancel took effect: the rollback put them back.
    expect(jobEvents(id, 'job.progress').length).toBeGreaterThanOrEqual(1);

    expect(await treeDigest(etc())).toEqual(before);
    await expectBulkValue('v1');
    const check = await cp('scope:check');
    expectExit(check, 'ok');
    expect(check.stdout.trim()).toBe('ok: no drift');
    const get = await cp('scope:get', 'bulk.files');
    expectExit(get, 'ok');
    expect(get.stdout.trim()).toBe('v1');
    expect(get.stderr).toBe('');
    expect(await storedValue()).toBe('v1');
    const audit = await cp('audit:list', '--scope', 'bulk.files', '-o', 'json');
    expectExit(audit, 'ok');
    expect(JSON.parse(audit.stdout).at(-1)).toMatchObject({
      action: 'scope.set',
      target: 'bulk.files',
      outcome: 'rolled-back',
      reason: expect.stringMatching(/cancelled/),
    });
  });

  it('a job cancelled midway while creating files removes every file it created', async () => {
    await setBulk("''");
    expect(await storedValue()).toBe('');
    await rm(path.join(d.root, 'etc/bulk'), { recursive: true, force: true });
    const before = await treeDigest(etc());

    const id = result<{ job: string }>(await ws.call('scope.set', { name: 'bulk.files', args: ['v7'], async: true })).job;
    await waitJobEvent(id, 'job.progress');
    const cancel = result<{ state: string; done: number }>(await ws.call('job.cancel', { id }));
    expect(cancel, `cancelled at ${cancel.done}/${N}`).toMatchObject({ state: 'running' });
    await waitJobEvent(id, 'job.cancelled');
    const job = await d.ok('job.get', { id });
    expect(job).toMatchObject({ state: 'cancelled', total: N });
    expect(job.done).toBeLessThan(N);

    const after = await treeDigest(etc());
    expect(
      Object.keys(after).filter((p) => after[p]!.startsWith('file ') && !(p in before)),
      'files the cancelled job created',
    ).toEqual([]);
    expect.soft(after, 'the tree, directories included, is as before the job').toEqual(before);
    expect(await storedValue()).toBe('');
    expectExit(await cp('scope:check'), 'ok');
  });

  it('a job behind another is queued until that one ends; cancelled while queued, it changes nothing', async () => {
    await setBulk('v1');
    const first = await startJob('scope.set', { name: 'bulk.files', args: ['v3'] });
    const second = await startJob('scope.set', { name: 'bulk.files', args: ['v4'] });
    const waiting = await d.ok('job.get', { id: second });
    expect.soft(waiting.state, 'a job waiting for another to finish has not started running').toBe('queued');
    expect(waiting.done).toBe(0);
    expect((await d.ok('job.cancel', { id: second })).id).toBe(second);

    const a = await jobWhenEnded(first);
    const b = await jobWhenEnded(second);
    expect(a).toMatchObject({ state: 'done', done: N, total: N });
    expect(b).toMatchObject({ state: 'cancelled', done: 0 });
    expect(jobEvents(second, 'job.progress')).toEqual([]);
    await expectBulkValue('v3');
    expect(await storedValue()).toBe('v3');
    expectExit(await cp('scope:check'), 'ok');
  });

  it('unit.converge with async: true is a job too; cpcmd converge waits and, past ~300 ms, shows plain progress lines on stderr', async () => {
    await setBulk('v1');
    const handEdit = async () => {
      for (let i = 0; i < N; i++) await writeFile(path.join(d.root, FILES[i]!), `edited by hand ${i}\n`);
    };
    await handEdit();
    expectExit(await cp('scope:check'), 'drift');

    const id = await startJob('unit.converge', { units: ['bulk/files'] });
    const job = await jobWhenEnded(id);
    expect(job).toMatchObject({ action: 'unit.converge', target: 'bulk/files', state: 'done', done: N, total: N });
    expect(job.result).toMatchObject({ status: 'applied' });
    await expectBulkValue('v1');

    await handEdit();
    await writeFile(path.join(d.root, 'etc/bulk/slow'), 'observe slowly\n');
    const r = await cp('converge', 'bulk/files');
    await rm(path.join(d.root, 'etc/bulk/slow'));
    expectExit(r, 'ok');
    expect(r.stdout).toMatch(/^bulk\/files: applied \(revision \d+\)$/m);
    await expectBulkValue('v1');
    const lines = r.stderr.split('\n').filter(Boolean);
    expect(lines.length).toBeGreaterThan(0);
    expect(r.stderr).not.toContain('\r');
    const done: number[] = [];
    for (const line of lines) {
      const m = /^(\d+)\/200 rewrite \/etc\/bulk\/f\d{3}\.conf \(mode 0644\): /.exec(line);
      expect(m, line).not.toBeNull();
      done.push(Number(m![1]));
    }
    expect([...done].sort((x, y) => x - y)).toEqual(done);
    expect(done.at(-1)).toBe(N);

    // A quick change shows no progress at all (when the machine is slow enough for it to pass
    // ~300 ms, what shows must still be plain progress lines).
    const q0 = Date.now();
    const quick = await cp('scope:set', 'net.hostname', 'mail.example.test');
    const quickTook = Date.now() - q0;
    expectExit(quick, 'ok');
    if (quickTook < 300) expect(quick.stderr).toBe('');
    else for (const line of quick.stderr.split('\n').filter(Boolean)) expect(line).toMatch(/^\d+\/\d+ /);
  });

  it('--no-wait prints the job id alone; job:get --wait follows it to its end', async () => {
    await setBulk('v1');
    const r = await cp('scope:set', 'bulk.files', 'v5', '--no-wait');
    expectExit(r, 'ok');
    expect(r.stdout).toMatch(/^job-[0-9a-f]+\n$/);
    expect(r.stderr).toBe('');
    const id = r.stdout.trim();

    const wait = await cp('job:get', id, '--wait');
    expectExit(wait, 'ok');
    expect(wait.stdout).toMatch(/applied \(revision \d+\)/);
    const json = await cp('job:get', id, '-o', 'json');
    expectExit(json, 'ok');
    expect(JSON.parse(json.stdout)).toMatchObject({ id, state: 'done', done: N, total: N, action: 'scope.set', target: 'bulk.files' });
    await expectBulkValue('v5');

    const conv = await cp('converge', '--no-wait');
    expectExit(conv, 'ok');
    expect(conv.stdout).toMatch(/^job-[0-9a-f]+\n$/);
    expect((await jobWhenEnded(conv.stdout.trim())).state).toBe('done');
  });

  it('a job whose apply fails ends failed, is rolled back, and cpcmd exits 9 with the reason', async () => {
    await setBulk('v1');
    const before = await treeDigest(etc());

    const r = await cp('scope:set', 'bulk.files', 'boom');
    expectExit(r, 'convergeFailed');
    // Progress lines may come first (the apply runs past ~300 ms); the error is the one cpcmd: line.
    const errors = r.stderr.split('\n').filter((l) => !/^\d+\/\d+ /.test(l) && l !== '');
    expect(errors[0]).toMatch(/^cpcmd: converge failed and was rolled back: /);
    expect(errors.length, r.stderr).toBeLessThanOrEqual(2);
    expect(await treeDigest(etc())).toEqual(before);

    const id = await startJob('scope.set', { name: 'bulk.files', args: ['boom'] });
    await waitJobEvent(id, 'job.failed');
    const job = await d.ok('job.get', { id });
    expect(job.state).toBe('failed');
    expect(job.error).toMatchObject({ code: -32005, message: expect.stringMatching(/^converge failed and was rolled back/) });
    expect(job.done).toBe(N);
    expect(job.total).toBe(N + 1);
    expect(await treeDigest(etc())).toEqual(before);
    expect(await storedValue()).toBe('v1');
    expectExit(await cp('scope:check'), 'ok');
  });

  it('an unknown job is not found; cancelling a finished job is refused (conflict) and leaves it done and its files in place', async () => {
    const unknown = await d.call('job.get', { id: 'job-000000000000' });
    // -32009: no such object (the protocol's error table).
    expect('error' in unknown && unknown.error).toMatchObject({ code: -32009, message: expect.stringContaining('no job job-000000000000') });
    expectExit(await cp('job:get', 'job-000000000000'), 'notFound');
    expectExit(await cp('job:cancel', 'job-000000000000'), 'notFound');

    const id = await startJob('scope.set', { name: 'bulk.files', args: ['v6'] });
    expect((await jobWhenEnded(id)).state).toBe('done');
    const before = await treeDigest(etc());
    const r = await cp('job:cancel', id);
    expectExit(r, 'conflict');
    expect(r.stderr).toContain(`job ${id} had already ended (done: ${N}/${N} changes applied`);
    expect((await d.ok('job.get', { id })).state).toBe('done');
    expect(await treeDigest(etc())).toEqual(before);
    await expectBulkValue('v6');
  });
});
