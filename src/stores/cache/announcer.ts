import { ConfigError } from '../../core/errors.js';
import { ALL_KEYS, checkChannel, encodePayloads, type NotifyTarget } from './protocol.js';

/**
 * Announces data-only saves for other processes' caches, many keys per notification, from one
 * statement every few milliseconds — instead of a `pg_notify` in each save's own transaction.
 *
 * Why: a transaction with a pending notification takes a database-wide lock at commit (so that
 * queue entries appear in commit order). With a notification in every save, concurrent saves
 * (and everything else that notifies) commit one at a time behind that lock. Here the saves
 * commit with no pending notification, and this process sends at most one notifying
 * transaction per `intervalMs`, however many sessions it saved.
 *
 * What it costs (docs/scaling.md, "Invalidation at scale"): another server may serve the older
 * data of a session for up to `intervalMs` plus one round trip after the save committed. If
 * this process dies in that window, the announcement is lost; the cache's `entryMaxAge` bounds
 * how long the older copy can then be served. Deletes, revocations and changes of owner are
 * never sent through here: they are announced in the write's own transaction.
 */
export interface CoalescingAnnouncerOptions {
  /** Runs one statement (the store's pool). */
  send(text: string, values: unknown[]): Promise<unknown>;
  target: NotifyTarget;
  /** Most time between a save and its announcement being sent, in ms. Default 5. */
  intervalMs?: number | undefined;
  /** A send failed (the keys are kept and sent with the next batch). */
  onError?: ((err: unknown) => void) | undefined;
}

/** Past this many keys waiting, the next announcement is "everything" (`*`) instead. */
export const MAX_PENDING_KEYS = 10_000;
/** Default of {@link CoalescingAnnouncerOptions.intervalMs}. */
export const DEFAULT_ANNOUNCE_INTERVAL_MS = 5;
/** After a failed send, the next attempt waits this long (the database is likely down). */
const RETRY_DELAY_MS = 1000;

const SEND_SQL = 'SELECT count(pg_notify($1, p))::integer AS notified FROM unnest($2::text[]) AS p';

export class CoalescingAnnouncer {
  readonly #send: (text: string, values: unknown[]) => Promise<unknown>;
  readonly #channel: string;
  readonly #nodeId: string;
  readonly #interval: number;
  readonly #onError: (err: unknown) => void;
  #pending = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  #sending: Promise<void> | undefined;
  #closed = false;
  #failed = false;
  /** Counters, for tests and metrics. */
  readonly stats = { announced: 0, batches: 0, failures: 0 };

  constructor(options: CoalescingAnnouncerOptions) {
    this.#send = options.send;
    this.#channel = checkChannel(options.target.channel);
    this.#nodeId = options.target.nodeId;
    encodePayloads(this.#nodeId, []); // checks the node id now, not at the first save
    const interval = options.intervalMs ?? DEFAULT_ANNOUNCE_INTERVAL_MS;
    if (!Number.isFinite(interval) || interval < 0) {
      throw new ConfigError('announceIntervalMs must be a non-negative number of milliseconds');
    }
    this.#interval = interval;
    this.#onError = options.onError ?? (() => {});
  }

  /** Keys waiting to be sent. */
  get pending(): number {
    return this.#pending.size;
  }

  /** Announce `key` with the next batch. */
  add(key: string): void {
    if (this.#pending.has(ALL_KEYS)) return;
    this.#pending.add(key);
    if (this.#pending.size > MAX_PENDING_KEYS) this.#pending = new Set([ALL_KEYS]);
    this.#schedule();
  }

  /** Send what is waiting now; resolves when it has been sent (or failed). */
  async flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    while (this.#sending) await this.#sending;
    if (this.#pending.size === 0) return;
    const keys = [...this.#pending];
    this.#pending = new Set();
    // Through a promise: a pool that throws instead of rejecting still counts as a failed send.
    const payloads = encodePayloads(this.#nodeId, keys);
    this.#sending = Promise.resolve()
      .then(() => this.#send(SEND_SQL, [this.#channel, payloads]))
      .then(
        () => {
          this.#failed = false;
          this.stats.announced += keys.length;
          this.stats.batches++;
        },
        (err: unknown) => {
          // Kept for the next batch: the saves committed, so their announcement is still owed.
          this.#failed = true;
          this.stats.failures++;
          for (const key of keys) this.add(key);
          try {
            this.#onError(err);
          } catch {
            // A throwing error handler must not stop the announcements (nor go unhandled).
          }
        },
      );
    try {
      await this.#sending;
    } finally {
      this.#sending = undefined;
      if (this.#pending.size > 0) this.#schedule();
    }
  }

  /** Send what is waiting (one attempt) and stop. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.flush();
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#sending !== undefined || this.#closed) return;
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        void this.flush();
      },
      this.#failed ? RETRY_DELAY_MS : this.#interval,
    );
    // Never keeps the process alive; close() sends what is left.
    this.#timer.unref();
  }
}
