/**
 * Prometheus metrics for pgsession, on `prom-client`.
 *
 * ```ts
 * import { createSessionMetrics, instrumentStore } from 'pgsession/metrics';
 *
 * const metrics = createSessionMetrics();
 * const store = instrumentStore(new PgStore({ pool }), metrics);
 * app.use(session({ secret, store, onEvent: metrics.onEvent }));
 * metrics.observeStore(store); // cache hits / misses / evictions, when the store keeps a cache
 * app.get('/metrics', async (_req, res) => {
 *   res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
 * });
 * ```
 *
 * @module
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { SessionEvent } from '../core/engine.js';
import { type HasSessionStore, kSessionStore, type SessionStore } from '../core/store.js';
import { keepNativeMark } from '../stores/engine-face.js';

/** Options of {@link createSessionMetrics}. */
export interface SessionMetricsOptions {
  /**
   * Where the metrics are registered. Default: a new `Registry` (not prom-client's global one),
   * so two instances never clash. Two instances sharing a registry need different `prefix`es.
   */
  registry?: Registry;
  /** Prepended to every metric name. Default `pgsession_`. */
  prefix?: string;
  /** Bucket bounds (seconds) of the store latency histogram. Default 0.5 ms … 2.5 s. */
  storeLatencyBuckets?: readonly number[];
  /** Bucket bounds (seconds) of the invalidation lag histogram. Default 1 ms … 5 s. */
  invalidationLagBuckets?: readonly number[];
}

/** What the auth layer reports for each login attempt. */
export type LoginOutcome = 'succeeded' | 'failed' | 'rate-limited';

/**
 * Anything that reports cache counters: the session cache's and the invalidation listener's
 * `stats()` (`CachedSessionStore`, `PgInvalidationListener`). Keys are matched without regard to
 * case, `_` or `-`; numbers and booleans are read, anything else is ignored:
 *
 * | key | metric |
 * |---|---|
 * | `hits`, `misses`, `evictions`, `flushes`, `bypasses`, `freshReads`, `racesSkipped` | `cache_<key>_total` (counters, snake_case) |
 * | `invalidations` (received), `invalidationsReceived`, `invalidationsSent` | `cache_invalidations_total{direction}` |
 * | `notifications`, `ownSkipped`, `connects`, `failures` (the listener's) | `cache_listener_<key>_total` |
 * | `entries` (or `size`, `length`) | `cache_entries` (gauge) |
 * | `bytes` (or `calculatedSize`, `sizeBytes`) | `cache_bytes` (gauge) |
 * | `listening` | `cache_listening` (gauge: 1 when every source that reports it is listening) |
 * | any other number (ids such as `backendPid` excepted) | `cache_stat{stat="<key>"}` (gauge) |
 *
 * Counters are the sources' running totals, summed over the observed sources.
 */
export interface CacheStatsSource {
  /** Current counters; called on every scrape, so it must be cheap and must not throw. */
  stats(): object;
}

/** The store method names whose latency {@link instrumentStore} records. */
export type StoreMethod = Exclude<keyof SessionStore, symbol>;

/** The metrics of one app, and the hooks that feed them. Every method is bound: pass it around freely. */
export interface SessionMetrics {
  /** The registry holding these metrics; serve `await registry.metrics()` as `registry.contentType`. */
  readonly registry: Registry;
  /** The metric name prefix in use. */
  readonly prefix: string;
  /**
   * Feed an engine event; pass as the middleware's `onEvent` (or call it from yours). Counts
   * created, renewed, destroyed, expired, saved and lost sessions, touches written vs skipped,
   * and session cookies that named no session (`invalid_cookies_total{reason}`).
   */
  onEvent(event: SessionEvent): void;
  /** Count a login attempt: call it from the login handler / auth layer. */
  recordLogin(outcome: LoginOutcome): void;
  /**
   * Count sessions deleted by pruning done outside an instrumented store (e.g. a store's own
   * background pruner, or the CLI). `prune()` through {@link instrumentStore} is counted already.
   */
  recordPruned(count: number): void;
  /** Record one store call's duration (what {@link instrumentStore} does for each call). */
  observeStoreCall(method: string, seconds: number, outcome: 'ok' | 'error'): void;
  /** Record how long an invalidation took from being announced to being applied here. */
  observeInvalidationLag(seconds: number): void;
  /**
   * Export a cache's `stats()` on each scrape. Accepts the source itself, a store whose engine
   * face (`[kSessionStore]`) has `stats()`, or anything else (ignored until it has `stats()`).
   * Several sources are summed. Returns a function that stops observing this source.
   */
  observeStore(store: CacheStatsSource | HasSessionStore | SessionStore): () => void;
  /** Same as the standalone {@link instrumentStore}, bound to these metrics. */
  instrumentStore<S extends SessionStore | HasSessionStore>(store: S): S;
}

const STORE_METHODS: ReadonlySet<string> = new Set<StoreMethod>([
  'get',
  'create',
  'update',
  'touch',
  'destroy',
  'listByUser',
  'destroyByUser',
  'prune',
  'close',
]);

const DEFAULT_STORE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const DEFAULT_LAG_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** A counter read from `stats()`: metric name suffix (after the prefix), help, and labels. */
interface CacheCounterSpec {
  metric: string;
  help: string;
  labels?: Readonly<Record<string, string>>;
}

const CACHE_COUNTERS: ReadonlyMap<string, CacheCounterSpec> = new Map<string, CacheCounterSpec>([
  ['hits', { metric: 'cache_hits_total', help: 'Session loads served from the in-process cache.' }],
  ['misses', { metric: 'cache_misses_total', help: 'Session loads that had to read the database.' }],
  [
    'evictions',
    { metric: 'cache_evictions_total', help: 'Cached sessions dropped to stay within the cache bounds.' },
  ],
  [
    'flushes',
    {
      metric: 'cache_flushes_total',
      help: 'Whole-cache flushes (invalidation listener down or up, clear()).',
    },
  ],
  [
    'bypasses',
    {
      metric: 'cache_bypasses_total',
      help: 'Calls sent to the database because the invalidation listener was not listening.',
    },
  ],
  [
    'freshreads',
    { metric: 'cache_fresh_reads_total', help: 'Reads that bypassed the cache on purpose (expiry checks).' },
  ],
  [
    'racesskipped',
    {
      metric: 'cache_races_skipped_total',
      help: 'Reads not cached because their key was invalidated while they were in flight.',
    },
  ],
  [
    'invalidations',
    {
      metric: 'cache_invalidations_total',
      help: 'Session keys invalidated by cross-server notifications, sent and received.',
      labels: { direction: 'received' },
    },
  ],
  [
    'invalidationsreceived',
    {
      metric: 'cache_invalidations_total',
      help: 'Session keys invalidated by cross-server notifications, sent and received.',
      labels: { direction: 'received' },
    },
  ],
  [
    'invalidationssent',
    {
      metric: 'cache_invalidations_total',
      help: 'Session keys invalidated by cross-server notifications, sent and received.',
      labels: { direction: 'sent' },
    },
  ],
  [
    'notifications',
    {
      metric: 'cache_listener_notifications_total',
      help: 'Invalidation notifications received on the channel (own ones included).',
    },
  ],
  [
    'ownskipped',
    {
      metric: 'cache_listener_own_skipped_total',
      help: 'Invalidation notifications skipped because this process sent them.',
    },
  ],
  [
    'connects',
    { metric: 'cache_listener_connects_total', help: 'Successful LISTENs of the invalidation listener.' },
  ],
  [
    'failures',
    {
      metric: 'cache_listener_failures_total',
      help: 'Times the invalidation listener lost its connection or failed to establish one.',
    },
  ],
]);

const CACHE_GAUGES: ReadonlyMap<string, 'entries' | 'bytes'> = new Map([
  ['entries', 'entries'],
  ['size', 'entries'],
  ['length', 'entries'],
  ['bytes', 'bytes'],
  ['calculatedsize', 'bytes'],
  ['sizebytes', 'bytes'],
] as const);

/** Numbers in `stats()` that are identifiers, not measurements. */
const IGNORED_STATS: ReadonlySet<string> = new Set(['backendpid', 'pid', 'nodeid']);

function normalizeKey(key: string): string {
  return key.replace(/[-_\s]/g, '').toLowerCase();
}

function hasStats(value: unknown): value is CacheStatsSource {
  return (
    typeof value === 'object' && value !== null && typeof (value as { stats?: unknown }).stats === 'function'
  );
}

function statsSourceOf(store: object): CacheStatsSource | null {
  if (hasStats(store)) return store;
  const face = (store as Partial<HasSessionStore>)[kSessionStore];
  return hasStats(face) ? face : null;
}

/** Every observed source's cache stats, combined. */
interface CacheTotals {
  /** Counter values by metric name, then by serialized label set. */
  counters: Map<string, Map<string, { labels: Readonly<Record<string, string>>; value: number }>>;
  gauges: { entries: number | null; bytes: number | null; listening: boolean | null };
  other: Map<string, number>;
}

/**
 * Create pgsession's metrics: session lifecycle counters, touches written vs skipped, logins,
 * store latency, and cache counters. Nothing is collected until you feed it (`onEvent`,
 * `recordLogin`, `instrumentStore`, `observeStore`).
 */
export function createSessionMetrics(options: SessionMetricsOptions = {}): SessionMetrics {
  const registry = options.registry ?? new Registry();
  const prefix = options.prefix ?? 'pgsession_';
  const registers = [registry];

  const sessions = (what: string, help: string) =>
    new Counter({ name: `${prefix}sessions_${what}_total`, help, registers });
  const created = sessions('created', 'Sessions created (first saved).');
  const renewed = sessions('renewed', 'Session ids regenerated (login, privilege change).');
  const destroyed = sessions('destroyed', 'Sessions destroyed by the app (logout).');
  const saved = sessions('saved', 'Changes written to existing sessions.');
  const lost = sessions(
    'lost',
    'Writes to sessions destroyed meanwhile by another request or server (the destroy won).',
  );
  const pruned = sessions('pruned', 'Expired sessions deleted by pruning.');
  const expired = new Counter({
    name: `${prefix}sessions_expired_total`,
    help: 'Sessions found expired on use (idle or absolute timeout) and deleted.',
    labelNames: ['reason'] as const,
    registers,
  });
  const invalidCookies = new Counter({
    name: `${prefix}invalid_cookies_total`,
    help: 'Requests whose session cookie named no session: a bad signature (forged, tampered, old secret) or an unknown session (logged out, revoked, pruned). A burst is an attack signal.',
    labelNames: ['reason'] as const,
    registers,
  });
  const deviceEvents = new Counter({
    name: `${prefix}device_bound_total`,
    help: 'Device-bound sessions (DBSC): keys registered, bound cookies refreshed, proofs refused.',
    labelNames: ['event'] as const,
    registers,
  });
  const unboundRequests = new Counter({
    name: `${prefix}device_unbound_requests_total`,
    help: 'Requests with the cookie of a device-bound session but no valid bound cookie (missing, invalid, expired), served (reported) or refused: a copied cookie, or a browser that failed to refresh.',
    labelNames: ['reason', 'action'] as const,
    registers,
  });
  const touches = new Counter({
    name: `${prefix}touches_total`,
    help: 'Activity writes: written to the store, or skipped by touch throttling.',
    labelNames: ['result'] as const,
    registers,
  });
  const logins = new Counter({
    name: `${prefix}logins_total`,
    help: 'Login attempts by outcome.',
    labelNames: ['outcome'] as const,
    registers,
  });
  const storeLatency = new Histogram({
    name: `${prefix}store_query_duration_seconds`,
    help: 'Duration of session store calls, by method and outcome.',
    labelNames: ['method', 'outcome'] as const,
    buckets: [...(options.storeLatencyBuckets ?? DEFAULT_STORE_BUCKETS)],
    registers,
  });
  const invalidationLag = new Histogram({
    name: `${prefix}cache_invalidation_lag_seconds`,
    help: 'Time from an invalidation being announced to it being applied in this process.',
    buckets: [...(options.invalidationLagBuckets ?? DEFAULT_LAG_BUCKETS)],
    registers,
  });

  for (const reason of ['idle', 'absolute']) expired.inc({ reason }, 0);
  for (const reason of ['signature', 'unknown']) invalidCookies.inc({ reason }, 0);
  for (const event of ['registered', 'refreshed', 'refused']) deviceEvents.inc({ event }, 0);
  for (const result of ['written', 'skipped']) touches.inc({ result }, 0);
  for (const outcome of ['succeeded', 'failed', 'rate_limited']) logins.inc({ outcome }, 0);

  // ---- cache stats: read on scrape (stats() is cheap by contract; each metric reads it) ----
  const sources = new Set<object>();
  const readTotals = (): CacheTotals => {
    const next: CacheTotals = {
      counters: new Map(),
      gauges: { entries: null, bytes: null, listening: null },
      other: new Map(),
    };
    for (const store of sources) {
      const source = statsSourceOf(store);
      if (!source) continue;
      let stats: object;
      try {
        stats = source.stats();
      } catch {
        continue;
      }
      if (typeof stats !== 'object' || stats === null) continue;
      for (const [key, value] of Object.entries(stats)) {
        const norm = normalizeKey(key);
        if (norm === 'listening' && typeof value === 'boolean') {
          next.gauges.listening = (next.gauges.listening ?? true) && value;
          continue;
        }
        if (typeof value !== 'number' || !Number.isFinite(value) || IGNORED_STATS.has(norm)) continue;
        const counter = CACHE_COUNTERS.get(norm);
        const gauge = CACHE_GAUGES.get(norm);
        if (counter) {
          const labels = counter.labels ?? {};
          const id = JSON.stringify(labels);
          let series = next.counters.get(counter.metric);
          if (!series) {
            series = new Map();
            next.counters.set(counter.metric, series);
          }
          const prev = series.get(id);
          series.set(id, { labels, value: (prev?.value ?? 0) + value });
        } else if (gauge) {
          next.gauges[gauge] = (next.gauges[gauge] ?? 0) + value;
        } else {
          next.other.set(key, (next.other.get(key) ?? 0) + value);
        }
      }
    }
    return next;
  };

  const cacheCounters = new Map<string, { help: string; labelNames: Set<string> }>();
  for (const spec of CACHE_COUNTERS.values()) {
    const entry = cacheCounters.get(spec.metric) ?? { help: spec.help, labelNames: new Set<string>() };
    for (const label of Object.keys(spec.labels ?? {})) entry.labelNames.add(label);
    cacheCounters.set(spec.metric, entry);
  }
  for (const [metric, { help, labelNames }] of cacheCounters) {
    new Counter({
      name: prefix + metric,
      help,
      labelNames: [...labelNames],
      registers,
      collect() {
        // Mirrors the sources' running totals; a drop (source replaced) reads as a counter reset.
        this.reset();
        const series = readTotals().counters.get(metric);
        if (labelNames.size === 0) this.inc(series?.get('{}')?.value ?? 0);
        else for (const { labels, value } of series?.values() ?? []) this.inc(labels, value);
      },
    });
  }
  const cacheGauge = (name: 'entries' | 'bytes' | 'listening', help: string) =>
    new Gauge({
      name: `${prefix}cache_${name}`,
      help,
      registers,
      collect() {
        const value = readTotals().gauges[name];
        this.reset();
        if (value !== null) this.set(typeof value === 'boolean' ? Number(value) : value);
      },
    });
  cacheGauge('entries', 'Sessions currently cached.');
  cacheGauge('bytes', 'Estimated bytes held by the session cache.');
  cacheGauge(
    'listening',
    '1 while the cache can serve from memory (its invalidation listener is up), 0 while it reads through.',
  );
  new Gauge({
    name: `${prefix}cache_stat`,
    help: 'Other numeric statistics reported by the session cache, by name.',
    labelNames: ['stat'] as const,
    registers,
    collect() {
      this.reset();
      for (const [stat, value] of readTotals().other) this.set({ stat }, value);
    },
  });

  const metrics: SessionMetrics = {
    registry,
    prefix,
    onEvent(event) {
      switch (event.type) {
        case 'created':
          created.inc();
          break;
        case 'renewed':
          renewed.inc();
          break;
        case 'destroyed':
          destroyed.inc();
          break;
        case 'expired':
          expired.inc({ reason: event.reason });
          break;
        case 'saved':
          saved.inc();
          break;
        case 'lost':
          lost.inc();
          break;
        case 'touched':
          touches.inc({ result: 'written' });
          break;
        case 'touch-skipped':
          touches.inc({ result: 'skipped' });
          break;
        case 'invalid-cookie':
          invalidCookies.inc({ reason: event.reason });
          break;
        case 'device-registered':
          deviceEvents.inc({ event: 'registered' });
          break;
        case 'device-refreshed':
          deviceEvents.inc({ event: 'refreshed' });
          break;
        case 'device-proof-refused':
          deviceEvents.inc({ event: 'refused' });
          break;
        case 'device-unbound-request':
          unboundRequests.inc({ reason: event.reason, action: event.action });
          break;
      }
    },
    recordLogin(outcome) {
      logins.inc({ outcome: outcome === 'rate-limited' ? 'rate_limited' : outcome });
    },
    recordPruned(count) {
      if (Number.isFinite(count) && count > 0) pruned.inc(count);
    },
    observeStoreCall(method, seconds, outcome) {
      storeLatency.observe({ method, outcome }, seconds);
    },
    observeInvalidationLag(seconds) {
      if (Number.isFinite(seconds) && seconds >= 0) invalidationLag.observe(seconds);
    },
    observeStore(store) {
      sources.add(store);
      return () => {
        sources.delete(store);
      };
    },
    instrumentStore(store) {
      return instrumentStore(store, metrics);
    },
  };
  return metrics;
}

function timed(
  target: SessionStore,
  method: string,
  fn: (...args: unknown[]) => unknown,
  metrics: Pick<SessionMetrics, 'observeStoreCall' | 'recordPruned'>,
): (...args: unknown[]) => unknown {
  return (...args: unknown[]) => {
    const start = process.hrtime.bigint();
    const seconds = () => Number(process.hrtime.bigint() - start) / 1e9;
    let result: unknown;
    try {
      result = fn.apply(target, args);
    } catch (err) {
      metrics.observeStoreCall(method, seconds(), 'error');
      throw err;
    }
    if (!(result instanceof Promise)) {
      metrics.observeStoreCall(method, seconds(), 'ok');
      return result;
    }
    return result.then(
      (value: unknown) => {
        metrics.observeStoreCall(method, seconds(), 'ok');
        if (method === 'prune' && typeof value === 'number') metrics.recordPruned(value);
        return value;
      },
      (err: unknown) => {
        metrics.observeStoreCall(method, seconds(), 'error');
        throw err;
      },
    );
  };
}

/**
 * A view of `target` whose function properties are bound to `target` (stores may keep state in
 * private `#` fields, which a proxy receiver cannot reach) and optionally wrapped.
 */
function bindingProxy<T extends object>(
  target: T,
  wrap: (prop: PropertyKey, fn: (...args: unknown[]) => unknown) => (...args: unknown[]) => unknown,
  override?: { prop: PropertyKey; value: unknown },
): T {
  const cache = new Map<PropertyKey, { original: unknown; fn: unknown }>();
  return new Proxy(target, {
    get(t, prop) {
      if (override && prop === override.prop) return override.value;
      const value: unknown = Reflect.get(t, prop, t);
      if (typeof value !== 'function') return value;
      const hit = cache.get(prop);
      if (hit && hit.original === value) return hit.fn;
      const fn = wrap(prop, value as (...args: unknown[]) => unknown);
      cache.set(prop, { original: value, fn });
      return fn;
    },
    set(t, prop, value) {
      return Reflect.set(t, prop, value, t);
    },
  });
}

function instrumentFace(store: SessionStore, metrics: SessionMetrics): SessionStore {
  return bindingProxy(store, (prop, fn) =>
    typeof prop === 'string' && STORE_METHODS.has(prop) ? timed(store, prop, fn, metrics) : fn.bind(store),
  );
}

/**
 * Time every call of a session store, by method name, into `metrics`' store latency histogram
 * (`store_query_duration_seconds{method, outcome}`); `prune()` results also count as pruned
 * sessions. Accepts the engine's `SessionStore`, or a store that exposes one under
 * `[kSessionStore]` (`PgStore`, `MemoryStore`): then the returned store is the same store with
 * its engine face instrumented, ready to pass to `session({ store })` or the Fastify/Hono adapters.
 * Everything else (properties, other methods, `instanceof`) behaves as the original store.
 */
export function instrumentStore<S extends SessionStore | HasSessionStore>(
  store: S,
  metrics: SessionMetrics,
): S {
  const face = (store as Partial<HasSessionStore>)[kSessionStore];
  if (!face) return instrumentFace(store as SessionStore, metrics) as S;
  // Bound methods stand for the store's own: the middleware keeps its fast path for them.
  return bindingProxy(store, (_prop, fn) => keepNativeMark(fn, fn.bind(store)), {
    prop: kSessionStore,
    value: instrumentFace(face, metrics),
  });
}
