/**
 * Micro-benchmark of the session layer's per-request CPU on the steady-state path the full bench
 * measures (authenticated GET, cache hit, `rolling: true`, throttled touch skipped), without
 * sockets, Express or autocannon: the figure is the session layer alone, so a change to it can
 * be compared A/B in seconds even on a shared, noisy machine.
 *
 *   npx tsx bench/micro/hot-path.ts            # 5 alternating rounds of 20 000 requests
 *   npx tsx bench/micro/hot-path.ts --rounds=9 --requests=50000
 *   npx tsx bench/micro/hot-path.ts --express          # through Express 5 (router, res.send)
 *   npx tsx bench/micro/hot-path.ts --express --noop   # calibration: one do-nothing middleware
 *
 * Each request is a real `http.IncomingMessage` / `http.ServerResponse` pair (no socket: the
 * response is buffered and dropped), so header handling costs what it costs in Node. The store is
 * `CachedSessionStore` over the in-memory store with an invalidation source that always listens:
 * exactly the cache-hit path of `PgStore` without PostgreSQL. "bare" runs the same request
 * without the session middleware; the session layer's cost is the difference.
 */
import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import express from 'express';
import { session } from '../../src/adapters/express/middleware.js';
import { kSessionStore } from '../../src/core/store.js';
import { CachedSessionStore } from '../../src/stores/cache/cached-store.js';
import type { InvalidationSource } from '../../src/stores/cache/types.js';
import { MemoryStore } from '../../src/stores/memory/memory-store.js';
import { COOKIE_NAME, MAX_AGE_MS, SECRET, USER_AGENT } from '../lib/config.js';

const arg = (name: string, fallback: number): number => {
  const hit = process.argv.find((a) => a.startsWith(`--${name}=`));
  return hit ? Number(hit.slice(name.length + 3)) : fallback;
};
const ROUNDS = arg('rounds', 5);
/** `--express`: run the requests through an Express 5 app (its req/res prototypes and router). */
const EXPRESS = process.argv.includes('--express');
/** `--express --noop`: a middleware that only calls next(), to calibrate what one Express layer costs. */
const NOOP = EXPRESS && process.argv.includes('--noop');
const REQUESTS = arg('requests', 20_000);

const source: InvalidationSource = {
  listening: true,
  subscribe: () => () => {},
  close: async () => {},
};
const memory = new MemoryStore();
const cached = new CachedSessionStore(memory[kSessionStore], source);
const middleware = session({
  name: COOKIE_NAME,
  secret: SECRET,
  resave: false,
  saveUninitialized: false,
  rolling: true,
  cookie: { maxAge: MAX_AGE_MS, httpOnly: true, sameSite: 'lax' },
  store: { [kSessionStore]: cached },
});

const socket = new Socket();
const BODY = '<!doctype html><p>Dashboard</p>'.repeat(10);

interface BenchSession {
  userId?: number;
  userRole?: string;
  csrfToken?: string;
  _meta?: { ip: string; ua: string; loginAt: number };
}

/** One request through `handler`; resolves with the response once `end()` went through. */
function request(
  cookie: string | undefined,
  handler: (req: IncomingMessage, res: ServerResponse, done: () => void) => void,
): Promise<ServerResponse> {
  return new Promise((resolve, reject) => {
    const req = new IncomingMessage(socket);
    req.method = 'GET';
    req.url = '/dashboard';
    req.headers = cookie ? { host: '127.0.0.1', cookie } : { host: '127.0.0.1' };
    const res = new ServerResponse(req);
    handler(req, res, () => resolve(res));
    res.on('error', reject);
  });
}

function dashboard(req: IncomingMessage, res: ServerResponse, done: () => void): void {
  const s = (req as unknown as { session?: BenchSession }).session;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.end(`${BODY}${s?.userId ?? 'bare'}${s?.csrfToken ?? ''}`);
  done();
}

const withSession = (req: IncomingMessage, res: ServerResponse, done: () => void) =>
  middleware(req, res, (err?: unknown) => {
    if (err) throw err;
    dashboard(req, res, done);
  });

/** The same two handlers as Express apps: one bare, one with the session middleware first. */
function expressApp(withMiddleware: boolean) {
  const app = express();
  app.disable('x-powered-by');
  if (withMiddleware) app.use(NOOP ? (_req, _res, next) => next() : middleware);
  app.get('/dashboard', (req, res) => {
    const s = (req as unknown as { session?: BenchSession }).session;
    res.type('html').send(`${BODY}${s?.userId ?? 'bare'}${s?.csrfToken ?? ''}`);
    (res as unknown as { done: () => void }).done();
  });
  return (req: IncomingMessage, res: ServerResponse, done: () => void) => {
    (res as unknown as { done: () => void }).done = done;
    app(req as never, res as never);
  };
}
const bareExpress = expressApp(false);
const sessionExpress = expressApp(true);

// Log in once, as the bench's POST /login does.
const login = await request(undefined, (req, res, done) =>
  middleware(req, res, () => {
    const s = (req as unknown as { session: BenchSession }).session;
    s.userId = 1;
    s.userRole = 'user';
    s.csrfToken = 'x'.repeat(43);
    s._meta = { ip: '127.0.0.1', ua: USER_AGENT, loginAt: Date.now() };
    res.end('ok');
    done();
  }),
);
await new Promise((r) => setTimeout(r, 50));
const setCookie = login.getHeader('set-cookie');
const cookieValue = String(Array.isArray(setCookie) ? setCookie[0] : setCookie).split(';')[0]!;
const cookieHeader = `theme=dark; ${cookieValue}; _ga=GA1.1.123456789.1700000000`;

async function run(kind: 'bare' | 'session', n: number): Promise<number> {
  const handler = EXPRESS
    ? kind === 'bare'
      ? bareExpress
      : sessionExpress
    : kind === 'bare'
      ? dashboard
      : withSession;
  // CPU time of this process (user + system), not wall time: less sensitive to other processes
  // competing for the cores, which on a shared machine only delay the loop.
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; i++) {
    const res = await request(cookieHeader, handler);
    if (kind === 'session' && i === 0 && !NOOP && !res.getHeader('set-cookie'))
      throw new Error('no rolling cookie');
  }
  const c = process.cpuUsage(c0);
  return ((c.user + c.system) * 1000) / n; // ns per request
}

// Warm-up: let V8 optimise both paths.
await run('bare', REQUESTS / 2);
await run('session', REQUESTS / 2);

const bare: number[] = [];
const sess: number[] = [];
for (let r = 0; r < ROUNDS; r++) {
  if (r % 2 === 0) {
    bare.push(await run('bare', REQUESTS));
    sess.push(await run('session', REQUESTS));
  } else {
    sess.push(await run('session', REQUESTS));
    bare.push(await run('bare', REQUESTS));
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const diffs = sess.map((s, i) => s - bare[i]!);
const stats = cached.stats();
console.log(
  `bare ${(median(bare) / 1000).toFixed(1)} µs/req, with session ${(median(sess) / 1000).toFixed(1)} µs/req, ` +
    `session layer ${(median(diffs) / 1000).toFixed(1)} µs/req (median of ${ROUNDS} rounds x ${REQUESTS}; ` +
    `per round: ${diffs.map((d) => (d / 1000).toFixed(1)).join(' ')}); cache hits ${stats.hits}, misses ${stats.misses}`,
);
await cached.close();
process.exit(0);
