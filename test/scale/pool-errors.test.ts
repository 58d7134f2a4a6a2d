/**
 * Issue 14, item 3: a bare `new pg.Pool()` (no 'error' listener) given to pgsession must not
 * crash the process when the database drops its idle connections; pgsession logs one line and
 * warns once that the application should add its own listener.
 */
import { describe, expect, it } from 'vitest';
import { createTestDatabase } from '../helpers/db.js';
import { runToExit } from '../helpers/process.js';

describe("a user's pg.Pool without an 'error' listener", () => {
  it('survives its idle connection being killed: one log line and a one-time warning', async () => {
    const db = await createTestDatabase();
    try {
      const { code, output } = await runToExit(
        process.execPath,
        ['--import', 'tsx', 'test/scale/fixtures/bare-pool.ts'],
        { cwd: process.cwd(), env: { ...process.env, DATABASE_URL: db.url } },
      );
      expect(output).toContain('alive');
      expect(code).toBe(0);
      const lines = output.split('\n');
      expect(lines.filter((l) => l.includes('PGSESSION_POOL_ERROR_LISTENER'))).toHaveLength(1);
      const errors = lines.filter((l) => l.startsWith('pgsession: PostgreSQL pool error:'));
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatch(/terminat/i);
    } finally {
      await db.drop();
    }
  }, 60_000);
});
