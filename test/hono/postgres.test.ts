import http, { type Server } from 'node:http';
import { createAdaptorServer } from '@hono/node-server';
import express from 'express';
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SessionOptions, session } from '../../src/adapters/express/middleware.js';
import { pgsessionHono } from '../../src/adapters/hono/index.js';
import { hashId } from '../../src/core/id.js';
import { unsign } from '../../src/core/signature.js';
import { PgStore } from '../../src/stores/postgres/pg-store.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { Client, listen } from '../helpers/http.js';

const SECRET = 'hono-postgres-test-secret-0123456789abcdef';

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

describe('Hono middleware on the PostgreSQL store', () => {
  it('logs in, shares the row with an Express app, and logs out (row deleted)', async () => {
    const options = {
      secret: SECRET,
      store,
      resave: false,
      saveUninitialized: false,
      cookie: { maxAge: 3_600_000 },
    } satisfies SessionOptions;

    const app = new Hono();
    app.use(pgsessionHono(options));
    app.post('/login', async (c) => {
      await c.get('session').regenerate();
      c.get('session').userId = 7;
      return c.json({ ok: true });
    });
    app.post('/logout', async (c) => {
      await c.get('session').destroy();
      return c.json({ ok: true });
    });
    const honoServer = await listen(createAdaptorServer({ fetch: app.fetch }) as Server);
    closers.push(honoServer.close);
    const client = new Client(honoServer.url);

    const reference = express();
    reference.use(session(options));
    reference.get('/me', (req, res) => {
      res.json({ userId: req.session.userId ?? null });
    });
    const server = await listen(http.createServer(reference));
    closers.push(server.close);

    expect((await client.post('/login')).status).toBe(200);
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
  });
});
