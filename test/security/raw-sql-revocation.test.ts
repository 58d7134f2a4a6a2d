/**
 * Issue 12, item 6: a session deleted by hand-written SQL (an admin's `DELETE FROM session
 * WHERE user_id = …`, a script, a GDPR erase) used to stay served by every cache for up to
 * `touchAfter` (still served at +60 s). The session table's triggers now announce it: another
 * process with its cache on refuses the cookie at once.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserRepository } from '../../src/auth/index.js';
import { migratedDatabase, PASSWORD, TEST_SECRET } from '../app/harness.js';
import type { TestDatabase } from '../helpers/db.js';
import { Client } from '../helpers/http.js';
import { type ChildApp, spawnApp } from './support.js';

const run = promisify(execFile);
let db: TestDatabase;
let app: ChildApp | undefined;

/** `psql -c sql` when psql is installed (as an operator would), else the same SQL from a plain client. */
async function psql(url: string, sql: string): Promise<void> {
  if (existsSync('/usr/bin/psql')) {
    await run('/usr/bin/psql', [url, '-v', 'ON_ERROR_STOP=1', '-qAt', '-c', sql], { timeout: 10_000 });
    return;
  }
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

beforeAll(async () => {
  db = await migratedDatabase();
  await new UserRepository(db.pool).create({ email: 'erased@example.com', password: PASSWORD });
  app = await spawnApp({ DATABASE_URL: db.url, SESSION_SECRET: TEST_SECRET, LOG_LEVEL: 'warn' });
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});

describe('hand-written SQL against the session table', () => {
  it('a raw DELETE in psql is refused at once by another process with its cache on', async () => {
    const browser = new Client(app!.url);
    const login = await browser.post('/login', { form: { email: 'erased@example.com', password: PASSWORD } });
    expect(login.status).toBe(303);
    const me = await browser.get('/api/me');
    expect(me.status).toBe(200);
    const { id } = (await me.json()) as { id: number };
    // Served from the app's cache now (no SQL): the case that used to outlive the DELETE.
    expect((await browser.get('/api/me')).status).toBe(200);

    await psql(db.url, `DELETE FROM session WHERE user_id = '${id}'`);
    const deleted = performance.now();
    let status = 200;
    while (status === 200 && performance.now() - deleted < 2_000) {
      status = (await browser.get('/api/me')).status;
    }
    const ms = performance.now() - deleted;
    expect(status).toBe(401);
    // Well within the time a pgsession logout takes to reach another server.
    expect(ms).toBeLessThan(500);
  });
});
