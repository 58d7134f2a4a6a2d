import type { SessionChange } from '../../core/store.js';

/**
 * Saves of one session that arrive while an earlier save of it is still running are combined
 * into one statement. They would wait for that save's row lock anyway, and then commit one at a
 * time; combined, they cost one commit. Each caller gets the record as stored after the
 * combined save, which includes its change.
 *
 * The combined change applies the queued changes in arrival order, key by key, exactly as
 * running them one after another would: a later `set` of a key wins, an `unset` after a `set`
 * removes it. Times and owner are the last change's; `data` (the whole session, used only by
 * stores that can only replace) is the last change's too, as a sequence of replaces would leave.
 */
export function combineChanges(changes: readonly SessionChange[]): SessionChange {
  if (changes.length === 1) return changes[0]!;
  const set: Record<string, unknown> = {};
  const unset = new Set<string>();
  for (const change of changes) {
    for (const key of change.unset) {
      delete set[key];
      unset.add(key);
    }
    for (const [key, value] of Object.entries(change.set)) {
      set[key] = value;
      unset.delete(key);
    }
  }
  const last = changes[changes.length - 1]!;
  return {
    set,
    unset: [...unset],
    data: last.data,
    expiresAt: Math.max(...changes.map((c) => c.expiresAt)),
    lastActiveAt: Math.max(...changes.map((c) => c.lastActiveAt)),
    userId: last.userId,
    baseVersion: changes[0]!.baseVersion,
  };
}

interface Waiter<R> {
  change: SessionChange;
  resolve(value: R): void;
  reject(err: unknown): void;
}

/** One queue per key: at most one save of a session in flight per process, the rest combined. */
export class SaveCombiner<R> {
  readonly #queues = new Map<string, Waiter<R>[]>();

  /** @param copy - gives each waiter its own copy of the shared result (records belong to their caller). */
  constructor(private readonly copy: (value: R) => R) {}

  /** Run `save` for `change`, combined with the other changes of `key` queued meanwhile. */
  run(key: string, change: SessionChange, save: (change: SessionChange) => Promise<R>): Promise<R> {
    const queue = this.#queues.get(key);
    if (queue) {
      return new Promise<R>((resolve, reject) => queue.push({ change, resolve, reject }));
    }
    this.#queues.set(key, []);
    const first = save(change);
    void first.then(
      () => this.#next(key, save),
      () => this.#next(key, save),
    );
    return first;
  }

  #next(key: string, save: (change: SessionChange) => Promise<R>): void {
    const waiting = this.#queues.get(key) ?? [];
    if (waiting.length === 0) {
      this.#queues.delete(key);
      return;
    }
    this.#queues.set(key, []);
    const combined = save(combineChanges(waiting.map((w) => w.change)));
    combined.then(
      (value) => {
        for (const w of waiting) w.resolve(this.copy(value));
      },
      (err: unknown) => {
        for (const w of waiting) w.reject(err);
      },
    );
    void combined.then(
      () => this.#next(key, save),
      () => this.#next(key, save),
    );
  }
}
