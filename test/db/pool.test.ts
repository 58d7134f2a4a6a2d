import net from 'node:net';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ConfigError } from '../../src/core/errors.js';
import { isDatabaseUnavailable, StatementTimeoutError } from '../../src/db/errors.js';
import { createPool, POOL_DEFAULTS } from '../../src/db/pool.js';
import { queryOptionsOf } from '../../src/db/query.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(async () => {
  await db?.drop();
});

describe('createPool', () => {
  it('sets bounded timeouts and an application name', async () => {
    const pool = createPool(db.url);
    try {
      expect(pool.options).toMatchObject({
        max: 10,
        connectionTimeoutMillis: 5_000,
        idleTimeoutMillis: 30_000,
        query_timeout: 20_000,
        application_name: 'pgsession',
      });
      // No statement_timeout startup parameter: transaction-mode poolers refuse the connection.
      expect(pool.options.statement_timeout).toBeUndefined();
      expect(queryOptionsOf(pool)).toEqual({ preparedStatements: true, statementTimeoutMs: 15_000 });
      const { rows } = await pool.query("SELECT current_setting('application_name') AS app");
      expect(rows).toEqual([{ app: 'pgsession' }]);
    } finally {
      await pool.end();
    }
  });

  it('cancels a statement on the server when statementTimeout passes', async () => {
    const name = `timeout-test-${process.pid}`;
    const pool = createPool(db.url, { statementTimeout: 300, application_name: name });
    try {
      const started = Date.now();
      const err = await pool.query('SELECT pg_sleep(10)').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StatementTimeoutError);
      expect(err).toMatchObject({ code: 'PGSESSION_STATEMENT_TIMEOUT', status: 503 });
      expect((err as Error).cause).toMatchObject({ code: '57014' });
      expect(isDatabaseUnavailable(err)).toBe(true);
      expect(Date.now() - started).toBeLessThan(3_000);
      // Cancelled on the server, not just abandoned by the client.
      const { rows } = await db.pool.query(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND state = 'active'",
        [name],
      );
      expect(rows[0].n).toBe(0);
      // The same limit on a lent client (a transaction), and the pool keeps working.
      const client = await pool.connect();
      try {
        await expect(client.query('SELECT pg_sleep(10)')).rejects.toBeInstanceOf(StatementTimeoutError);
      } finally {
        client.release(true);
      }
      expect((await pool.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
      // A statement with its own query_timeout (migrations) is not held to the default.
      await expect(
        pool.query({ text: 'SELECT pg_sleep(0.5)', query_timeout: 5_000 } as pg.QueryConfig),
      ).resolves.toBeDefined();
    } finally {
      await pool.end();
    }
  });

  it('sends no named statement with preparedStatements: false', async () => {
    const prepared = async (pool: pg.Pool) => {
      const client = await pool.connect();
      try {
        await client.query({ name: 'pgsession_probe', text: 'SELECT $1::int AS n', values: [1] });
        const { rows } = await client.query('SELECT name FROM pg_prepared_statements');
        return rows.map((r: { name: string }) => r.name);
      } finally {
        client.release(true);
      }
    };
    const on = createPool(db.url);
    const off = createPool(db.url, { preparedStatements: false });
    try {
      expect(await prepared(on)).toEqual(['pgsession_probe']);
      expect(await prepared(off)).toEqual([]);
      // Callback and promise forms both still answer.
      const rows = await new Promise((resolve, reject) =>
        off.query({ name: 'x', text: 'SELECT 2 AS n' }, (err: Error | undefined, res: pg.QueryResult) =>
          err ? reject(err) : resolve(res.rows),
        ),
      );
      expect(rows).toEqual([{ n: 2 }]);
    } finally {
      await on.end();
      await off.end();
    }
  });

  it('rejects a bad preparedStatements or statementTimeout with ConfigError', () => {
    expect(() => createPool(db.url, { statementTimeout: -1 })).toThrow(ConfigError);
    expect(() => createPool(db.url, { preparedStatements: 'no' as never })).toThrow(ConfigError);
  });

  it('lets options override the defaults', async () => {
    const pool = createPool(db.url, { max: 2, statement_timeout: 100, application_name: 'custom' });
    try {
      expect(pool.options).toMatchObject({ max: 2, statement_timeout: 100, application_name: 'custom' });
      await expect(pool.query('SELECT pg_sleep(2)')).rejects.toMatchObject({ code: '57014' });
    } finally {
      await pool.end();
    }
    expect(POOL_DEFAULTS.max).toBe(10);
  });

  it('gives up on a server that never answers instead of waiting forever', async () => {
    const silent = net.createServer(() => {}); // accepts, never speaks
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as net.AddressInfo;
    const pool = createPool(`postgres://x@127.0.0.1:${port}/x`, { connectionTimeoutMillis: 200 });
    try {
      const started = Date.now();
      await expect(pool.query('SELECT 1')).rejects.toThrow(/timeout/i);
      expect(Date.now() - started).toBeLessThan(3_000);
    } finally {
      await pool.end();
      silent.close();
    }
  });

  it('reports an idle client error instead of crashing', async () => {
    const onError = vi.fn();
    const name = `pool-test-${process.pid}`;
    const pool = createPool(db.url, { application_name: name, onError });
    try {
      await pool.query('SELECT 1'); // leaves one idle client
      await db.pool.query(
        'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1',
        [name],
      );
      await vi.waitFor(() => expect(onError).toHaveBeenCalledOnce());
      expect(onError.mock.calls[0]?.[0]).toBeInstanceOf(Error);
      // The pool recovers with a new connection.
      expect((await pool.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
    } finally {
      await pool.end();
    }
  });

  it('writes idle client errors to stderr by default', async () => {
    const write = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const name = `pool-test-stderr-${process.pid}`;
    const pool = createPool(db.url, { application_name: name });
    try {
      await pool.query('SELECT 1');
      await db.pool.query(
        'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1',
        [name],
      );
      await vi.waitFor(() =>
        expect(write).toHaveBeenCalledWith(
          expect.stringMatching(/^pgsession: idle PostgreSQL client error: /),
        ),
      );
    } finally {
      write.mockRestore();
      await pool.end();
    }
  });
});
