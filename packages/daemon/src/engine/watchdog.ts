import { ErrorCodes, RpcError } from '@scoped/protocol';

/**
 * Calls in flight under a time limit, checked by one watchdog timer rather than a timer per
 * call: a scope.get runs several limited calls, and thousands of them run each second.
 */
const deadlines = new Set<{ at: number; expire: () => void }>();
const WATCHDOG_MS = 100;
let watchdog: NodeJS.Timeout | undefined;

/** `p`, or a Timeout RpcError carrying `message` once `ms` have passed (`p` itself runs on). */
export function withTimeout<T>(p: Promise<T>, ms: number, message: string | (() => string)): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const entry = { at: Date.now() + ms, expire: () => reject(new RpcError(ErrorCodes.Timeout, typeof message === 'string' ? message : message())) };
    deadlines.add(entry);
    watchdog ??= setInterval(() => {
      const now = Date.now();
      for (const d of deadlines) {
        if (d.at > now) continue;
        deadlines.delete(d);
        d.expire();
      }
      if (deadlines.size === 0) {
        clearInterval(watchdog);
        watchdog = undefined;
      }
    }, WATCHDOG_MS).unref();
    p.then(
      (v) => {
        deadlines.delete(entry);
        resolve(v);
      },
      (err: unknown) => {
        deadlines.delete(entry);
        reject(err);
      },
    );
  });
}
