/**
 * Fault injection for the crash-safety tests: with SCOPED_CRASH_AT=N in the environment,
 * the process kills itself with SIGKILL at the N-th crash point it passes, exactly as a
 * `kill -9` at that moment would. Without it a crash point costs one comparison.
 */
let remaining = Number(process.env.SCOPED_CRASH_AT ?? 0) || 0;

export function crashpoint(): void {
  if (remaining > 0 && --remaining === 0) process.kill(process.pid, 'SIGKILL');
}

/** For tests in one process: arm the N-th next crash point (0 disarms). */
export function armCrash(n: number): void {
  remaining = n;
}
