/**
 * audit.list with a pathological scope glob (issue 4): a glob becomes a regex with one .* per
 * star, and refused calls put any name the caller likes into the trail as a target, so a glob
 * like *a*a*a…b against a long name of a's would backtrack for hours. It must answer at once.
 */
import { ErrorCodes } from '@scoped/protocol';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type Scoped, httpPost, scoped } from '../helpers/scoped.js';

describe('audit.list with a pathological scope glob', () => {
  let d: Scoped | undefined;
  beforeAll(async () => {
    d = await scoped();
  }, 60_000);
  afterAll(() => d?.close(), 60_000);

  test('answers at once (no catastrophic regex backtracking), for the history and the refusals', async () => {
    const token = d!.token();
    // A refused call puts the long name into the trail as a target.
    expect((await d!.call('scope.set', { name: 'a'.repeat(60), value: 1 })) as unknown).toMatchObject({ error: { code: ErrorCodes.ScopeNotFound } });
    const t = Date.now();
    const body = JSON.stringify({ jsonrpc: '2.0', id: 'glob', method: 'audit.list', params: { scope: `${'*a'.repeat(10)}b`, limit: 1 } });
    const r = await httpPost({ port: d!.port! }, body, { token, timeoutMs: 5_000 }).catch((err: Error) => err);
    expect(r instanceof Error ? `no answer: ${r.message}` : JSON.parse(r.text)).toMatchObject({ id: 'glob', result: { entries: [] } });
    const refused = await httpPost({ port: d!.port! }, body.replace('"limit":1', '"limit":1,"refused":true'), { token, timeoutMs: 5_000 }).catch(
      (err: Error) => err,
    );
    expect(refused instanceof Error ? `no answer: ${refused.message}` : JSON.parse(refused.text)).toMatchObject({ id: 'glob', result: { refusals: [] } });
    expect(Date.now() - t).toBeLessThan(2_000);
  });
});
