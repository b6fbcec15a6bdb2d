/**
 * Pieces the event-flood attack tests share: the messages a subscriber receives, and a run of
 * real changes that makes events for them to replay.
 */
import { expect } from 'vitest';
import { httpPost, type Scoped, type WsClient } from './scoped.js';

/** An answer or a notification on a subscriber's WebSocket. */
export interface EventMessage {
  id?: unknown;
  method?: string;
  result?: { subscription: string; revision: number };
  error?: { code: number; message: string };
  params?: { subscription: string; revision: number };
}

/** Every message a WebSocket received so far, parsed. */
export const parsedMessages = (c: WsClient): EventMessage[] => c.messages.map((m) => JSON.parse(m) as EventMessage);

/**
 * `n` changes of net.hostname over the unix socket (the admin), in batches of 50 so they stay
 * within maxJobs; each makes events (scope.changed, unit.converged). `from` numbers the names,
 * so consecutive runs keep changing the value.
 */
export async function makeEvents(d: Scoped, n: number, from = 0): Promise<void> {
  for (let done = 0; done < n; done += 50) {
    const batch = Array.from({ length: Math.min(50, n - done) }, (_, i) => ({
      jsonrpc: '2.0',
      id: i,
      method: 'scope.set',
      params: { name: 'net.hostname', value: `h${from + done + i}.example.test` },
    }));
    const answer = JSON.parse((await httpPost({ socket: d.socket }, JSON.stringify(batch))).text) as EventMessage[];
    expect(
      answer.filter((a) => a.error),
      'the sets that make the events',
    ).toEqual([]);
  }
}
