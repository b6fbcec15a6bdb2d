/**
 * How a converge is undone. Every change kind has an inverse, taken from what the snapshot
 * recorded before the first change:
 * - file, file.remove, postconf, master.block, postmap: the bytes and mode of the files they touch, put back;
 * - kernel-hostname: the kernel's hostname as it was;
 * - service: the service's state as it was, once the files are back: what a `start` started is
 *   stopped, what a `stop` stopped is started again, and a service that ran before and runs now
 *   is reloaded (restarted when the change restarted it) so it reads the restored files.
 * Undoing never repeats a forward service change: a start that failed is not tried again.
 */
import type { Change } from '@scoped/sdk';
import { crashpoint } from './crash.js';
import type { ServiceAction, ServiceDriver } from './services.js';

/** What a snapshot records to undo a change. */
export type Inverse = 'files' | 'kernel-hostname' | 'service-state';

/** The inverse of each change kind (a new kind without one does not compile). */
export function inverseOf(change: Change): Inverse {
  switch (change.kind) {
    case 'file':
    case 'file.remove':
    case 'postconf':
    case 'master.block':
    case 'postmap':
      return 'files';
    case 'kernel-hostname':
      return 'kernel-hostname';
    case 'service':
      return 'service-state';
    default:
      return unreachable(change);
  }
}

function unreachable(change: never): never {
  throw new Error(`no inverse for a change of kind ${(change as { kind?: unknown }).kind as string}`);
}

/** A service a converge acts on, as it was before the converge's first change. */
export interface ServiceState {
  service: string;
  /** Whether it ran; null when not known (a journal written before this was recorded). */
  running: boolean | null;
  /** What the converge does to it, in order. */
  actions: ServiceAction[];
}

/** The state of every service the changes act on, read before the first of them is carried out. */
export async function serviceStates(services: Pick<ServiceDriver, 'running'>, changes: readonly Change[]): Promise<ServiceState[]> {
  const out = new Map<string, ServiceState>();
  for (const c of changes) {
    if (inverseOf(c) !== 'service-state' || c.kind !== 'service') continue;
    const known = out.get(c.service);
    if (known) known.actions.push(c.action);
    else out.set(c.service, { service: c.service, running: await services.running(c.service), actions: [c.action] });
  }
  return [...out.values()];
}

/** What brings a service back to its recorded state, given whether it runs now; null for nothing. */
export function serviceUndo(before: ServiceState, runningNow: boolean): ServiceAction | null {
  if (!runningNow) return before.running === true ? 'start' : null;
  if (before.running === false) return 'stop';
  return before.actions.includes('restart') ? 'restart' : 'reload';
}

/** Starts first (a restored config may name a service), then reloads, then stops (once nothing restored names them). */
const ORDER: Record<ServiceAction, number> = { start: 0, restart: 1, reload: 1, stop: 2 };

/**
 * Put services back as recorded, after the files are restored. Every step is tried even when one
 * fails; the error then names each step that failed, so a retry knows what is left.
 */
export async function restoreServices(services: ServiceDriver, states: readonly ServiceState[]): Promise<void> {
  const steps: { service: string; action: ServiceAction }[] = [];
  for (const s of states) {
    const action = serviceUndo(s, await services.running(s.service));
    if (action) steps.push({ service: s.service, action });
  }
  steps.sort((a, b) => ORDER[a.action] - ORDER[b.action]);
  const failed: string[] = [];
  for (const { service, action } of steps) {
    crashpoint();
    try {
      await services.control(service, action);
    } catch (err) {
      failed.push(`${action} ${service}: ${err instanceof Error ? err.message : String(err)}`);
    }
    crashpoint();
  }
  if (failed.length) throw new Error(`putting services back failed: ${failed.join('; ')}`);
}
