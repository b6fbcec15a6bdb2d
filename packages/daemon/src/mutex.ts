/** Runs async functions one at a time, in the order they were queued. */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();
  private held = 0;
  /** How many runs were queued so far: a reader that sees it unchanged knows nothing ran meanwhile. */
  private queued = 0;

  run<T>(fn: () => Promise<T>): Promise<T> {
    this.held++;
    this.queued++;
    const result = this.tail.then(fn, fn).finally(() => this.held--);
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  /** Changes whenever a run is queued. */
  get runs(): number {
    return this.queued;
  }

  /** Whether something runs or waits. */
  get busy(): boolean {
    return this.held > 0;
  }
}
