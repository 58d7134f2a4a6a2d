import { spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import express from 'express';
import type pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { session } from '../../src/adapters/express/middleware.js';
import { hashId } from '../../src/core/id.js';
import { kSessionStore, type SessionStore } from '../../src/core/store.js';
import { createPool } from '../../src/db/pool.js';
import { createSessionMetrics } from '../../src/metrics/index.js';
import {
  CachedPostgresSessionStore,
  CachedSessionStore,
  PgInvalidationListener,
  type PostgresCacheOptions,
} from '../../src/stores/cache/index.js';
import { PgStore } from '../../src/stores/postgres/pg-store.js';
import { PostgresSessionStore } from '../../src/stores/postgres/session-store.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { Client, listen } from '../helpers/http.js';
import { sessionChange as change, HOUR, sessionRecord as record } from '../helpers/records.js';

// Two "servers" (two pools, two caches, two listeners) on one database, as two app processes.

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const TABLE = 'sessions';
const FAST: PostgresCacheOptions = { healthCheckIntervalMs: 200, healthCheckTimeoutMs: 500 };

let db: TestDatabase;
const closers: Array<() => Promise<void>> = [];

interface Server {
  store: CachedPostgresSessionStore;
  pool: pg.Pool;
  /** Statements sent through this server's pool so far. */
  sql(): number;
}

/** A store on its own pool, with every statement counted; listening before it is returned. */
async function server(cache: PostgresCacheOptions = {}): Promise<Server> {
  const pool = createPool(db.url, { max: 4 });
  let statements = 0;
  const query = pool.query.bind(pool) as (...args: unknown[]) => unknown;
  pool.query = ((...args: unknown[]) => {
    statements++;
    return query(...args);
  }) as typeof pool.query;
  const store = new CachedPostgresSessionStore({ pool, tableName: TABLE, cache: { ...FAST, ...cache } });
  closers.push(async () => {
    await store.close();
    await pool.end();
  });
  await store.ready();
  await store.get('warm-up'); // the listener starts on first use
  expect(await store.listener.waitUntilListening(5000)).toBe(true);
  return { store, pool, sql: () => statements };
}

let seq = 0;
const newKey = () => hashId(`session-${process.pid}-${seq++}-${Math.random()}`);

/** Poll `fn` until it returns true; the elapsed milliseconds. */
async function until(fn: () => Promise<boolean>, timeoutMs = 5000): Promise<number> {
  const started = performance.now();
  while (!(await fn())) {
    if (performance.now() - started > timeoutMs) throw new Error(`not within ${timeoutMs} ms`);
    await new Promise((r) => setImmediate(r));
  }
  return performance.now() - started;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** Admin connection to end backends with. */
async function terminate(pid: number | null): Promise<void> {
  expect(pid).toBeGreaterThan(0);
  await db.pool.query('SELECT pg_terminate_backend($1)', [pid]);
}

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(async () => {
  for (const close of closers.splice(0).reverse()) await close().catch(() => {});
  await db?.drop();
});

describe('two stores on one database', () => {
  let a: Server;
  let b: Server;

  beforeAll(async () => {
    a = await server();
    b = await server();
  });

  beforeEach(async () => {
    // Wait out listener restarts of earlier tests.
    expect(await a.store.listener.waitUntilListening(5000)).toBe(true);
    expect(await b.store.listener.waitUntilListening(5000)).toBe(true);
  });

  it('serves a loaded session with no SQL at all', async () => {
    const key = newKey();
    await b.store.create(key, record());
    const before = a.sql();
    expect((await a.store.get(key))?.userId).toBe('u1');
    expect(a.sql()).toBe(before + 1);
    for (let i = 0; i < 100; i++) expect((await a.store.get(key))?.userId).toBe('u1');
    expect(a.sql()).toBe(before + 1);
    // Its own writes keep it cached: no re-read after an update (its own notification is skipped).
    await a.store.update(key, change({ theme: 'dark' }));
    const afterUpdate = a.sql();
    expect((await a.store.get(key))?.data.theme).toBe('dark');
    expect(a.sql()).toBe(afterUpdate);
    await vi.waitFor(() => expect(a.store.stats().ownSkipped).toBeGreaterThan(0));
  });

  it('sees a destroy on the other server within milliseconds', async () => {
    const latencies: number[] = [];
    for (let i = 0; i < 50; i++) {
      const key = newKey();
      await b.store.create(key, record());
      await a.store.get(key);
      expect(await a.store.get(key)).not.toBeNull(); // cached
      await b.store.destroy(key); // resolves once committed
      latencies.push(await until(async () => (await a.store.get(key)) === null, 2000));
    }
    latencies.sort((x, y) => x - y);
    const p50 = percentile(latencies, 50);
    const p99 = percentile(latencies, 99);
    console.log(
      `revocation seen by the other store after COMMIT: p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms, ` +
        `max ${latencies.at(-1)!.toFixed(2)} ms (n=${latencies.length})`,
    );
    expect(p99).toBeLessThan(1000);
  });

  it('sees a data change made on the other server', async () => {
    const key = newKey();
    await a.store.create(key, record('u1', { plan: 'free' }));
    expect((await b.store.get(key))?.data.plan).toBe('free');
    await a.store.update(key, change({ plan: 'pro' }));
    await until(async () => (await b.store.get(key))?.data.plan === 'pro');
  });

  it('evicts every session of a user revoked on the other server, except the kept one', async () => {
    const keys = [newKey(), newKey(), newKey()];
    for (const key of keys) await b.store.create(key, record('alice'));
    for (const key of keys) await a.store.get(key);
    expect(await b.store.destroyByUser('alice', keys[2])).toBe(2);
    await until(async () => (await a.store.get(keys[0]!)) === null && (await a.store.get(keys[1]!)) === null);
    expect((await a.store.get(keys[2]!))?.userId).toBe('alice');
  });

  it('flushes and reads through when its listener is dropped, then caches again', async () => {
    const key = newKey();
    const doomed = newKey();
    await b.store.create(key, record());
    await b.store.create(doomed, record());
    await a.store.get(key);
    await a.store.get(doomed);
    const flushes = a.store.stats().flushes;
    await terminate(a.store.listener.backendPid);
    await vi.waitFor(() => expect(a.store.stats().flushes).toBeGreaterThan(flushes), { timeout: 2000 });
    // Whether or not it is back yet, nothing stale can be served: the cache was emptied.
    await b.store.destroy(doomed);
    expect(await a.store.get(doomed)).toBeNull();
    expect(await a.store.listener.waitUntilListening(5000)).toBe(true);
    await a.store.get(key);
    const before = a.sql();
    await a.store.get(key);
    expect(a.sql()).toBe(before);
  });

  it('reads every request through while its listener cannot reach the server', async () => {
    const proxy = await freezableProxy(new URL(db.url));
    const c = await server({ listenConnection: proxy.url });
    try {
      const key = newKey();
      const doomed = newKey();
      await b.store.create(key, record());
      await b.store.create(doomed, record());
      await c.store.get(key);
      await c.store.get(doomed);
      proxy.freeze(); // a silent partition: only the health check can tell
      await vi.waitFor(() => expect(c.store.cache.listening).toBe(false), { timeout: 3000 });
      expect(c.store.stats().entries).toBe(0);
      // Down: every read goes to the table, so a change nobody could announce is seen at once.
      await b.store.destroy(doomed);
      expect(await c.store.get(doomed)).toBeNull();
      const before = c.sql();
      for (let i = 0; i < 3; i++) await c.store.get(key);
      expect(c.sql()).toBe(before + 3);
      expect(c.store.stats().bypasses).toBeGreaterThanOrEqual(4);
      proxy.thaw();
      expect(await c.store.listener.waitUntilListening(5000)).toBe(true);
      await c.store.get(key);
      const after = c.sql();
      await c.store.get(key);
      expect(c.sql()).toBe(after);
    } finally {
      await proxy.close();
    }
  });

  it('does not cache a read that an invalidation overtook', async () => {
    // A hand-built cache whose reads are held until the other server's change has been heard.
    const pool = createPool(db.url, { max: 2 });
    const table = new PostgresSessionStore({ pool, tableName: TABLE });
    const listener = new PgInvalidationListener({ connection: db.url, ...FAST });
    let hold: Promise<void> | undefined;
    let selected: (() => void) | undefined;
    const slow: SessionStore = {
      ...bindAll(table),
      get: async (key, options) => {
        const result = await table.get(key, options);
        selected?.();
        await hold;
        return result;
      },
    };
    const cache = new CachedSessionStore(slow, listener);
    closers.push(async () => {
      await cache.close();
      await pool.end();
    });
    expect(await listener.waitUntilListening(5000)).toBe(true);

    const key = newKey();
    await b.store.create(key, record('u1', { v: 'old' }));
    let release!: () => void;
    hold = new Promise((r) => {
      release = r;
    });
    const hasSelected = new Promise<void>((r) => {
      selected = r;
    });
    const read = cache.get(key);
    const invalidations = cache.stats().invalidations;
    await hasSelected; // the SELECT has run and seen the old data
    selected = undefined;
    await b.store.update(key, change({ v: 'new' }));
    await vi.waitFor(() => expect(cache.stats().invalidations).toBeGreaterThan(invalidations));
    release();
    hold = undefined;
    expect((await read)?.data.v).toBe('old');
    expect(cache.stats()).toMatchObject({ entries: 0, racesSkipped: 1 });
    expect((await cache.get(key))?.data.v).toBe('new');
    expect(cache.stats().entries).toBe(1);
  });
});

describe('PgStore wiring', () => {
  it('caches by default; `cache: false` and raw ids do not', async () => {
    const stores = [
      new PgStore({ pool: db.pool, tableName: TABLE, pruneSessionInterval: false }),
      new PgStore({ pool: db.pool, tableName: TABLE, pruneSessionInterval: false, cache: false }),
      new PgStore({ pool: db.pool, tableName: TABLE, pruneSessionInterval: false, hashIds: false }),
    ];
    try {
      expect(stores[0]![kSessionStore]).toBeInstanceOf(CachedPostgresSessionStore);
      // The cache composes: it wraps the table rather than being one.
      expect((stores[0]![kSessionStore] as CachedPostgresSessionStore).table).toBeInstanceOf(
        PostgresSessionStore,
      );
      expect(stores[1]![kSessionStore]).toBeInstanceOf(PostgresSessionStore);
      expect(stores[1]![kSessionStore]).not.toBeInstanceOf(CachedPostgresSessionStore);
      expect(stores[2]![kSessionStore]).not.toBeInstanceOf(CachedPostgresSessionStore);
      expect(() => new PgStore({ pool: db.pool, cache: {}, notifyChannel: false })).toThrow(/notifications/);
    } finally {
      for (const s of stores) await s.close();
    }
  });

  it('exports its counters through the metrics module', async () => {
    const s = await server();
    const key = newKey();
    await s.store.create(key, record());
    await s.store.get(key);
    await s.store.get(key);
    const metrics = createSessionMetrics();
    metrics.observeStore({ [kSessionStore]: s.store });
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/pgsession_cache_hits_total \d+/);
    expect(text).toMatch(/pgsession_cache_listener_connects_total 1/);
    expect(text).not.toMatch(/backendpid/i);
  });

  it('announces changes with the cache off, so caching processes still hear them', async () => {
    const caching = await server();
    const plain = new PgStore({ pool: db.pool, tableName: TABLE, pruneSessionInterval: false, cache: false });
    try {
      await plain.set('plain-sid', { cookie: { originalMaxAge: HOUR }, userId: 'u9' });
      const key = hashId('plain-sid');
      expect((await caching.store.get(key))?.userId).toBe('u9');
      await plain.destroy('plain-sid');
      await until(async () => (await caching.store.get(key)) === null);
    } finally {
      await plain.close();
    }
  });

  it('keeps the express-session face coherent: set on one store is seen by the other', async () => {
    const one = new PgStore({ pool: db.pool, tableName: TABLE, pruneSessionInterval: false, cache: FAST });
    const two = new PgStore({ pool: db.pool, tableName: TABLE, pruneSessionInterval: false, cache: FAST });
    try {
      await one.set('face-sid', { cookie: { originalMaxAge: HOUR }, n: 1 });
      await one.get('face-sid');
      await two.get('face-sid');
      const listening = (s: PgStore) => (s[kSessionStore] as CachedPostgresSessionStore).listener;
      expect(await listening(one).waitUntilListening(5000)).toBe(true);
      expect(await listening(two).waitUntilListening(5000)).toBe(true);
      expect(await one.get('face-sid')).toMatchObject({ n: 1 });
      expect(await two.get('face-sid')).toMatchObject({ n: 1 });
      await one.set('face-sid', { cookie: { originalMaxAge: HOUR }, n: 2 }); // an UPDATE-only replace
      expect(await one.get('face-sid')).toMatchObject({ n: 2 });
      await until(async () => (await two.get('face-sid'))?.n === 2);
      await two.clear();
      expect(await two.get('face-sid')).toBeNull();
      await until(async () => (await one.get('face-sid')) === null);
    } finally {
      await one.close();
      await two.close();
    }
  });

  it('two apps with the seed’s config: steady-state requests run no SQL; logout on one is refused on the other', async () => {
    const apps = await Promise.all([app(), app()]);
    try {
      const [one, two] = apps as [App, App];
      const user = new Client(one.url);
      expect((await user.get('/login')).status).toBe(302);
      const onTwo = new Client(two.url);
      for (const [k, v] of user.jar) onTwo.jar.set(k, v);
      expect(await (await onTwo.get('/dashboard')).text()).toBe('hi 42');
      const before = two.sql();
      for (let i = 0; i < 20; i++) expect((await onTwo.get('/dashboard')).status).toBe(200);
      expect(two.sql()).toBe(before);
      const loggedOutAt = performance.now();
      await user.get('/logout');
      await until(async () => (await onTwo.get('/dashboard')).status === 401, 2000);
      console.log(
        `logout on one app refused by the other after ${(performance.now() - loggedOutAt).toFixed(1)} ms`,
      );
    } finally {
      for (const a of apps) await a.close();
    }
  });
});

describe('process exit', () => {
  it('close() lets the process exit with no handles left', async () => {
    const script = `
      import { PgStore } from './src/stores/postgres/pg-store.ts';
      import { kSessionStore } from './src/core/store.ts';
      const store = new PgStore({ conString: process.env.URL, tableName: '${TABLE}' });
      await store.get('anything');
      if (!(await store[kSessionStore].listener.waitUntilListening(5000))) process.exit(3);
      await store.close();
      // Sockets being closed by the pool's end() may take a tick to go.
      await new Promise((r) => setTimeout(r, 100));
      console.log('done', process.getActiveResourcesInfo().filter((r) => !/TTYWrap|PipeWrap/.test(r)).join(','));
    `;
    const started = Date.now();
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: repoRoot,
      env: { ...process.env, URL: db.url },
    });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      out += d;
    });
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(out.trim()).toMatch(/^done\s*$/);
    expect(code).toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});

// ---- helpers ----

interface App {
  url: string;
  sql(): number;
  close(): Promise<void>;
}

/** The seed's app: express + session with rolling, resave false, saveUninitialized false. */
async function app(): Promise<App> {
  const pool = createPool(db.url, { max: 4 });
  let statements = 0;
  const query = pool.query.bind(pool) as (...args: unknown[]) => unknown;
  pool.query = ((...args: unknown[]) => {
    statements++;
    return query(...args);
  }) as typeof pool.query;
  const store = new PgStore({ pool, tableName: TABLE, pruneSessionInterval: false, cache: FAST });
  await store[kSessionStore].get('warm-up');
  expect(await (store[kSessionStore] as CachedPostgresSessionStore).listener.waitUntilListening(5000)).toBe(
    true,
  );
  const web = express();
  web.use(
    session({
      store,
      secret: 'a-long-random-secret-for-testing-1234567890',
      resave: false,
      saveUninitialized: false,
      rolling: true,
      name: 'sessionId',
      cookie: { maxAge: 7 * 24 * HOUR, httpOnly: true, sameSite: 'lax' },
    }),
  );
  web.get('/login', (req, res) => {
    req.session.regenerate(() => {
      (req.session as unknown as { userId: number }).userId = 42;
      res.redirect('/dashboard');
    });
  });
  web.get('/dashboard', (req, res) => {
    const userId = (req.session as unknown as { userId?: number }).userId;
    if (!userId) {
      res.status(401).send('no');
      return;
    }
    res.send(`hi ${userId}`);
  });
  web.get('/logout', (req, res) => {
    req.session.destroy(() => res.redirect('/'));
  });
  const srv = await listen(http.createServer(web));
  return {
    url: srv.url,
    sql: () => statements,
    close: async () => {
      await srv.close();
      await store.close();
      await pool.end();
    },
  };
}

function bindAll(store: PostgresSessionStore): SessionStore {
  return {
    get: store.get.bind(store),
    create: store.create.bind(store),
    update: store.update.bind(store),
    touch: store.touch.bind(store),
    destroy: store.destroy.bind(store),
  };
}

/** A TCP proxy that can silently stop forwarding (a partition only a health check can see). */
async function freezableProxy(target: URL) {
  let frozen = false;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    if (frozen) {
      client.destroy();
      return;
    }
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.on('data', (d) => frozen || upstream.write(d));
    upstream.on('data', (d) => frozen || client.write(d));
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = new URL(target);
  url.hostname = '127.0.0.1';
  url.port = String((server.address() as net.AddressInfo).port);
  const dropAll = () => {
    for (const s of sockets) s.destroy();
  };
  return {
    url: url.toString(),
    freeze: () => {
      frozen = true;
    },
    thaw: () => {
      frozen = false;
      dropAll();
    },
    close: async () => {
      dropAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
