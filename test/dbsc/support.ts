/**
 * The apps the DBSC tests drive: the Express middleware on a PgStore (its cache on, as by
 * default) with a clock the test moves, `/login` (regenerate + userId), `/me`, `/logout`,
 * `/revoke` (every session of the user), and the events the engine reported.
 */
import http from 'node:http';
import express from 'express';
import type pg from 'pg';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { session } from '../../src/adapters/express/middleware.js';
import type { DeviceBoundOptions } from '../../src/core/device-bound.js';
import type { SessionEvent } from '../../src/core/engine.js';
import { kSessionStore } from '../../src/core/store.js';
import { PgStore } from '../../src/stores/postgres/index.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { listen } from '../helpers/http.js';

/**
 * A private database for the test file, and the closers each test's servers and stores push
 * (run after each test, last first).
 */
export function dbscSuite(): { readonly db: TestDatabase; closers: Array<() => Promise<void>> } {
  let db: TestDatabase | undefined;
  const closers: Array<() => Promise<void>> = [];
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });
  return {
    get db() {
      if (!db) throw new Error('the test database is made in beforeAll');
      return db;
    },
    closers,
  };
}

export const SECRET = 'dbsc-test-secret-0123456789abcdefghijkl';
export const MINUTE = 60_000;

/** A clock the test moves (engine and store read it). */
export interface Clock {
  now: number;
}

export interface DbscApp {
  url: string;
  store: PgStore;
  events: SessionEvent[];
  close(): Promise<void>;
}

export async function dbscApp(
  pool: pg.Pool,
  clock: Clock,
  deviceBound: DeviceBoundOptions,
  closers: Array<() => Promise<void>>,
): Promise<DbscApp> {
  const store = new PgStore({ pool, pruneSessionInterval: false, now: () => clock.now });
  const events: SessionEvent[] = [];
  const app = express();
  app.use(
    session({
      secret: SECRET,
      store,
      resave: false,
      saveUninitialized: false,
      cookie: { maxAge: 24 * 60 * MINUTE, sameSite: 'lax' },
      idleTimeout: 2 * 60 * MINUTE,
      now: () => clock.now,
      deviceBound,
      onEvent: (event) => events.push(event),
    }),
  );
  app.post('/login', async (req, res) => {
    await req.session.regenerate();
    req.session.userId = Number(req.query.user ?? 42);
    res.json({ ok: true });
  });
  app.get('/me', (req, res) => res.json({ userId: req.session?.userId ?? null }));
  app.post('/visit', (req, res) => {
    req.session.visits = Number(req.session.visits ?? 0) + 1;
    res.json({ visits: req.session.visits });
  });
  app.post('/logout', async (req, res) => {
    await new Promise<void>((resolve, reject) =>
      req.session.destroy((err) => (err ? reject(err) : resolve())),
    );
    res.json({ ok: true });
  });
  const server = await listen(http.createServer(app));
  const close = async () => {
    await server.close();
    await store.close();
  };
  closers.push(close);
  return { url: server.url, store, events, close };
}

/** The session row's device binding (null when unbound), read from the table. */
export async function storedDevice(pool: pg.Pool, key: string): Promise<Record<string, unknown> | null> {
  const { rows } = await pool.query<{ device: Record<string, unknown> | null }>(
    'SELECT device FROM session WHERE sid = $1',
    [key],
  );
  if (rows.length === 0) throw new Error('no such session row');
  return rows[0]!.device;
}

/** Revoke every session of `userId` the way an admin tool does, through the store. */
export function revokeUser(store: PgStore, userId: string): Promise<number> {
  return store[kSessionStore].destroyByUser(userId);
}

/** The events of one type. */
export function eventsOf<T extends SessionEvent['type']>(
  events: SessionEvent[],
  type: T,
): Array<Extract<SessionEvent, { type: T }>> {
  return events.filter((e): e is Extract<SessionEvent, { type: T }> => e.type === type);
}
