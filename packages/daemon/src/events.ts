import { globTest } from './engine.js';
import { Mutex } from './mutex.js';
import type { Store, Tx } from './store.js';

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

/** The most kept events a replay reads and holds at once. */
const REPLAY_PAGE = 100;
/**
 * About how many bytes (as JSON) of them. The size of a page is guessed from the last one: it
 * shrinks to fit at once after large events and grows back at most twofold a page, so a
 * replay reaching large events after small ones overshoots by one page at most.
 */
const REPLAY_PAGE_BYTES = 256 * 1024;

/** Whom a replay is for: its connection (one replay at a time each) and its token (a share of the daemon's replays). */
export interface ReplayTurn {
  lane: object;
  owner: string;
  /** False once the connection is gone: a replay still waiting for its turn is dropped. */
  open: () => boolean;
}

interface Waiting {
  turn: ReplayTurn;
  /** Its turn (the function that gives it back), or undefined: its connection went away first. */
  start: (release: (() => void) | undefined) => void;
}

/**
 * Turns to replay, so that the memory held by unfinished replays is bounded daemon-wide, not
 * per subscription: at most `max` replays run at once (each holding one page), at most one per
 * connection, and at most half of them for one token, so a token whose readers stalled cannot
 * hold every turn. Waiting replays hold no page. A freed turn goes to the waiting replay whose
 * token runs the fewest, oldest first. A stalled reader gives its turn back when its connection
 * is closed for making no progress (the transport's stall timeout).
 */
export class ReplayTurns {
  private running = 0;
  private readonly byOwner = new Map<string, number>();
  private readonly busyLanes = new WeakSet<object>();
  private queue: Waiting[] = [];

  constructor(private readonly max: number) {}

  /** Wait for a turn; resolves with the function that gives it back, or undefined when the connection went away first. */
  take(turn: ReplayTurn): Promise<(() => void) | undefined> {
    return new Promise((resolve) => {
      this.queue.push({ turn, start: resolve });
      this.next();
    });
  }

  private owned(owner: string): number {
    return this.byOwner.get(owner) ?? 0;
  }

  private next(): void {
    // Replays of connections that closed while they waited are dropped, never run.
    const gone = this.queue.filter((w) => !w.turn.open());
    if (gone.length) this.queue = this.queue.filter((w) => w.turn.open());
    for (const w of gone) w.start(undefined);
    const perOwner = Math.max(1, Math.ceil(this.max / 2));
    while (this.running < this.max) {
      let best: Waiting | undefined;
      for (const w of this.queue) {
        const owned = this.owned(w.turn.owner);
        if (this.busyLanes.has(w.turn.lane) || owned >= perOwner) continue;
        if (!best || owned < this.owned(best.turn.owner)) best = w;
      }
      if (!best) return;
      this.queue.splice(this.queue.indexOf(best), 1);
      const { lane, owner } = best.turn;
      this.running++;
      this.byOwner.set(owner, this.owned(owner) + 1);
      this.busyLanes.add(lane);
      let given = false;
      best.start(() => {
        if (given) return;
        given = true;
        this.running--;
        const left = this.owned(owner) - 1;
        if (left > 0) this.byOwner.set(owner, left);
        else this.byOwner.delete(owner);
        this.busyLanes.delete(lane);
        this.next();
      });
    }
  }
}

/** How many events the next page may hold, from the size of the last one. */
function nextPageSize(count: number, page: readonly ScopedEvent[]): number {
  if (page.length === 0) return Math.min(REPLAY_PAGE, count * 2);
  const bytes = page.reduce((n, e) => n + JSON.stringify(e).length, 0);
  const fits = Math.floor((page.length * REPLAY_PAGE_BYTES) / Math.max(bytes, 1));
  return Math.max(1, Math.min(REPLAY_PAGE, fits, count * 2));
}

interface Subscriber {
  matches: (event: ScopedEvent) => boolean;
  send: (event: ScopedEvent) => void;
}

/** A publish waiting for its commit. */
interface Queued {
  items: readonly { topic: string; data: unknown }[];
  /** Other writes the events go to disk with (the change they announce), in the same commit. */
  alongside: ((tx: Tx) => Promise<void>) | undefined;
  resolve: (events: ScopedEvent[]) => void;
  reject: (err: unknown) => void;
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
  /** Publishes waiting for the commit under way to end. */
  private queue: Queued[] = [];

  private readonly turns: ReplayTurns;

  constructor(
    private readonly store: Store,
    private readonly keep = 10_000,
    /** Replays in progress at once, daemon-wide (maxReplays). */
    maxReplays = 8,
  ) {
    this.turns = new ReplayTurns(maxReplays);
  }

  async init(): Promise<void> {
    this.revision = await this.store.eventRevision();
  }

  /**
   * Record several events in one commit, in order, then hand each to every matching subscriber.
   * With `alongside`, the writes it makes go into that same commit (a change and the events
   * announcing it are stored together or not at all), and its failure is the publish's.
   * Publishes that come while a commit is under way wait for it and are then written together,
   * in one commit, in the order they came; one with `alongside` gets a commit of its own, so no
   * other publish fails with it.
   */
  publishMany(items: readonly { topic: string; data: unknown }[], alongside?: (tx: Tx) => Promise<void>): Promise<ScopedEvent[]> {
    return new Promise((resolve, reject) => {
      this.queue.push({ items, alongside, resolve, reject });
      // The first run to get the lock writes everything queued by then; the later ones find nothing left.
      void this.lock.run(() => this.writeQueued());
    });
  }

  /** Write what is queued: each turn, one publish with `alongside`, or every plain one up to the next such. */
  private async writeQueued(): Promise<void> {
    while (this.queue.length > 0) {
      let n = 1;
      if (!this.queue[0]!.alongside) while (n < this.queue.length && !this.queue[n]!.alongside) n++;
      const group = this.queue.splice(0, n);
      const time = new Date().toISOString();
      let revision = this.revision;
      const events = group.map((q) => q.items.map(({ topic, data }): ScopedEvent => ({ revision: ++revision, topic, time, data })));
      const all = events.flat();
      const alongside = group[0]!.alongside;
      try {
        if (alongside) {
          await this.store.transaction(async (tx) => {
            await alongside(tx);
            await this.store.appendEvents(all, this.keep, tx);
          });
        } else {
          await this.store.appendEvents(all, this.keep);
        }
      } catch (err) {
        for (const q of group) q.reject(err);
        continue;
      }
      this.revision = revision;
      for (const event of all) for (const s of this.subscribers.values()) if (s.matches(event)) s.send(event);
      for (const [i, q] of group.entries()) q.resolve(events[i]!);
    }
  }

  /**
   * Subscribe to topics (globs such as `scope.*` or `job.*`). With `since`, first every kept
   * event after that revision is sent, then live ones. `gap` is true when some events after
   * `since` are no longer kept. `pace` says whether the subscriber can take another event now
   * (true), or promises to say when it can (false: it went away); the replay keeps to it.
   * `turn` says whom a replay is for: it waits for its turn among the daemon's replays.
   */
  subscribe(
    topics: readonly string[],
    deliver: (event: ScopedEvent, subscription: string) => void,
    since?: number,
    /** What of an event this subscriber may see (a filtered copy), or nothing. */
    view: (event: ScopedEvent) => ScopedEvent | undefined = (e) => e,
    pace: Pace = () => true,
    turn?: ReplayTurn,
  ): Promise<{ id: string; revision: number; gap: boolean }> {
    const id = `sub-${this.nextId++}`;
    const tests = topics.map(globTest);
    const send = (e: ScopedEvent) => {
      const shown = view(e);
      if (shown) deliver(shown, id);
    };
    const subscriber: Subscriber = { matches: (e) => tests.some((t) => t(e.topic)), send };
    if (since === undefined) return this.catchUp(id, subscriber, since, pace);
    // A replay holds a page while its reader reads: it waits for a turn first, holding none.
    return this.turns.take(turn ?? { lane: subscriber, owner: id, open: () => true }).then((release) => {
      // Gone before its turn came: it never goes live.
      if (!release) return { id, revision: since, gap: false };
      return this.catchUp(id, subscriber, since, pace).finally(release);
    });
  }

  /**
   * Send a subscriber what it missed since `since`, then make it live. A replay far behind
   * goes out a page at a time, read from the store and sent at the pace the subscriber reads,
   * outside the lock: a slow reader holds up neither publishing nor more than a page of
   * memory. The last page (at most a page's worth) is sent under the lock, in the same step
   * that makes the subscriber live, so no event falls between replay and live and none is
   * sent twice.
   */
  private async catchUp(id: string, s: Subscriber, since: number | undefined, pace: Pace): Promise<{ id: string; revision: number; gap: boolean }> {
    let cursor = since;
    let gap = false;
    // Start with one event: its size says how many fit in a page.
    let count = 1;
    // Events after `from` that are no longer kept: the page does not start right after it.
    const noteGap = (page: readonly ScopedEvent[], from: number) => void ((page[0]?.revision ?? Infinity) > from + 1 && (gap = true));
    for (;;) {
      const revision = await this.lock.run(async () => {
        if (cursor !== undefined && this.revision - cursor > count) return undefined;
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
      const page = await this.store.eventsAfter<ScopedEvent>(from, this.keep, count);
      noteGap(page, from);
      count = nextPageSize(count, page);
      for (const e of page) {
        if (!s.matches(e)) continue;
        const ready = pace();
        // Gone while catching up: it never goes live.
        if (ready !== true && !(await ready)) return { id, revision: from, gap };
        s.send(e);
      }
      cursor = page.at(-1)?.revision ?? from + count;
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
