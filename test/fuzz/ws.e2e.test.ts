/**
 * Fuzzing WebSocket /rpc (issue 4): thousands of generated hostile requests with the admin
 * token at a real scoped of its own, every answer checked against the reference model of
 * JSON-RPC 2.0; then the daemon still serves, changed nothing, and kept its memory bounded.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type FuzzTarget, PER_TRANSPORT, WARMUP, expectUnharmed, measured, plans, report, runWs, startTarget, stopTarget } from './harness.js';

describe('fuzzing WebSocket /rpc with hostile requests', () => {
  let t: FuzzTarget | undefined;
  beforeAll(async () => {
    t = await startTarget();
  }, 60_000);
  afterAll(() => stopTarget(t), 60_000);

  test(`answers each of ${PER_TRANSPORT} generated hostile requests over WebSocket validly (a message over the size limit closes with 1009, one not UTF-8 with 1007); then the daemon still serves, changed nothing, and kept memory bounded`, async () => {
    const { ws } = plans();
    await measured(
      t!,
      () => runWs(t!, ws.slice(0, WARMUP)),
      () => runWs(t!, ws.slice(WARMUP)),
    );
    expect(report(t!)).toBeGreaterThanOrEqual(PER_TRANSPORT);
    await expectUnharmed(t!, true);
  }, 180_000);
});
