import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SessionOptions, session } from '../../src/adapters/express/middleware.js';
import { pgsessionFastify } from '../../src/adapters/fastify/index.js';
import { hashId } from '../../src/core/id.js';
import { unsign } from '../../src/core/signature.js';
import { createSessionMetrics, instrumentStore } from '../../src/metrics/index.js';
import { PgStore } from '../../src/stores/postgres/pg-store.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { Client, listen } from '../helpers/http.js';

const SECRET = 'fastify-postgres-test-secret-0123456789abcdef';

let db: TestDatabase;
let store: PgStore;
const closers: Array<() => Promise<void>> = [];

beforeAll(async () => {
  db = await createTestDatabase();
  store = new PgStore({ pool: db.pool, pruneSessionInterval: false });
});

afterAll(async () => {
  for (const close of closers.reverse()) await close();
  await store?.close();
  await db?.drop();
});

function idOf(cookieValue: string): string {
  const id = unsign(decodeURIComponent(cookieValue).slice(2), [SECRET]);
  expect(id).not.toBe(false);
  return id as string;
}

describe('Fastify plugin on the PostgreSQL store', () => {
  it('logs in, shares the row with an Express app, and logs out (row deleted)', async () => {
    const metrics = createSessionMetrics();
    const options: SessionOptions = {
      secret: SECRET,
      store: instrumentStore(store, metrics),
      resave: false,
      saveUninitialized: false,
      cookie: { maxAge: 3_600_000 },
      onEvent: metrics.onEvent,
    };

    const app = Fastify();
    await app.register(pgsessionFastify, options);
    app.post('/login', async (request) => {
      await request.session.regenerate();
      request.session.userId = 7;
      return { ok: true };
    });
    app.post('/logout', async (request) => {
      await request.session.destroy();
      return { ok: true };
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    closers.push(() => app.close());
    const client = new Client(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}`);

    const reference = express();
    reference.use(session(options));
    reference.get('/me', (req, res) => {
      res.json({ userId: req.session.userId ?? null });
    });
    const server = await listen(http.createServer(reference));
    closers.push(server.close);

    const login = await client.post('/login');
    expect(login.status).toBe(200);
    const id = idOf(client.jar.get('connect.sid')!);
    const { rows } = await db.pool.query('SELECT sid, sess, user_id FROM session');
    expect(rows).toHaveLength(1);
    expect(rows[0].sid).toBe(hashId(id));
    expect(rows[0].sess).toMatchObject({ userId: 7, cookie: { originalMaxAge: 3_600_000 } });
    expect(String(rows[0].user_id)).toBe('7');

    const onExpress = await fetch(`${server.url}/me`, { headers: { cookie: client.cookieHeader() } });
    expect(await onExpress.json()).toEqual({ userId: 7 });

    const logout = await client.post('/logout');
    expect(logout.headers.getSetCookie()[0]).toMatch(/Expires=Thu, 01 Jan 1970/);
    expect((await db.pool.query('SELECT 1 FROM session WHERE sid = $1', [hashId(id)])).rowCount).toBe(0);

    const text = await metrics.registry.metrics();
    expect(text).toMatch(/pgsession_sessions_created_total 1\n/);
    expect(text).toMatch(/pgsession_sessions_destroyed_total 1\n/);
    expect(text).toMatch(/pgsession_store_query_duration_seconds_count\{method="create",outcome="ok"\} 1\n/);
  });
});
