import { createHash } from 'node:crypto';
import type pg from 'pg';
import {
  type RateLimiterAbstract,
  RateLimiterMemory,
  RateLimiterPostgres,
  RateLimiterRes,
  type RateLimiterStoreAbstract,
} from 'rate-limiter-flexible';
import { StoreUnavailableError } from '../core/errors.js';
import { withQueryOptions } from '../db/query.js';
import { networkOf, RATE_LIMIT_PREFIXES } from './address.js';
import { TooManyAttemptsError } from './errors.js';

/** One limit: at most `points` failed logins per `duration` seconds. */
export interface Limit {
  points: number;
  /** Window length in seconds. */
  duration: number;
}

/**
 * The failed-login policy. Three counters, each a fixed window, all of which must have room for
 * an attempt to go ahead:
 *
 * "Address" means the client's network: an IPv6 /64, an IPv4 address (see `RATE_LIMIT_PREFIXES`).
 *
 * - `perAccountAddress`: failures for one account (email) from one client address. This is
 *   the tight one (5 per 15 minutes) and it is what stops a single attacker guessing one
 *   account's password, without affecting the account's owner elsewhere.
 * - `perAddress`: failures from one address across all accounts (100 per hour): stops password
 *   spraying from one machine.
 * - `perAccount`: failures for one account from all addresses together (50 per hour), against
 *   distributed guessing. It is deliberately loose (ten times the pair limit) because, when it
 *   trips, it refuses the account's owner too: an attacker has to spread at least 10 addresses
 *   over the account within the hour to lock it, and then only until the window ends.
 *
 * Only failures count: a successful login clears its pair counter and gives its attempt back to
 * the other two. An attempt refused with 429 is not verified and does not feed the looser
 * counters, so a locked-out attacker cannot push the whole account over its limit.
 * Unknown emails count exactly like known ones (nothing to learn from the limits either).
 */
export interface LoginRateLimitPolicy {
  perAccountAddress: Limit;
  perAddress: Limit;
  perAccount: Limit;
  /**
   * Failures from one trusted device (a browser presenting a valid device cookie for the
   * account, see `TrustedDevices`). Such attempts count here instead of `perAccount`, so an
   * attack spread over many addresses cannot lock the owner's own browser out. Default 5 per
   * 15 minutes, like the pair limit.
   */
  perDevice: Limit;
}

export const DEFAULT_LOGIN_RATE_LIMITS: Readonly<LoginRateLimitPolicy> = Object.freeze({
  perAccountAddress: { points: 5, duration: 15 * 60 },
  perAddress: { points: 100, duration: 60 * 60 },
  perAccount: { points: 50, duration: 60 * 60 },
  perDevice: { points: 5, duration: 15 * 60 },
});

/** Options of {@link LoginRateLimiter}. */
export interface LoginRateLimiterOptions {
  /**
   * Keep the counters in PostgreSQL, shared by every app server (the `auth_rate_limits` table of
   * the auth migrations). Without a pool they live in this process's memory (development only).
   */
  pool?: pg.Pool | undefined;
  /** Table for the counters. Default `auth_rate_limits` (created by the auth migrations). */
  tableName?: string;
  /** Override parts of {@link DEFAULT_LOGIN_RATE_LIMITS}. */
  policy?: Partial<LoginRateLimitPolicy> | undefined;
}

/** Which limit refused an attempt. */
export type LimitScope = 'account-ip' | 'ip' | 'account' | 'device';

/** An attempt that was allowed to go ahead; report how it ended. */
export interface LoginAttempt {
  /** The password was right: clear the pair's failures and refund the attempt. */
  succeeded(): Promise<void>;
  /**
   * The attempt ended with no answer about the password (the database failed mid-login): give
   * it back, failures kept. Does nothing once `succeeded()` has run.
   */
  abandoned(): Promise<void>;
}

/** The key part for an email: a short hash, so counters never hold emails (or typos of passwords). */
export function emailKey(normalizedEmail: string): string {
  return createHash('sha256').update(normalizedEmail).digest('base64url').slice(0, 22);
}

/** A refund of one limit's count, worth paying until that count's window has ended. */
interface Refund {
  run(): Promise<unknown>;
  until: number;
}

function refundOf(limiter: RateLimiterAbstract, run: () => Promise<unknown>): Refund {
  return { run, until: Date.now() + limiter.duration * 1000 };
}

/** At most this many refunds are kept for the database's return (see `LoginRateLimiter`). */
const MAX_OWED_REFUNDS = 10_000;

function isLimiterRes(value: unknown): value is RateLimiterRes {
  return value instanceof RateLimiterRes;
}

/**
 * Failed-login limits per account+address, per address and per account (see
 * {@link LoginRateLimitPolicy}), with `rate-limiter-flexible`'s PostgreSQL store.
 */
export class LoginRateLimiter {
  readonly policy: Readonly<LoginRateLimitPolicy>;
  readonly #pair: RateLimiterAbstract;
  readonly #address: RateLimiterAbstract;
  readonly #account: RateLimiterAbstract;
  readonly #device: RateLimiterAbstract;
  /**
   * Refunds that could not be written (the database failed mid-login), paid before the next
   * attempt counts: a failed refund would otherwise stay in the window, and a few of them lock the
   * owner out for its whole length after the database is back.
   */
  #owed: Refund[] = [];

  constructor(options: LoginRateLimiterOptions = {}) {
    this.policy = Object.freeze({ ...DEFAULT_LOGIN_RATE_LIMITS, ...options.policy });
    // Through pgsession's query seam: rate-limiter-flexible names its statements
    // (`auth_rate_limits:rlflx-upsert`), which transaction-mode poolers may not carry.
    const pool = options.pool && withQueryOptions(options.pool);
    const make = (keyPrefix: string, limit: Limit): RateLimiterAbstract => {
      if (!pool) return new RateLimiterMemory({ keyPrefix, points: limit.points, duration: limit.duration });
      const limiter: RateLimiterStoreAbstract = new RateLimiterPostgres({
        storeClient: pool,
        storeType: 'pool',
        tableName: options.tableName ?? 'auth_rate_limits',
        // The auth migrations create the table; the library must not race to create it per limiter.
        tableCreated: true,
        keyPrefix,
        points: limit.points,
        duration: limit.duration,
      });
      return limiter;
    };
    this.#pair = make('login_pair', this.policy.perAccountAddress);
    this.#address = make('login_ip', this.policy.perAddress);
    this.#account = make('login_acct', this.policy.perAccount);
    this.#device = make('login_dev', this.policy.perDevice);
  }

  /**
   * Count a login attempt before verifying the password (counting first keeps parallel requests
   * from slipping past the limit). Throws {@link TooManyAttemptsError} when a limit is reached,
   * StoreUnavailableError when the counters cannot be reached (fail closed: 503).
   */
  async attempt(
    normalizedEmail: string,
    address: string,
    options: { device?: string | null | undefined } = {},
  ): Promise<LoginAttempt> {
    const account = emailKey(normalizedEmail);
    // One client is one network (an IPv6 /64), not one address: see RATE_LIMIT_PREFIXES.
    const client = networkOf(address, RATE_LIMIT_PREFIXES);
    const pairKey = `${account}:${client}`;
    await this.#payOwed();
    const taken: Array<[RateLimiterAbstract, string]> = [];
    const giveBack = () => this.#refund(taken.map(([l, k]) => refundOf(l, () => l.reward(k, 1))));
    const consume = async (limiter: RateLimiterAbstract, key: string, scope: LimitScope) => {
      try {
        await limiter.consume(key, 1);
        taken.push([limiter, key]);
      } catch (err) {
        // Give back what this refused attempt took from the limits before it.
        await giveBack();
        if (isLimiterRes(err)) throw new TooManyAttemptsError(err.msBeforeNext / 1000, scope);
        throw new StoreUnavailableError('login rate limiter unavailable', err);
      }
    };
    await consume(this.#pair, pairKey, 'account-ip');
    await consume(this.#address, client, 'ip');
    // A trusted device (verified by the caller for this account) has a budget of its own in
    // place of the account's, which a distributed attack may have used up.
    const [wide, wideKey, wideScope] = options.device
      ? [this.#device, `${account}:${options.device}`, 'device' as const]
      : [this.#account, account, 'account' as const];
    await consume(wide, wideKey, wideScope);
    let refunded = false;
    return {
      succeeded: async () => {
        refunded = true;
        await this.#refund([
          refundOf(this.#pair, () => this.#pair.delete(pairKey)),
          refundOf(this.#address, () => this.#address.reward(client, 1)),
          refundOf(wide, () => wide.reward(wideKey, 1)),
        ]);
      },
      abandoned: async () => {
        if (refunded) return;
        refunded = true;
        await giveBack();
      },
    };
  }

  /** Run refunds now; those the store refuses are owed (see `#owed`). Never throws. */
  async #refund(refunds: Refund[]): Promise<void> {
    const now = Date.now();
    const failed = await Promise.all(
      refunds
        // Past its window the count it would give back is gone: paying it would grant an extra attempt.
        .filter((refund) => refund.until > now)
        .map((refund) =>
          refund.run().then(
            () => null,
            () => refund,
          ),
        ),
    );
    for (const refund of failed) if (refund) this.#owed.push(refund);
    // Bounded: an outage of hours must not grow memory without end. The oldest go first; their
    // windows are the nearest to ending on their own.
    if (this.#owed.length > MAX_OWED_REFUNDS) this.#owed.splice(0, this.#owed.length - MAX_OWED_REFUNDS);
  }

  /**
   * Pay what earlier refunds still owe, before a new attempt is counted against the same limits.
   * One goes first: while the database is still away, every attempt retrying all of them at once
   * would flood the pool with statements bound to fail.
   */
  async #payOwed(): Promise<void> {
    if (this.#owed.length === 0) return;
    const owed = this.#owed;
    this.#owed = [];
    await this.#refund(owed.slice(0, 1));
    if (this.#owed.length > 0) this.#owed.push(...owed.slice(1));
    else await this.#refund(owed.slice(1));
  }

  /** Forget every counter of an account (an admin unlocking it). */
  async resetAccount(normalizedEmail: string): Promise<void> {
    await this.#account.delete(emailKey(normalizedEmail));
  }
}

/** Options of {@link WindowCounter}. */
export interface WindowCounterOptions {
  /** Keep the counts in PostgreSQL (the `auth_rate_limits` table), shared by every app server. */
  pool?: pg.Pool | undefined;
  /** Table for the counts. Default `auth_rate_limits`. */
  tableName?: string | undefined;
  /** Distinguishes these counts from the login limits' in the shared table. */
  keyPrefix: string;
  /** Window length in seconds (a fixed window, starting at a key's first event). */
  duration: number;
}

/**
 * Counts events per key in fixed windows, in the same store as the login limits. The security
 * notices use it to act on "the 3rd failure in this window" or "the first lockout in this
 * window" exactly once, across app servers and parallel requests: each hit is one atomic upsert
 * and gets its own running count back, so exactly one hit sees any given number.
 */
export class WindowCounter {
  readonly #limiter: RateLimiterAbstract;

  constructor(options: WindowCounterOptions) {
    // Never refuses: a counter, not a limit (rate-limiter-flexible counts the same way either way).
    const points = 2 ** 31 - 1;
    const { keyPrefix, duration } = options;
    this.#limiter = options.pool
      ? new RateLimiterPostgres({
          storeClient: withQueryOptions(options.pool),
          storeType: 'pool',
          tableName: options.tableName ?? 'auth_rate_limits',
          tableCreated: true,
          keyPrefix,
          points,
          duration,
        })
      : new RateLimiterMemory({ keyPrefix, points, duration });
  }

  /** Count one event for `key`: the number of events in the key's current window, this one included. */
  async hit(key: string): Promise<number> {
    try {
      return (await this.#limiter.consume(key, 1)).consumedPoints;
    } catch (err) {
      if (isLimiterRes(err)) return err.consumedPoints;
      throw err;
    }
  }
}
