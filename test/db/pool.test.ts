import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createPool, POOL_DEFAULTS } from '../../src/db/pool.js';
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
        query_timeout: 15_000,
        statement_timeout: 15_000,
        application_name: 'pgsession',
      });
      const { rows } = await pool.query(
        "SELECT current_setting('statement_timeout') AS st, current_setting('application_name') AS app",
      );
      expect(rows).toEqual([{ st: '15s', app: 'pgsession' }]);
    } finally {
      await pool.end();
    }
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
