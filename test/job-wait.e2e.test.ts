/**
 * job.get with waitMs, end to end: the real scoped with a plugin whose plan takes a while, so a
 * job is still running when it is asked for; JSON-RPC over the unix socket and over TCP with a
 * token, and the real cpcmd, which waits for its jobs this way.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectExit, expectRpcError } from './helpers/expect.js';
import { PluginDirs } from './helpers/plugin-dir.js';
import { type RpcAnswer, type Scoped, scoped } from './helpers/scoped.js';

/** How long the slow unit's plan takes for a value that starts with `slow`. */
const PLAN_MS = 1_500;

const SLOW_PLUGIN = `
import { ScopeInputError, definePlugin, defineScope, defineUnit, defineVar, z } from '@scoped/sdk';

const FILE = '/etc/slow/value';
const Value = z.string().regex(/^[a-z0-9-]+$/, 'lowercase letters, digits and dashes');
const slowVar = defineVar({ name: 'slow_value', description: 'what /etc/slow/value says', schema: Value, default: 'none' });

const slowUnit = defineUnit({
  name: 'slow/file',
  description: 'one file, planned slowly for values starting with slow',
  reads: ['slow_value'],
  timeoutMs: 20000,
  observe: ({ system }) => system.readFile(FILE),
  async plan(vars, current) {
    if (vars.slow_value.startsWith('slow')) await new Promise((r) => setTimeout(r, ${PLAN_MS}));
    const content = vars.slow_value + '\\n';
    return current === content ? [] : [{ kind: 'file', path: FILE, content, mode: 0o644, current }];
  },
});

const slowScope = defineScope({
  name: 'slow.value',
  summary: 'One value, converged slowly',
  help: 'A test plugin whose converge takes a while.',
  usage: 'VALUE',
  examples: ['cpcmd scope:set slow.value slow-1'],
  schema: Value,
  vars: ['slow_value'],
  timeoutMs: 20000,
  parseArgs(args) {
    if (args.length !== 1) throw new ScopeInputError('slow.value takes one VALUE');
    return String(args[0]);
  },
  toVars: (value) => ({ slow_value: value }),
  get: ({ vars }) => vars.slow_value,
});

export default definePlugin({ name: 'scoped-plugin-slow', version: '1.0.0', apiVersion: 1, vars: [slowVar], units: [slowUnit], scopes: [slowScope] });
`;

let plugins: PluginDirs | undefined;
/** The slow plugin's directory (what `--plugin` takes). */
let pluginDir: string;

function result<T = any>(a: RpcAnswer): T {
  if ('error' in a) throw new Error(`expected a result, got ${JSON.stringify(a.error)}`);
  return a.result as T;
}

/** scoped with the slow plugin, on a fresh root of the test's own. */
const slowScoped = () => scoped({ args: ['--plugin', pluginDir] });

async function startSlowSet(d: Scoped, value: string): Promise<string> {
  const r = result<{ status: string; job: string }>(await d.call('scope.set', { name: 'slow.value', args: [value], async: true }));
  expect(r.status).toBe('queued');
  return r.job;
}

/** Set a value at once (no wait in the plan) and wait for it: the state a test starts from. */
async function setQuick(d: Scoped, value: string): Promise<void> {
  expect(await d.ok('scope.set', { name: 'slow.value', args: [value] })).toMatchObject({ status: 'applied' });
}

describe('job.get waitMs (real scoped, a slow plugin, unix socket, TCP, cpcmd)', () => {
  beforeAll(async () => {
    plugins = await PluginDirs.create();
    pluginDir = await plugins.write('slow', SLOW_PLUGIN);
  });

  afterAll(async () => {
    await plugins?.remove();
  });

  it('answers the moment the job ends, in one call, with its result', async () => {
    await using d = await slowScoped();
    const id = await startSlowSet(d, 'slow-1');
    // Without waitMs the job is still running: its plan alone takes PLAN_MS.
    expect(['queued', 'running']).toContain(result(await d.call('job.get', { id })).state);
    const job = result(await d.call('job.get', { id, waitMs: 10_000 }));
    expect(job).toMatchObject({ id, action: 'scope.set', target: 'slow.value', state: 'done' });
    expect(job.result).toMatchObject({ status: 'applied', name: 'slow.value', value: 'slow-1' });
    expect(result(await d.call('scope.get', { name: 'slow.value' })).value).toBe('slow-1');
  });

  it('answers the job as it stands when waitMs passes first, and at once for a job that has ended', async () => {
    await using d = await slowScoped();
    const id = await startSlowSet(d, 'slow-2');
    const running = result(await d.call('job.get', { id, waitMs: 50 }));
    expect(running).toMatchObject({ id, state: expect.stringMatching(/^(queued|running)$/) });
    expect(running.result).toBeUndefined();
    expect(result(await d.call('job.get', { id, waitMs: 10_000 })).state).toBe('done');
    // Ended: answered as it is.
    expect(result(await d.call('job.get', { id, waitMs: 10_000 }))).toMatchObject({ id, state: 'done', result: { status: 'applied' } });
  });

  it('a cancelled job is answered cancelled, with its error, once rolled back', async () => {
    await using d = await slowScoped();
    await setQuick(d, 'before-3');
    const id = await startSlowSet(d, 'slow-3');
    const cancel = result(await d.call('job.cancel', { id }));
    expect(['queued', 'running']).toContain(cancel.state);
    const job = result(await d.call('job.get', { id, waitMs: 10_000 }));
    expect(job.state).toBe('cancelled');
    expect(job.error).toMatchObject({ code: expect.any(Number), message: expect.stringMatching(/cancel/) });
    expect(result(await d.call('scope.get', { name: 'slow.value' })).value).toBe('before-3');
  });

  it('waitMs out of range is refused with the limit, and nothing waits', async () => {
    await using d = await slowScoped();
    for (const waitMs of [10_001, -1, 1.5, '100']) {
      expectRpcError(await d.call('job.get', { id: 'job-000000000000', waitMs }), 'InvalidParams', /waitMs/);
    }
    expectRpcError(await d.call('job.get', { id: 'job-000000000000', waitMs: 10_001 }), 'InvalidParams', /at most 10000/);
    // An unknown job is not found at once, waitMs or not.
    expectRpcError(await d.call('job.get', { id: 'job-000000000000', waitMs: 10_000 }), 'NotFound');
  });

  it("a token limited to scopes waits only for its own jobs: another token's job is not found", async () => {
    await using d = await slowScoped();
    const mk = async (name: string) => result<{ token: string }>(await d.call('token.create', { role: 'operator', name, scopes: ['slow.*'] })).token;
    const [alice, bob] = [await mk('alice'), await mk('bob')];
    const id = result<{ job: string }>(await d.tcpCall('scope.set', { name: 'slow.value', args: ['slow-4'], async: true }, alice)).job;
    expectRpcError(await d.tcpCall('job.get', { id, waitMs: 10_000 }, bob), 'NotFound');
    expect(result(await d.tcpCall('job.get', { id, waitMs: 10_000 }, alice))).toMatchObject({ id, state: 'done' });
  });

  it('cpcmd scope:set waits for its job and prints the outcome; job:get --wait follows a job to its end', async () => {
    await using d = await slowScoped();
    await setQuick(d, 'before-5');
    const set = await d.cpcmd(['scope:set', 'slow.value', 'slow-5']);
    expectExit(set, 'ok');
    expect(set.stdout).toMatch(/^slow\.value: applied \(revision \d+\)\n {2}slow\/file: rewrite \/etc\/slow\/value/);
    const id = await startSlowSet(d, 'slow-6');
    const wait = await d.cpcmd(['job:get', id, '--wait', '-o', 'json']);
    expectExit(wait, 'ok');
    expect(JSON.parse(wait.stdout)).toMatchObject({ status: 'applied', name: 'slow.value', value: 'slow-6' });
  });
});
