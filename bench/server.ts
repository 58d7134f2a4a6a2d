/**
 * One benchmark server, run as a child process of `bench/run.ts` (never imported by it). The
 * configuration comes as JSON in `BENCH_SERVER` (see `lib/config.ts`): a framework and a session
 * layer (`apps/`); the server listens on 127.0.0.1 on a free port and tells the parent its port
 * over IPC. pgsession is loaded as an app installs it: from the package's build (`dist/`).
 *
 * Application routes (the same in every configuration):
 *   POST /login      stores what the demo app's login stores (userId, role, CSRF token, _meta);
 *                    on the login-storm server it is the real thing: argon2id via `auth.login`.
 *   GET  /dashboard  behind a `requireAuth` guard: renders the user id and role; 401 when logged out.
 *   POST /logout     destroys the session (Express).
 *
 * Instrumentation routes (`/__…`), answered in front of the app, so they never touch it:
 *   GET  /__stats    SQL statements sent so far, pool, CPU, memory, cache counters.
 *   POST /__gc       full GC (the child runs with --expose-gc), then memory figures.
 *   POST /__eld/reset, GET /__eld   event-loop delay histogram (perf_hooks), in ms.
 *   POST /__heap-sample/start, POST /__heap-sample/stop   V8's sampling heap profiler, keeping
 *                    only objects a full GC collects or that are still live (what reached old
 *                    space): the profile is the stop call's answer (`bench/gc.ts --heap-sample`).
 *   POST /__populate load sessions through the store API so the cache holds them.
 *   POST /__prune    run the store's prune() and time it.
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { Session as InspectorSession } from 'node:inspector';
import type { AddressInfo } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import pg from 'pg';
import { hashId } from '../src/core/id.js';
import type { Framework, Layer } from './apps/common.js';
import type { App, AppContext } from './apps/context.js';
import { expressApp } from './apps/express.js';
import { fastifyApp } from './apps/fastify.js';
import { honoApp } from './apps/hono.js';
import { httpApp } from './apps/http.js';
import { webApp } from './apps/web.js';
import { CONFIG_ENV, configName, type ServerConfig, USER_PASSWORD, userEmail } from './lib/config.js';
import type { Floor } from './lib/floor.js';

// ---- SQL accounting: every statement any pg client of this process sends ----

let allStatements = 0;
/**
 * Statements that start with UPDATE: the stores' touches (and saves). Everything else is counted
 * as a read: a SELECT, or pgsession's read of a session, one statement that starts with WITH.
 */
let writeStatements = 0;
const textOf = (q: unknown) => (typeof q === 'string' ? q : ((q as { text?: string } | null)?.text ?? ''));
const originalQuery = pg.Client.prototype.query;
pg.Client.prototype.query = function countedQuery(this: pg.Client, ...args: unknown[]) {
  allStatements++;
  if (/^\s*update\b/i.test(textOf(args[0]))) writeStatements++;
  return (originalQuery as (...a: unknown[]) => unknown).apply(this, args);
} as typeof pg.Client.prototype.query;
let connects = 0;
const originalConnect = pg.Client.prototype.connect;
pg.Client.prototype.connect = function countedConnect(this: pg.Client, ...args: unknown[]) {
  connects++;
  return (originalConnect as (...a: unknown[]) => unknown).apply(this, args);
} as typeof pg.Client.prototype.connect;

// ---- configuration ----

const config = JSON.parse(process.env[CONFIG_ENV] ?? '{}') as ServerConfig;
const name = configName(config);

let pool: pg.Pool | undefined;
/** Statements sent through `pool.query`: the request path of every store (pruning aside). */
let poolStatements = 0;
if (config.databaseUrl) {
  pool = new pg.Pool({
    connectionString: config.databaseUrl,
    max: 10,
    application_name: `pgsession-bench-${name}`,
  });
  pool.on('error', (err) =>
    process.stderr.write(`bench server (${name}): idle client error: ${err.message}\n`),
  );
  const poolQuery = pool.query.bind(pool) as (...a: unknown[]) => unknown;
  (pool as unknown as { query: (...a: unknown[]) => unknown }).query = (...args: unknown[]) => {
    poolStatements++;
    return poolQuery(...args);
  };
}

interface EngineStore {
  get(key: string): Promise<unknown>;
  stats?: () => Record<string, unknown>;
  prune?: () => Promise<number>;
}
/** pgsession's engine-facing store (cache statistics, populate, prune), when the layer has one. */
let engineStore: EngineStore | undefined;
let floor: Floor | undefined;

const storeOptions: Record<string, unknown> = {};
if (config.cache === false) storeOptions.cache = false;
else if (config.cacheMax !== undefined || config.cacheMaxSize !== undefined) {
  storeOptions.cache = {
    ...(config.cacheMax !== undefined ? { max: config.cacheMax } : {}),
    ...(config.cacheMaxSize !== undefined ? { maxSize: config.cacheMaxSize } : {}),
  };
}

// A bound cookie that outlives the measurement (the refresh is not what is measured).
const sessionOptions: Record<string, unknown> = config.deviceBound
  ? { deviceBound: { enforce: 'require', maxAge: '1h' } }
  : {};

const context: AppContext = {
  sessionOptions,
  pool() {
    if (!pool) throw new Error(`${name} needs databaseUrl`);
    return pool;
  },
  storeOptions,
  exposeStore(store) {
    engineStore = (store as Record<symbol, EngineStore | undefined>)[Symbol.for('pgsession.store')];
  },
  exposeFloor(f) {
    floor = f;
  },
  auth: config.users
    ? async (auth) => {
        await Promise.all(
          Array.from({ length: config.users ?? 0 }, async (_, i) => {
            if (!(await auth.users.findByEmail(userEmail(i)))) {
              await auth.users.create({ email: userEmail(i), password: USER_PASSWORD });
            }
          }),
        );
      }
    : undefined,
};

const builders: Record<Framework, (layer: Layer, ctx: AppContext) => Promise<App>> = {
  express: expressApp,
  http: httpApp,
  fastify: fastifyApp,
  hono: honoApp,
  web: webApp,
};
const app = await builders[config.framework](config.layer, context);
const cacheActive = typeof engineStore?.stats === 'function' && config.cache !== false;

// ---- instrumentation ----

const eld = monitorEventLoopDelay({ resolution: 1 });
eld.enable();
const ns = (v: number) => Math.round(v / 1e3) / 1e3; // ns → ms, 3 decimals
const cpu = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};
function memory() {
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external };
}
/** Dashboard requests received (the divisor of "SQL per request"). */
let dashboardRequests = 0;

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString();
  return text ? (JSON.parse(text) as Record<string, unknown>) : {};
}

let heapSampler: InspectorSession | undefined;

function post(session: InspectorSession, method: string, params: object): Promise<unknown> {
  return new Promise((resolve, reject) =>
    session.post(method, params, (err, result) => (err ? reject(err) : resolve(result))),
  );
}

async function instrumentation(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const route = `${req.method} ${req.url}`;
  if (route === 'GET /__stats') {
    return send(res, 200, {
      config: name,
      cacheActive,
      allStatements,
      writeStatements,
      poolStatements,
      connects,
      dashboardRequests,
      poolTotal: pool?.totalCount ?? 0,
      cpuMicros: cpu(),
      memory: memory(),
      cache: cacheActive ? (engineStore?.stats?.() ?? null) : null,
      floorSessions: floor?.sessions.size ?? null,
    });
  }
  if (route === 'POST /__gc') {
    const gc = (globalThis as { gc?: () => void }).gc;
    if (!gc) return send(res, 500, { error: 'run with --expose-gc' });
    for (let i = 0; i < 4; i++) gc();
    return send(res, 200, { memory: memory(), cache: cacheActive ? engineStore?.stats?.() : null });
  }
  if (route === 'POST /__heap-sample/start') {
    if (heapSampler) return send(res, 409, { error: 'already sampling' });
    heapSampler = new InspectorSession();
    heapSampler.connect();
    await post(heapSampler, 'HeapProfiler.startSampling', {
      samplingInterval: 1024,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: false,
    });
    return send(res, 200, { ok: true });
  }
  if (route === 'POST /__heap-sample/stop') {
    if (!heapSampler) return send(res, 409, { error: 'not sampling' });
    const { profile } = (await post(heapSampler, 'HeapProfiler.stopSampling', {})) as { profile: unknown };
    heapSampler.disconnect();
    heapSampler = undefined;
    return send(res, 200, profile);
  }
  if (route === 'POST /__eld/reset') {
    eld.reset();
    return send(res, 200, { ok: true });
  }
  if (route === 'GET /__eld') {
    return send(res, 200, {
      count: eld.count,
      p50: ns(eld.percentile(50)),
      p99: ns(eld.percentile(99)),
      max: ns(eld.max),
      mean: ns(eld.mean),
    });
  }
  if (route === 'POST /__populate') {
    const store = engineStore;
    if (!store) throw new Error('no pgsession store in this configuration');
    const { prefix, from, to } = (await readJson(req)) as { prefix: string; from: number; to: number };
    let i = from;
    let found = 0;
    const started = performance.now();
    const worker = async () => {
      while (i < to) {
        const n = i++;
        if (await store.get(hashId(`${prefix}${n}`))) found++;
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    return send(res, 200, { found, ms: performance.now() - started, cache: store.stats?.() ?? null });
  }
  if (route === 'POST /__prune') {
    if (!engineStore?.prune) throw new Error('no prunable store in this configuration');
    const started = performance.now();
    const deleted = await engineStore.prune();
    return send(res, 200, { deleted, ms: performance.now() - started });
  }
  send(res, 404, { error: `no ${route}` });
}

const server = createServer((req, res) => {
  const url = req.url ?? '';
  if (url.charCodeAt(0) === 47 && url.charCodeAt(1) === 95 && url.charCodeAt(2) === 95) {
    instrumentation(req, res).catch((err: unknown) =>
      send(res, 500, { error: String((err as Error)?.message ?? err) }),
    );
    return;
  }
  if (url === '/dashboard') dashboardRequests++;
  app.listener(req, res);
});
server.listen(0, '127.0.0.1');
await once(server, 'listening');
server.keepAliveTimeout = 60_000;

async function shutdown(): Promise<void> {
  server.closeAllConnections();
  server.close();
  await app.close();
  await pool?.end().catch(() => {});
  process.exit(0);
}
process.on('message', (message) => {
  if (message === 'stop') void shutdown();
});
process.on('disconnect', () => void shutdown());

process.send?.({ ready: true, port: (server.address() as AddressInfo).port, cacheActive });
