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

/**
 * Whether a subscriber can take another event now: true, or a promise that settles when it
 * can (true) or has gone away (false).
 */
export type Pace = () => true | Promise<boolean>;

/** How many kept events a replay reads and holds at once, per subscription. */
const REPLAY_PAGE = 100;

interface Subscriber {
  matches: (event: ScopedEvent) => boolean;
  send: (event: ScopedEvent) => void;
}

/**
 * Events with revisions, kept durably (the newest `keep`) so a client that reconnects with
 * `since` gets exactly what it missed, then live ones. Publishing and a subscriber's going
 * live run under one lock: no event can fall between a subscriber's replay and its going
 * live, and none is sent twice.
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
   * `since` are no longer kept. `pace` says whether the subscriber can take another event now
   * (true), or promises to say when it can (false: it went away); the replay keeps to it.
   */
  subscribe(
    topics: readonly string[],
    deliver: (event: ScopedEvent, subscription: string) => void,
    since?: number,
    /** What of an event this subscriber may see (a filtered copy), or nothing. */
    view: (event: ScopedEvent) => ScopedEvent | undefined = (e) => e,
    pace: Pace = () => true,
  ): Promise<{ id: string; revision: number; gap: boolean }> {
    const id = `sub-${this.nextId++}`;
    const tests = topics.map(globTest);
    const send = (e: ScopedEvent) => {
      const shown = view(e);
      if (shown) deliver(shown, id);
    };
    const subscriber: Subscriber = { matches: (e) => tests.some((t) => t(e.topic)), send };
    return this.catchUp(id, subscriber, since, pace);
  }

  /**
   * Send a subscriber what it missed since `since`, then make it live. A replay far behind
   * goes out a page at a time, read from the store and sent at the pace the subscriber reads,
   * outside the lock: a slow reader holds up neither publishing nor more than a page of
   * memory. The last page (at most REPLAY_PAGE events) is sent under the lock, in the same
   * step that makes the subscriber live, so no event falls between replay and live and none
   * is sent twice.
   */
  private async catchUp(id: string, s: Subscriber, since: number | undefined, pace: Pace): Promise<{ id: string; revision: number; gap: boolean }> {
    let cursor = since;
    let gap = false;
    // Events after `from` that are no longer kept: the page does not start right after it.
    const noteGap = (page: readonly ScopedEvent[], from: number) => void ((page[0]?.revision ?? Infinity) > from + 1 && (gap = true));
    for (;;) {
      const revision = await this.lock.run(async () => {
        if (cursor !== undefined && this.revision - cursor > REPLAY_PAGE) return undefined;
        // A since beyond what this daemon has seen (its store was replaced) is a gap too.
        if (cursor !== undefined && cursor > this.revision) gap = true;
        if (cursor !== undefined && cursor < this.revision) {
          const rest = await this.store.eventsAfter<ScopedEvent>(cursor, this.keep);
          noteGap(rest, cursor);
          for (const e of rest) if (s.matches(e)) s.send(e);
        }
        this.subscribers.set(id, s);
        return this.revision;
      });
      if (revision !== undefined) return { id, revision, gap };
      const from = cursor!;
      const page = await this.store.eventsAfter<ScopedEvent>(from, this.keep, REPLAY_PAGE);
      noteGap(page, from);
      for (const e of page) {
        if (!s.matches(e)) continue;
        const ready = pace();
        // Gone while catching up: it never goes live.
        if (ready !== true && !(await ready)) return { id, revision: from, gap };
        s.send(e);
      }
      cursor = page.at(-1)?.revision ?? from + REPLAY_PAGE;
    }
  }

  /** Wait until every event published so far is stored (before the store closes). */
  drain(): Promise<void> {
    return this.lock.run(async () => {});
  }

  unsubscribe(id: string): boolean {
    return this.subscribers.delete(id);
  }
}
