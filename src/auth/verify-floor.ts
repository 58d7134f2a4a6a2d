import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Makes every password verification take as long as the slowest kind the site has, so the time
 * of a failed login does not tell an unknown email from an account, nor an account with a
 * legacy hash from one with a current hash.
 *
 * Why padding rather than re-wrapping legacy hashes: a bcrypt hash can only be checked by
 * running bcrypt at its own cost (re-wrapping it in argon2id at import adds argon2's cost on
 * top, it cannot remove bcrypt's), and bcrypt-12 costs four times bcrypt-10. So the verifying
 * itself cannot cost the same for every account; the answer can wait until it does. The wait
 * is a timer, not work: it costs latency on the fast paths, never CPU, so it gives an attacker
 * no extra lever against the server.
 *
 * Costs are learnt per *kind* of hash (scheme and cost parameters): an estimate of the time of
 * the computation itself (queueing for a hashing slot is excluded: it is the same for every
 * kind), updated by every verification. `PasswordHasher.calibrate` measures the kinds a user
 * table holds before the first login, so the first login of an account of a slow kind is not
 * the one that gives it away.
 */
export class VerifyFloor {
  readonly #estimates = new Map<string, number>();
  readonly #maxMs: number;
  #floor = 0;

  /** @param maxMs - the longest a verification is ever padded to (a pathological imported cost must not stall every login). */
  constructor(maxMs: number) {
    this.#maxMs = maxMs;
  }

  /** The time every verification is padded to now, in ms. */
  get floorMs(): number {
    return this.#floor;
  }

  /** Whether this kind of hash has been measured yet. */
  knows(kind: string): boolean {
    return this.#estimates.has(kind);
  }

  /** Record the computation time of one verification of `kind`. */
  record(kind: string, ms: number): void {
    const previous = this.#estimates.get(kind);
    // A moving average: one slow verification (a GC pause, a busy machine) moves it a little.
    const estimate = previous === undefined ? ms : previous * 0.8 + ms * 0.2;
    this.#estimates.set(kind, estimate);
    let floor = 0;
    for (const value of this.#estimates.values()) floor = Math.max(floor, value);
    this.#floor = Math.min(floor, this.#maxMs);
  }

  /** Wait until `startedAt` (a `performance.now()` time) plus the floor. */
  async pad(startedAt: number): Promise<void> {
    const wait = this.#floor - (performance.now() - startedAt);
    if (wait > 1) await sleep(wait);
  }
}
