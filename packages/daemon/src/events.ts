import { globTest } from './engine.js';
import { Mutex } from './mutex.js';
import type { Store } from './store.js';

/** One event: a revision that only grows, a topic, when, and data with secrets already redacted. */
export interface ScopedEvent {
  revision: number;
  topic: string;
  time: string;
  data: unknown;
}

interface Subscriber {
  matches: (event: ScopedEvent) => boolean;
  send: (event: ScopedEvent) => void;
}

/**
 * Events with revisions, kept durably (the newest `keep`) so a client that reconnects with
 * `since` gets exactly what it missed, then live ones. Publishing and subscribing run under
 * one lock: no event can fall between a subscriber's replay and its going live, and none is
 * sent twice.
 */
export class EventBus {
  private readonly lock = new Mutex();
  private readonly subscribers = new Map<string, Subscriber>();
  private revision = 0;
  private nextId = 1;

  constructor(
    private readonly store: Store,
    private readonly keep = 10_000,
  ) {}

  async init(): Promise<void> {
    this.revision = await this.store.eventRevision();
  }

  /** Record several events in one commit, in order, then hand each to every matching subscriber. */
  publishMany(items: readonly { topic: string; data: unknown }[]): Promise<ScopedEvent[]> {
    return this.lock.run(async () => {
      const time = new Date().toISOString();
      const events = items.map(({ topic, data }, i): ScopedEvent => ({ revision: this.revision + 1 + i, topic, time, data }));
      await this.store.appendEvents(events, this.keep);
      this.revision += events.length;
      for (const event of events) for (const s of this.subscribers.values()) if (s.matches(event)) s.send(event);
      return events;
    });
  }

  /**
   * Subscribe to topics (globs such as `scope.*` or `job.*`). With `since`, first every kept
   * event after that revision is sent, then live ones. `gap` is true when some events after
   * `since` are no longer kept.
   */
  subscribe(
    topics: readonly string[],
    deliver: (event: ScopedEvent, subscription: string) => void,
    since?: number,
    /** What of an event this subscriber may see (a filtered copy), or nothing. */
    view: (event: ScopedEvent) => ScopedEvent | undefined = (e) => e,
  ): Promise<{ id: string; revision: number; gap: boolean }> {
    const id = `sub-${this.nextId++}`;
    const send = (e: ScopedEvent, subscription: string) => {
      const shown = view(e);
      if (shown) deliver(shown, subscription);
    };
    return this.lock.run(async () => {
      const tests = topics.map(globTest);
      const matches = (e: ScopedEvent) => tests.some((t) => t(e.topic));
      let gap = false;
      // A since beyond what this daemon has seen (its store was replaced) is a gap too.
      if (since !== undefined && since > this.revision) gap = true;
      if (since !== undefined && since < this.revision) {
        const missed = await this.store.eventsAfter<ScopedEvent>(since, this.keep);
        gap = (missed[0]?.revision ?? this.revision + 1) > since + 1;
        for (const e of missed) if (matches(e)) send(e, id);
      }
      this.subscribers.set(id, { matches, send: (e) => send(e, id) });
      return { id, revision: this.revision, gap };
    });
  }

  /** Wait until every event published so far is stored (before the store closes). */
  drain(): Promise<void> {
    return this.lock.run(async () => {});
  }

  unsubscribe(id: string): boolean {
    return this.subscribers.delete(id);
  }
}
