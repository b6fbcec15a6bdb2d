/**
 * Fuzzing both transports without a valid token (issue 4): HTTP requests and WebSocket
 * upgrades with no token, a wrong one, or a malformed Authorization header, each from a
 * loopback address of its own; every one is refused with 401 and -32001, and the daemon is
 * unharmed.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type FuzzTarget, UNAUTH_HTTP, UNAUTH_WS, expectUnharmed, measured, plans, report, runUnauth, startTarget, stopTarget } from './harness.js';

describe('fuzzing HTTP and WebSocket /rpc without a valid token', () => {
  let t: FuzzTarget | undefined;
  beforeAll(async () => {
    t = await startTarget();
  }, 60_000);
  afterAll(() => stopTarget(t), 60_000);

  test(`refuses ${UNAUTH_HTTP} HTTP requests and ${UNAUTH_WS} WebSocket upgrades with 401 and -32001; then the daemon still serves and changed nothing`, async () => {
    const { unauthSeed } = plans();
    await measured(
      t!,
      async () => undefined,
      () => runUnauth(t!, unauthSeed),
    );
    // measured() runs the traffic twice (the second pass is the one whose memory counts).
    expect(report(t!)).toBe(2 * (UNAUTH_HTTP + UNAUTH_WS));
    await expectUnharmed(t!, false);
  }, 180_000);
});
