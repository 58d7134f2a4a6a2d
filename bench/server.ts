/**
 * One benchmark server, run as a child process of `bench/run.ts` (never imported by it). The
 * configuration comes as JSON in `BENCH_SERVER` (see `lib/config.ts`); the server listens on
 * 127.0.0.1 on a free port and tells the parent its port over IPC.
 *
 * Application routes (the same in every mode):
 *   POST /login      stores what the demo app's login stores (userId, role, CSRF token, _meta);
 *                    in `auth` mode it is the real thing: argon2id verification via `auth.login`.
 *   GET  /dashboard  reads `req.session.userId` and renders a small page; 401 when logged out.
 *   POST /logout     destroys the session.
 *
 * Instrumentation routes (`/__…`, mounted before the session middleware, so they never touch it):
 *   GET  /__stats    SQL statements sent so far, pool, memory, cache counters.
 *   POST /__gc       full GC (the child runs with --expose-gc), then memory figures.
 *   POST /__eld/reset, GET /__eld   event-loop delay histogram (perf_hooks), in ms.
 *   POST /__populate load sessions through the store API so the cache holds them.
 *   POST /__prune    run the store's prune() and time it.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { Server } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import pg from 'pg';
import { createAuth, runAuthMigrations } from '../src/auth/index.js';
import { hashId } from '../src/core/id.js';
import { createPool } from '../src/db/pool.js';
import { kSessionStore, type SessionStore, session } from '../src/index.js';
import { PgStore } from '../src/stores/postgres/index.js';
import {
  CONFIG_ENV,
  COOKIE_NAME,
  MAX_AGE_MS,
  SECRET,
  type ServerConfig,
  USER_AGENT,
  USER_PASSWORD,
  userEmail,
} from './lib/config.js';

const require = createRequire(import.meta.url);

// ---- SQL accounting: every statement any pg client of this process sends ----

let allStatements = 0;
const originalQuery = pg.Client.prototype.query;
pg.Client.prototype.query = function countedQuery(this: pg.Client, ...args: unknown[]) {
  allStatements++;
  return (originalQuery as (...a: unknown[]) => unknown).apply(this, args);
} as typeof pg.Client.prototype.query;
/**
 * Connections opened: each new backend commits one transaction of its own while starting, which
 * `pg_stat_database` counts like a statement; the runner subtracts these.
 */
let connects = 0;
const originalConnect = pg.Client.prototype.connect;
pg.Client.prototype.connect = function countedConnect(this: pg.Client, ...args: unknown[]) {
  connects++;
  return (originalConnect as (...a: unknown[]) => unknown).apply(this, args);
} as typeof pg.Client.prototype.connect;

// ---- configuration ----

const config = JSON.parse(process.env[CONFIG_ENV] ?? '{}') as ServerConfig;
const { mode } = config;

let pool: pg.Pool | undefined;
/** Statements sent through `pool.query`: the request path of every store (pruning aside). */
let poolStatements = 0;
if (config.databaseUrl) {
  pool = createPool(config.databaseUrl, {
    max: 10,
    idleTimeoutMillis: config.poolIdleMs ?? 30_000,
    application_name: `pgsession-bench-${mode}`,
  });
  const poolQuery = pool.query.bind(pool) as (...a: unknown[]) => unknown;
  (pool as unknown as { query: (...a: unknown[]) => unknown }).query = (...args: unknown[]) => {
    poolStatements++;
    return poolQuery(...args);
  };
}

function requirePool(): pg.Pool {
  if (!pool) throw new Error(`mode ${mode} needs databaseUrl`);
  return pool;
}

// ---- the session stack of this mode ----

type ExpressSessionFactory = ((options: Record<string, unknown>) => RequestHandler) & {
  MemoryStore: new () => object;
  Store: new () => object;
};

/** The seed's settings, for express-session and pgsession alike. */
const sessionOptions = {
  name: COOKIE_NAME,
  secret: SECRET,
  resave: false,
  saveUninitialized: false,
  rolling: true,
  cookie: { maxAge: MAX_AGE_MS, httpOnly: true, sameSite: 'lax' as const },
};

/** `PgStore`'s options as this bench uses them (`cache` is the per-process session cache). */
type PgStoreBenchOptions = ConstructorParameters<typeof PgStore>[0] & {
  cache?: false | { max?: number; maxSize?: number };
};

let sessionMiddleware: RequestHandler | undefined;
/** pgsession's engine-facing store (for populate/prune/stats), when the mode uses PgStore. */
let engineStore:
  | (SessionStore & { stats?: () => unknown; cache?: unknown; prune?: () => Promise<number> })
  | undefined;
let pgsessionMiddleware: ReturnType<typeof session> | undefined;

if (mode === 'memory' || mode === 'cps') {
  const expressSession = require('express-session') as ExpressSessionFactory;
  let store: object;
  if (mode === 'memory') {
    store = new expressSession.MemoryStore();
  } else {
    const connectPgSimple = require('connect-pg-simple') as (
      s: ExpressSessionFactory,
    ) => new (
      options: Record<string, unknown>,
    ) => object;
    const PgSimpleStore = connectPgSimple(expressSession);
    store = new PgSimpleStore({
      pool: requirePool(),
      createTableIfMissing: true,
      pruneSessionInterval: false,
    });
  }
  sessionMiddleware = expressSession({ ...sessionOptions, store });
} else if (mode === 'pg-nocache' || mode === 'pg-cache' || mode === 'auth') {
  const options: PgStoreBenchOptions = {
    pool: requirePool(),
    createTableIfMissing: true,
    // Background pruning off: the pruning benchmark calls prune() itself.
    pruneSessionInterval: false,
  };
  if (mode === 'pg-nocache') {
    options.cache = false;
  } else if (config.cacheMax !== undefined || config.cacheMaxSize !== undefined) {
    options.cache = {
      ...(config.cacheMax !== undefined ? { max: config.cacheMax } : {}),
      ...(config.cacheMaxSize !== undefined ? { maxSize: config.cacheMaxSize } : {}),
    };
  }
  const store = new PgStore(options);
  engineStore = store[kSessionStore] as unknown as typeof engineStore;
  pgsessionMiddleware = session({ ...sessionOptions, store });
  sessionMiddleware = pgsessionMiddleware as unknown as RequestHandler;
}

/** True when the engine-facing store is fronted by the per-process cache. */
const cacheActive = engineStore !== undefined && typeof engineStore.stats === 'function';

// ---- the app ----

const app = express();
app.disable('x-powered-by');

const eld = monitorEventLoopDelay({ resolution: 1 });
eld.enable();
const ns = (v: number) => Math.round(v / 1e3) / 1e3; // ns → ms, 3 decimals

function memory() {
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external };
}

const admin = express.Router();
admin.use(express.json({ limit: '64kb' }));
const cpu = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};
admin.get('/__stats', (_req, res) => {
  res.json({
    mode,
    cacheActive,
    allStatements,
    poolStatements,
    connects,
    dashboardRequests,
    poolTotal: pool?.totalCount ?? 0,
    poolIdle: pool?.idleCount ?? 0,
    cpuMicros: cpu(),
    memory: memory(),
    cache: cacheActive ? engineStore?.stats?.() : null,
  });
});
admin.post('/__gc', (_req, res) => {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) {
    res.status(500).json({ error: 'run with --expose-gc' });
    return;
  }
  for (let i = 0; i < 4; i++) gc();
  res.json({ memory: memory(), cache: cacheActive ? engineStore?.stats?.() : null });
});
admin.post('/__eld/reset', (_req, res) => {
  eld.reset();
  res.json({ ok: true });
});
admin.get('/__eld', (_req, res) => {
  res.json({
    count: eld.count,
    p50: ns(eld.percentile(50)),
    p99: ns(eld.percentile(99)),
    max: ns(eld.max),
    mean: ns(eld.mean),
  });
});
admin.post('/__populate', async (req: Request, res: Response, next: NextFunction) => {
  try {
    if (!engineStore) throw new Error('no PgStore in this mode');
    const { prefix, from, to } = req.body as { prefix: string; from: number; to: number };
    const concurrency = 16;
    let i = from;
    let found = 0;
    const started = performance.now();
    const worker = async () => {
      while (i < to) {
        const n = i++;
        if (await engineStore!.get(hashId(`${prefix}${n}`))) found++;
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    res.json({ found, ms: performance.now() - started, cache: engineStore.stats?.() ?? null });
  } catch (err) {
    next(err);
  }
});
admin.post('/__prune', async (_req: Request, res: Response, next: NextFunction) => {
  try {
    if (!engineStore?.prune) throw new Error('no prunable store in this mode');
    const started = performance.now();
    const deleted = await engineStore.prune();
    res.json({ deleted, ms: performance.now() - started });
  } catch (err) {
    next(err);
  }
});
// Only `/__…` requests enter the instrumentation router: the measured routes pay one string test.
app.use((req: Request, res: Response, next: NextFunction) => {
  if (req.url.startsWith('/__')) admin(req, res, next);
  else next();
});

/** Dashboard requests that reached the app (the divisor of "SQL per request": counts requests still in flight when the load stops). */
let dashboardRequests = 0;
app.use((req: Request, _res: Response, next: NextFunction) => {
  if (req.url === '/dashboard') dashboardRequests++;
  next();
});

if (sessionMiddleware) app.use(sessionMiddleware);

interface BenchSession {
  userId?: number;
  userRole?: string;
  csrfToken?: string;
  _meta?: { ip: string; ua: string; loginAt: number };
  destroy(cb: (err?: unknown) => void): void;
}
const sessionOf = (req: Request) => (req as unknown as { session?: BenchSession }).session;

const esc = (value: unknown) =>
  String(value ?? '')
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;');

function dashboard(userId: number, role: string, csrf: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Dashboard</title></head>
<body><header><a href="/dashboard">Dashboard</a>
<form method="post" action="/logout"><input type="hidden" name="_csrf" value="${esc(csrf)}"><button>Log out</button></form></header>
<main><h1>Dashboard</h1><p>Signed in as user #${esc(userId)} (${esc(role)}).</p></main></body></html>`;
}

if (mode === 'auth') {
  const auth = createAuth({ pool: requirePool(), session: pgsessionMiddleware! });
  await runAuthMigrations(requirePool());
  await auth.ready();
  const count = config.users ?? 32;
  await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      if (!(await auth.users.findByEmail(userEmail(i)))) {
        await auth.users.create({ email: userEmail(i), password: USER_PASSWORD });
      }
    }),
  );
  app.post('/login', express.json(), async (req: Request, res: Response, next: NextFunction) => {
    try {
      const { email, password } = req.body as { email?: string; password?: string };
      const user = await auth.login(req as never, email, password);
      res.status(user ? 200 : 401).json({ ok: user !== null });
    } catch (err) {
      next(err);
    }
  });
} else {
  app.post('/login', (req: Request, res: Response) => {
    const s = sessionOf(req);
    if (s) {
      s.userId = 1;
      s.userRole = 'user';
      s.csrfToken = randomBytes(32).toString('base64url');
      s._meta = { ip: req.socket.remoteAddress ?? '', ua: USER_AGENT, loginAt: Date.now() };
    }
    res.json({ ok: true });
  });
}

app.get('/dashboard', (req: Request, res: Response) => {
  if (mode === 'bare') {
    res.type('html').send(dashboard(1, 'user', 'bare-express-has-no-session-token'));
    return;
  }
  const s = sessionOf(req);
  if (typeof s?.userId !== 'number') {
    res.status(401).type('text').send('Not logged in');
    return;
  }
  res.type('html').send(dashboard(s.userId, s.userRole ?? 'user', s.csrfToken ?? ''));
});

app.post('/logout', (req: Request, res: Response, next: NextFunction) => {
  const s = sessionOf(req);
  if (!s) {
    res.status(204).end();
    return;
  }
  s.destroy((err) => (err ? next(err) : res.status(204).end()));
});

app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
  process.stderr.write(`bench server (${mode}): ${(err as Error)?.stack ?? String(err)}\n`);
  if (!res.headersSent) res.status(500).json({ error: String((err as Error)?.message ?? err) });
});

const server: Server = app.listen(0, '127.0.0.1');
await once(server, 'listening');
server.keepAliveTimeout = 60_000;

async function shutdown(): Promise<void> {
  server.closeAllConnections();
  server.close();
  await pgsessionMiddleware?.flush().catch(() => {});
  const store = (pgsessionMiddleware?.store ?? undefined) as { close?: () => Promise<void> } | undefined;
  await store?.close?.().catch(() => {});
  await pool?.end().catch(() => {});
  process.exit(0);
}
process.on('message', (message) => {
  if (message === 'stop') void shutdown();
});
process.on('disconnect', () => void shutdown());

process.send?.({ ready: true, port: (server.address() as AddressInfo).port, cacheActive });
