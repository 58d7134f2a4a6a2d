/**
 * Saves of *different* sessions made in the same turn of the event loop are sent as one
 * statement. On a busy server many requests finish in one turn (each socket read that completes
 * a request runs its handler, and the session is saved as the response ends), and each save as
 * its own statement would cost its own round trip, its own socket write and its own commit;
 * together they cost one of each. A save waits for nothing but the end of the current turn
 * (`setImmediate`), so an idle server sends each save at once, alone.
 *
 * Every caller still gets its own outcome: its record, or null when its session is gone. When the
 * combined statement fails because of what one item holds (a data or integrity error, or a
 * deadlock with another writer: the statement rolled back, nothing was written) the items are
 * sent again one by one, so one bad session cannot fail the others' saves. Any other failure
 * (the connection, a timeout) is every item's: the statement may or may not have committed, so
 * it is not repeated.
 */

interface Pending<I, R> {
  item: I;
  resolve(value: R): void;
  reject(err: unknown): void;
}

export interface SaveBatchOptions<I, R> {
  /** Send one item alone. */
  one(item: I): Promise<R>;
  /** Send several items in one statement; the results in the items' order. */
  many(items: readonly I[]): Promise<R[]>;
  /** Most items per statement. */
  max: number;
}

/** SQLSTATE classes after which the statement certainly wrote nothing and one item may be to blame. */
const RETRY_ALONE = /^(22|23|40)/;

export class SaveBatch<I, R> {
  #queue: Pending<I, R>[] = [];
  #scheduled = false;
  readonly #inFlight = new Set<Promise<void>>();

  constructor(private readonly options: SaveBatchOptions<I, R>) {}

  /** Send `item` with the other items queued in this turn of the event loop. */
  run(item: I): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  /** Resolves once every item queued so far has been answered. */
  async settled(): Promise<void> {
    while (this.#scheduled || this.#inFlight.size > 0) {
      if (this.#scheduled) await new Promise<void>((resolve) => setImmediate(resolve));
      else await Promise.all([...this.#inFlight]);
    }
  }

  #flush(): void {
    this.#scheduled = false;
    const queue = this.#queue;
    this.#queue = [];
    for (let i = 0; i < queue.length; i += this.options.max) {
      const sending = this.#send(queue.slice(i, i + this.options.max));
      this.#inFlight.add(sending);
      void sending.finally(() => this.#inFlight.delete(sending));
    }
  }

  async #send(chunk: Pending<I, R>[]): Promise<void> {
    if (chunk.length === 1) return this.#alone(chunk[0]!);
    let results: R[];
    try {
      results = await this.options.many(chunk.map((p) => p.item));
    } catch (err) {
      if (RETRY_ALONE.test(String((err as { code?: unknown } | null)?.code ?? ''))) {
        await Promise.all(chunk.map((p) => this.#alone(p)));
      } else {
        for (const p of chunk) p.reject(err);
      }
      return;
    }
    for (const [i, p] of chunk.entries()) p.resolve(results[i]!);
  }

  async #alone(p: Pending<I, R>): Promise<void> {
    try {
      p.resolve(await this.options.one(p.item));
    } catch (err) {
      p.reject(err);
    }
  }
}
