/**
 * Failed logins per peer address in a sliding window: past the limit, the peer is refused
 * without checking its token until the window has passed.
 */
export class FailureLimiter {
  private readonly failures = new Map<string, number[]>();

  constructor(
    private readonly max: number,
    private readonly windowMs: number,
  ) {}

  /** Seconds the peer must wait, or 0 when it may try. */
  blockedFor(peer: string): number {
    const now = Date.now();
    const recent = (this.failures.get(peer) ?? []).filter((t) => now - t < this.windowMs);
    if (recent.length) this.failures.set(peer, recent);
    else this.failures.delete(peer);
    if (recent.length < this.max) return 0;
    return Math.ceil((recent[0]! + this.windowMs - now) / 1000);
  }

  fail(peer: string): void {
    const list = this.failures.get(peer) ?? [];
    list.push(Date.now());
    if (list.length > this.max) list.shift();
    this.failures.set(peer, list);
    if (this.failures.size > 100_000) this.failures.delete(this.failures.keys().next().value!);
  }
}
