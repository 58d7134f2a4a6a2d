import http from 'node:http';
import express from 'express';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { session } from '../../src/adapters/express/middleware.js';
import { kSessionStore, type SessionRecord, type SessionStore } from '../../src/core/store.js';
import { createSessionMetrics, instrumentStore } from '../../src/metrics/index.js';
import { CachedSessionStore } from '../../src/stores/cache/cached-store.js';
import type { InvalidationHandlers, InvalidationSource } from '../../src/stores/cache/types.js';
import { MemoryStore } from '../../src/stores/memory/memory-store.js';
import { Client, listen } from '../helpers/http.js';

const SECRET = 'metrics-test-secret-0123456789abcdefghij';

/** The value of one sample in the Prometheus text format (0 when absent). */
function sample(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

describe('session metrics', () => {
  it('count a login / logout flow through the middleware and time the store calls', async () => {
    const metrics = createSessionMetrics();
    const memory = new MemoryStore();
    const store = instrumentStore(memory, metrics);
    const app = express();
    app.use(
      session({
        secret: SECRET,
        store,
        resave: false,
        saveUninitialized: false,
        rolling: true,
        cookie: { maxAge: 3_600_000 },
        // Throttled as with a database store (the in-process MemoryStore is not, by default).
        touchAfter: '1m',
        onEvent: metrics.onEvent,
      }),
    );
    app.post('/login', async (req, res) => {
      if (req.query.password !== 'right') {
        metrics.recordLogin('failed');
        res.status(401).end();
        return;
      }
      await req.session.regenerate();
      req.session.userId = 1;
      metrics.recordLogin('succeeded');
      res.end();
    });
    app.get('/me', (req, res) => {
      res.json({ userId: req.session.userId ?? null });
    });
    app.post('/logout', async (req, res) => {
      await req.session.destroy();
      res.end();
    });
    const server = await listen(http.createServer(app));
    try {
      const client = new Client(server.url);
      expect((await client.post('/login?password=wrong')).status).toBe(401);
      await client.post('/login?password=right');
      expect(await (await client.get('/me')).json()).toEqual({ userId: 1 });
      await client.get('/me');
      await client.post('/logout');
      metrics.recordLogin('rate-limited');
    } finally {
      await server.close();
    }

    const text = await metrics.registry.metrics();
    expect(sample(text, 'pgsession_sessions_created_total')).toBe(1);
    expect(sample(text, 'pgsession_sessions_renewed_total')).toBe(1);
    expect(sample(text, 'pgsession_sessions_destroyed_total')).toBe(1);
    expect(sample(text, 'pgsession_sessions_expired_total{reason="idle"}')).toBe(0);
    // Two authenticated requests within touchAfter of the login: both touches throttled.
    expect(sample(text, 'pgsession_touches_total{result="skipped"}')).toBe(2);
    expect(sample(text, 'pgsession_touches_total{result="written"}')).toBe(0);
    expect(sample(text, 'pgsession_logins_total{outcome="succeeded"}')).toBe(1);
    expect(sample(text, 'pgsession_logins_total{outcome="failed"}')).toBe(1);
    expect(sample(text, 'pgsession_logins_total{outcome="rate_limited"}')).toBe(1);

    // The store calls the engine made: create (login), get (two /me + logout), destroy (logout).
    const count = (method: string) =>
      sample(text, `pgsession_store_query_duration_seconds_count{method="${method}",outcome="ok"}`);
    expect(count('create')).toBe(1);
    expect(count('get')).toBe(3);
    expect(count('destroy')).toBe(1);
    expect(
      sample(text, 'pgsession_store_query_duration_seconds_sum{method="get",outcome="ok"}'),
    ).toBeGreaterThan(0);
    await memory.close();
  });

  it('expose every metric by name in the registry text', async () => {
    const metrics = createSessionMetrics();
    const text = await metrics.registry.metrics();
    for (const name of [
      'pgsession_sessions_created_total',
      'pgsession_sessions_renewed_total',
      'pgsession_sessions_destroyed_total',
      'pgsession_sessions_expired_total',
      'pgsession_invalid_cookies_total',
      'pgsession_device_bound_total',
      'pgsession_device_unbound_requests_total',
      'pgsession_sessions_pruned_total',
      'pgsession_sessions_saved_total',
      'pgsession_sessions_lost_total',
      'pgsession_touches_total',
      'pgsession_logins_total',
      'pgsession_store_query_duration_seconds',
      'pgsession_cache_hits_total',
      'pgsession_cache_misses_total',
      'pgsession_cache_evictions_total',
      'pgsession_cache_invalidations_total',
      'pgsession_cache_invalidation_lag_seconds',
      'pgsession_cache_entries',
      'pgsession_cache_listening',
    ]) {
      expect(text).toContain(`# TYPE ${name} `);
    }
    expect(metrics.registry.contentType).toContain('text/plain');
  });

  it('use a registry of their own by default, so two instances do not clash', async () => {
    const a = createSessionMetrics();
    const b = createSessionMetrics();
    expect(a.registry).not.toBe(b.registry);
    a.onEvent({ type: 'created', key: 'k', userId: null });
    expect(sample(await a.registry.metrics(), 'pgsession_sessions_created_total')).toBe(1);
    expect(sample(await b.registry.metrics(), 'pgsession_sessions_created_total')).toBe(0);

    // A shared registry works with distinct prefixes.
    const registry = new Registry();
    createSessionMetrics({ registry, prefix: 'app1_session_' });
    createSessionMetrics({ registry, prefix: 'app2_session_' });
    const text = await registry.metrics();
    expect(text).toContain('app1_session_sessions_created_total');
    expect(text).toContain('app2_session_sessions_created_total');
  });

  it('count expiries, saves, lost writes and written touches from engine events', async () => {
    const metrics = createSessionMetrics();
    metrics.onEvent({ type: 'expired', key: 'k', userId: '1', reason: 'idle' });
    metrics.onEvent({ type: 'expired', key: 'k', userId: '1', reason: 'absolute' });
    metrics.onEvent({ type: 'saved', key: 'k', userId: '1' });
    metrics.onEvent({ type: 'lost', key: 'k', userId: '1' });
    metrics.onEvent({ type: 'touched', key: 'k' });
    const text = await metrics.registry.metrics();
    expect(sample(text, 'pgsession_sessions_expired_total{reason="idle"}')).toBe(1);
    expect(sample(text, 'pgsession_sessions_expired_total{reason="absolute"}')).toBe(1);
    expect(sample(text, 'pgsession_sessions_saved_total')).toBe(1);
    expect(sample(text, 'pgsession_sessions_lost_total')).toBe(1);
    expect(sample(text, 'pgsession_touches_total{result="written"}')).toBe(1);
  });

  it('count session cookies that name no session, by reason, through the middleware', async () => {
    const metrics = createSessionMetrics();
    const memory = new MemoryStore();
    const app = express();
    app.use(session({ secret: SECRET, store: memory, saveUninitialized: false, onEvent: metrics.onEvent }));
    app.post('/login', (req, res) => {
      req.session.userId = 1;
      res.end();
    });
    app.get('/', (_req, res) => res.end());
    const server = await listen(http.createServer(app));
    try {
      const client = new Client(server.url);
      await client.post('/login');
      const valid = client.jar.get('connect.sid')!;
      const send = (value: string) => client.get('/', { headers: { cookie: `connect.sid=${value}` } });
      await send(valid);
      // Forged, tampered, unsigned: bad signature, three times.
      await send(`s%3A${'a'.repeat(43)}.${'b'.repeat(43)}`);
      await send(`${valid.slice(0, -2)}xx`);
      await send('plain-id');
      // A genuine cookie whose session is gone (logged out, revoked): unknown.
      memory.clear();
      await send(valid);
    } finally {
      await server.close();
    }
    const text = await metrics.registry.metrics();
    expect(sample(text, 'pgsession_invalid_cookies_total{reason="signature"}')).toBe(3);
    expect(sample(text, 'pgsession_invalid_cookies_total{reason="unknown"}')).toBe(1);
    await memory.close();
  });

  it('time failing store calls as errors and count pruned sessions', async () => {
    const metrics = createSessionMetrics();
    const record: SessionRecord = {
      data: { cookie: { originalMaxAge: null } },
      expiresAt: 0,
      createdAt: 0,
      lastActiveAt: 0,
      userId: null,
      version: 0,
    };
    const failing: SessionStore = {
      get: async () => {
        throw new Error('database down');
      },
      create: async () => {},
      update: async () => record,
      touch: async () => true,
      destroy: async () => {},
      prune: async () => 7,
    };
    const store = metrics.instrumentStore(failing);
    await expect(store.get('k')).rejects.toThrow('database down');
    expect(await store.prune!()).toBe(7);
    metrics.recordPruned(3);
    const text = await metrics.registry.metrics();
    expect(sample(text, 'pgsession_store_query_duration_seconds_count{method="get",outcome="error"}')).toBe(
      1,
    );
    expect(sample(text, 'pgsession_store_query_duration_seconds_count{method="prune",outcome="ok"}')).toBe(1);
    expect(sample(text, 'pgsession_sessions_pruned_total')).toBe(10);
  });

  it('instrument class-based stores without breaking private fields, identity or other members', async () => {
    class Store implements SessionStore {
      #rows = new Map<string, SessionRecord>();
      readonly label = 'mine';
      async get(key: string) {
        return this.#rows.get(key) ?? null;
      }
      async create(key: string, record: SessionRecord) {
        this.#rows.set(key, record);
      }
      async update() {
        return null;
      }
      async touch() {
        return false;
      }
      async destroy(key: string) {
        this.#rows.delete(key);
      }
      size() {
        return this.#rows.size;
      }
    }
    const metrics = createSessionMetrics();
    const store = instrumentStore(new Store(), metrics);
    expect(store).toBeInstanceOf(Store);
    expect(store.label).toBe('mine');
    await store.create('k', {
      data: { cookie: { originalMaxAge: null } },
      expiresAt: 1,
      createdAt: 0,
      lastActiveAt: 0,
      userId: null,
      version: 0,
    });
    expect(store.size()).toBe(1);
    expect(await store.get('k')).not.toBeNull();

    // A store exposing its engine face (MemoryStore, PgStore) keeps its express-session face.
    const memory = new MemoryStore();
    const wrapped = instrumentStore(memory, metrics);
    expect(wrapped).toBeInstanceOf(MemoryStore);
    expect(wrapped[kSessionStore]).not.toBe(memory[kSessionStore]);
    await new Promise<void>((resolve, reject) =>
      wrapped.set('sid', { cookie: { originalMaxAge: null } }, (err) => (err ? reject(err) : resolve())),
    );
    expect(await wrapped[kSessionStore].get('missing')).toBeNull();
    const text = await metrics.registry.metrics();
    expect(sample(text, 'pgsession_store_query_duration_seconds_count{method="create",outcome="ok"}')).toBe(
      1,
    );
    expect(sample(text, 'pgsession_store_query_duration_seconds_count{method="get",outcome="ok"}')).toBe(2);
    await memory.close();
  });

  it("export a cache's stats() on scrape, summed over sources, and stop when asked", async () => {
    const metrics = createSessionMetrics();
    // The shape of CachedSessionStore.stats() and PgInvalidationListener.stats().
    const cache = {
      counters: {
        hits: 10,
        misses: 3,
        freshReads: 1,
        bypasses: 0,
        evictions: 2,
        invalidations: 4,
        flushes: 1,
        racesSkipped: 0,
        entries: 5,
        bytes: 2048,
        listening: true,
      },
      stats() {
        return this.counters;
      },
    };
    const listener = {
      stats: () => ({
        listening: true,
        connects: 1,
        failures: 0,
        notifications: 6,
        ownSkipped: 2,
        backendPid: 4242,
      }),
    };
    const stop = metrics.observeStore(cache);
    metrics.observeStore(listener);
    let text = await metrics.registry.metrics();
    expect(sample(text, 'pgsession_cache_hits_total')).toBe(10);
    expect(sample(text, 'pgsession_cache_misses_total')).toBe(3);
    expect(sample(text, 'pgsession_cache_evictions_total')).toBe(2);
    expect(sample(text, 'pgsession_cache_invalidations_total{direction="received"}')).toBe(4);
    expect(sample(text, 'pgsession_cache_fresh_reads_total')).toBe(1);
    expect(sample(text, 'pgsession_cache_flushes_total')).toBe(1);
    expect(sample(text, 'pgsession_cache_entries')).toBe(5);
    expect(sample(text, 'pgsession_cache_bytes')).toBe(2048);
    expect(sample(text, 'pgsession_cache_listening')).toBe(1);
    expect(sample(text, 'pgsession_cache_listener_notifications_total')).toBe(6);
    expect(sample(text, 'pgsession_cache_listener_connects_total')).toBe(1);
    expect(text).not.toContain('4242');

    cache.counters = { ...cache.counters, hits: 25, listening: false };
    text = await metrics.registry.metrics();
    expect(sample(text, 'pgsession_cache_hits_total')).toBe(25);
    expect(sample(text, 'pgsession_cache_listening')).toBe(0);

    stop();
    text = await metrics.registry.metrics();
    expect(sample(text, 'pgsession_cache_hits_total')).toBe(0);
    expect(sample(text, 'pgsession_cache_listener_notifications_total')).toBe(6);
  });

  it('find stats() on the engine face of a store that exposes one (a PgStore with its cache)', async () => {
    const metrics = createSessionMetrics();
    const memory = new MemoryStore();
    const face = Object.assign(Object.create(memory[kSessionStore]) as SessionStore, {
      stats: () => ({ hits: 4, misses: 1 }),
    });
    metrics.observeStore({ [kSessionStore]: face });
    metrics.observeStore(memory); // no stats(): ignored
    const text = await metrics.registry.metrics();
    expect(sample(text, 'pgsession_cache_hits_total')).toBe(4);
    expect(sample(text, 'pgsession_cache_misses_total')).toBe(1);
    await memory.close();
  });

  it("read the real CachedSessionStore's stats(): hits, misses, invalidations, entries", async () => {
    const metrics = createSessionMetrics();
    const memory = new MemoryStore();
    let handlers: InvalidationHandlers | undefined;
    const source: InvalidationSource = {
      listening: true,
      subscribe(h) {
        handlers = h;
        return () => {};
      },
      close: async () => {},
    };
    const cache = new CachedSessionStore(memory[kSessionStore], source);
    metrics.observeStore(cache);
    const store = metrics.instrumentStore(cache);
    await store.create('k', {
      data: { cookie: { originalMaxAge: null } },
      expiresAt: Date.now() + 60_000,
      createdAt: Date.now(),
      lastActiveAt: Date.now(),
      userId: null,
      version: 0,
    });
    await store.get('k'); // miss (or hit, if create primed the cache)
    await store.get('k'); // hit
    await store.get('other'); // miss
    handlers?.onInvalidate(['k']);
    const stats = cache.stats();
    const text = await metrics.registry.metrics();
    expect(sample(text, 'pgsession_cache_hits_total')).toBe(stats.hits);
    expect(sample(text, 'pgsession_cache_misses_total')).toBe(stats.misses);
    expect(stats.hits).toBeGreaterThanOrEqual(1);
    expect(stats.misses).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'pgsession_cache_invalidations_total{direction="received"}')).toBe(
      stats.invalidations,
    );
    expect(stats.invalidations).toBe(1);
    expect(sample(text, 'pgsession_cache_entries')).toBe(stats.entries);
    expect(sample(text, 'pgsession_cache_listening')).toBe(1);
    expect(sample(text, 'pgsession_store_query_duration_seconds_count{method="get",outcome="ok"}')).toBe(3);
    await cache.close();
    await memory.close();
  });

  it('observe invalidation lag', async () => {
    const metrics = createSessionMetrics();
    metrics.observeInvalidationLag(0.003);
    metrics.observeInvalidationLag(-1); // clock skew: ignored
    const text = await metrics.registry.metrics();
    expect(sample(text, 'pgsession_cache_invalidation_lag_seconds_count')).toBe(1);
    expect(sample(text, 'pgsession_cache_invalidation_lag_seconds_bucket{le="0.005"}')).toBe(1);
  });
});
