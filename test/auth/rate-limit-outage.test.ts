/**
 * The failed-login limits across a database outage: an attempt the database failed mid-way is
 * given back once the database is back, so retrying through an outage never ends in a lockout;
 * a real failure still counts.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TooManyAttemptsError } from '../../src/auth/errors.js';
import { LoginRateLimiter } from '../../src/auth/rate-limit.js';
import { StoreUnavailableError } from '../../src/core/errors.js';
import { migratedDatabase } from '../app/harness.js';
import type { TestDatabase } from '../helpers/db.js';

let db: TestDatabase;
beforeAll(async () => {
  db = await migratedDatabase();
});
afterAll(async () => {
  await db?.drop();
});

/** A pool on the test database whose connections can be refused, as during a failover. */
function flakyPool() {
  const pool = new pg.Pool({ connectionString: db.url, max: 2 });
  const connect = pool.connect.bind(pool);
  const state = { down: false };
  Object.defineProperty(pool, 'connect', {
    value: (...args: Parameters<typeof connect>) =>
      state.down
        ? Promise.reject(
            Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }),
          )
        : connect(...args),
  });
  return { pool, state };
}

const policy = {
  perAccountAddress: { points: 2, duration: 900 },
  perAddress: { points: 100, duration: 3600 },
  perAccount: { points: 50, duration: 3600 },
};

describe('failed-login limits across a database outage', () => {
  it('attempts abandoned while the database was down are refunded once it is back: no lockout', async () => {
    const { pool, state } = flakyPool();
    try {
      const limiter = new LoginRateLimiter({ pool, policy });
      // Five logins in a row each count, then lose the database before answering (the refund
      // cannot be written), with the database back for the next try: more than the pair's 2.
      for (let i = 0; i < 5; i++) {
        const attempt = await limiter.attempt('owner@example.com', '198.51.100.7');
        state.down = true;
        await attempt.abandoned();
        state.down = false;
      }
      // The owner's next try is counted, not refused, and succeeds.
      const attempt = await limiter.attempt('owner@example.com', '198.51.100.7');
      await attempt.succeeded();
    } finally {
      await pool.end();
    }
  });

  it('a refund lost with the database is paid by the next attempt on any account, in the shared table', async () => {
    const { pool, state } = flakyPool();
    try {
      const limiter = new LoginRateLimiter({ pool, policy });
      const first = await limiter.attempt('second@example.com', '198.51.100.8');
      const second = await limiter.attempt('second@example.com', '198.51.100.8');
      state.down = true;
      await first.abandoned();
      await second.abandoned();
      state.down = false;
      // Another server sharing the table sees the pair at its limit until this server pays.
      const other = new LoginRateLimiter({ pool: db.pool, policy });
      await expect(other.attempt('second@example.com', '198.51.100.8')).rejects.toBeInstanceOf(
        TooManyAttemptsError,
      );
      // Any attempt on this server pays what it owes first.
      await (await limiter.attempt('someone-else@example.com', '198.51.100.9')).abandoned();
      await (await other.attempt('second@example.com', '198.51.100.8')).succeeded();
    } finally {
      await pool.end();
    }
  });

  it('failed logins still count, and an attempt during the outage is refused with a 503-class error', async () => {
    const { pool, state } = flakyPool();
    try {
      const limiter = new LoginRateLimiter({ pool, policy });
      // Wrong passwords: the attempts are neither refunded nor abandoned.
      await limiter.attempt('guessed@example.com', '198.51.100.10');
      await limiter.attempt('guessed@example.com', '198.51.100.10');
      state.down = true;
      await expect(limiter.attempt('guessed@example.com', '198.51.100.10')).rejects.toBeInstanceOf(
        StoreUnavailableError,
      );
      state.down = false;
      await expect(limiter.attempt('guessed@example.com', '198.51.100.10')).rejects.toMatchObject({
        code: 'PGSESSION_RATE_LIMITED',
        status: 429,
      });
    } finally {
      await pool.end();
    }
  });
});
