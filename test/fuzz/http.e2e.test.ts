/**
 * Fuzzing HTTP POST /rpc (issue 4): thousands of generated hostile requests with the admin
 * token at a real scoped of its own, every answer checked against the reference model of
 * JSON-RPC 2.0; then the daemon still serves, changed nothing, and kept its memory bounded.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type FuzzTarget, PER_TRANSPORT, WARMUP, expectUnharmed, measured, plans, report, runHttp, startTarget, stopTarget } from './harness.js';

describe('fuzzing HTTP /rpc with hostile requests', () => {
  let t: FuzzTarget | undefined;
  beforeAll(async () => {
    t = await startTarget();
  }, 60_000);
  afterAll(() => stopTarget(t), 60_000);

  test(`answers each of ${PER_TRANSPORT} generated hostile requests over HTTP validly; then the daemon still serves, changed nothing, and kept memory bounded`, async () => {
    const { http } = plans();
    await measured(
      t!,
      () => runHttp(t!, http.slice(0, WARMUP)),
      () => runHttp(t!, http.slice(WARMUP)),
    );
    expect(report(t!)).toBeGreaterThanOrEqual(PER_TRANSPORT);
    await expectUnharmed(t!, true);
  }, 180_000);
});
