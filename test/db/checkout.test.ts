import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { watchCheckedOut } from '../../src/db/checkout.js';
import { createPool } from '../../src/db/index.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db?.drop();
});

describe('a client checked out for several statements', () => {
  it('a server that drops it between statements is no uncaught error; the pool discards it', async () => {
    const pool = createPool(db.url, { max: 2 });
    try {
      const client = await pool.connect();
      const watch = watchCheckedOut(client);
      const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      // What a failover or a restart does to an idle connection in the app's hands. Only the
      // watch listens for 'error': without it, this is an uncaught exception (vitest fails the run).
      const ended = new Promise((resolve) => client.once('end', resolve));
      await db.pool.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
      await ended;
      expect(watch.error()).toBeInstanceOf(Error);
      watch.done();
      client.release(watch.error());
      expect(pool.totalCount).toBe(0);
      // The pool lends a fresh, working connection afterwards.
      expect((await pool.query<{ one: number }>('SELECT 1 AS one')).rows[0]!.one).toBe(1);
    } finally {
      await pool.end();
    }
  });
});
