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
 *
 * "deviceBound" is pgsession with `deviceBound: { enforce: 'require' }` and a session that
 * registered an ES256 key (its bound cookie checked on every request), against "session", the
 * same without: what device-bound sessions cost a steady request.
 */
import { generateKeyPairSync, sign } from 'node:crypto';
import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import express from 'express';
import { session } from '../../src/adapters/express/middleware.js';
import { kSessionStore } from '../../src/core/store.js';
import { CachedSessionStore } from '../../src/stores/cache/cached-store.js';
import type { InvalidationSource } from '../../src/stores/cache/types.js';
import { MemoryStore } from '../../src/stores/memory/memory-store.js';
import { sessionOptions } from '../apps/common.js';
import { USER_AGENT } from '../lib/config.js';
import { Floor, floorMiddleware } from '../lib/floor.js';
import { alternate, cpuPerRequest, KINDS, type Kind, layerMicros, median } from './rounds.js';

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
const middleware = session({ ...sessionOptions, store: { [kSessionStore]: cached } });

// The same, with device-bound sessions (its own cache, so the two never share entries).
const boundCache = new CachedSessionStore(new MemoryStore()[kSessionStore], source);
const boundMiddleware = session({
  ...sessionOptions,
  store: { [kSessionStore]: boundCache },
  deviceBound: { enforce: 'require', maxAge: '1h' },
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

const floor = new Floor();
const floorLayer = floorMiddleware(floor);
const withFloor = (req: IncomingMessage, res: ServerResponse, done: () => void) =>
  floorLayer(req, res, (err?: unknown) => {
    if (err) throw err;
    dashboard(req, res, done);
  });

const withSession = (req: IncomingMessage, res: ServerResponse, done: () => void) =>
  middleware(req, res, (err?: unknown) => {
    if (err) throw err;
    dashboard(req, res, done);
  });

const withBound = (req: IncomingMessage, res: ServerResponse, done: () => void) =>
  boundMiddleware(req, res, (err?: unknown) => {
    if (err) throw err;
    dashboard(req, res, done);
  });

/** The same handlers as Express apps: bare, with the session middleware first, or with the floor's. */
function expressApp(layer: 'bare' | 'session' | 'floor') {
  const app = express();
  app.disable('x-powered-by');
  if (layer === 'session') app.use(NOOP ? (_req, _res, next) => next() : middleware);
  if (layer === 'floor') app.use(floorLayer as express.RequestHandler);
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
const bareExpress = expressApp('bare');
const sessionExpress = expressApp('session');
const floorExpress = expressApp('floor');

/** What the bench's POST /login stores in the session, then the response. */
function logIn(req: IncomingMessage, res: ServerResponse, done: () => void): void {
  const s = (req as unknown as { session: BenchSession }).session;
  s.userId = 1;
  s.userRole = 'user';
  s.csrfToken = 'x'.repeat(43);
  s._meta = { ip: '127.0.0.1', ua: USER_AGENT, loginAt: Date.now() };
  res.end('ok');
  done();
}

// Log in once, as the bench's POST /login does.
const login = await request(undefined, (req, res, done) =>
  middleware(req, res, () => {
    logIn(req, res, done);
  }),
);
await new Promise((r) => setTimeout(r, 50));
const setCookie = login.getHeader('set-cookie');
const cookieValue = String(Array.isArray(setCookie) ? setCookie[0] : setCookie).split(';')[0]!;
const cookieHeader = `theme=dark; ${cookieValue}; _ga=GA1.1.123456789.1700000000`;
const floorLogin = await request(undefined, (req, res, done) =>
  floorLayer(req, res, () => {
    logIn(req, res, done);
  }),
);
const floorCookie = String(floorLogin.getHeader('set-cookie')).split(';')[0]!;
const floorHeader = `theme=dark; ${floorCookie}; _ga=GA1.1.123456789.1700000000`;

// Log in with device-bound sessions on, and register an ES256 key as a DBSC browser does.
const boundLogin = await request(undefined, (req, res, done) =>
  boundMiddleware(req, res, () => {
    const current = (req as unknown as { session: { regenerate(cb: () => void): void } }).session;
    current.regenerate(() => {
      logIn(req, res, done);
    });
  }),
);
await new Promise((r) => setTimeout(r, 50));
const offer = /path="([^"]+)";challenge="([^"]+)"/.exec(
  String(boundLogin.getHeader('secure-session-registration')),
);
if (!offer) throw new Error('no DBSC registration offer');
const boundSession = String([boundLogin.getHeader('set-cookie')].flat()[0]).split(';')[0]!;
const device = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
const input = `${b64({ alg: 'ES256', typ: 'dbsc+jwt', jwk: device.publicKey.export({ format: 'jwk' }) })}.${b64({ jti: offer[2] })}`;
const proof = `${input}.${sign('sha256', Buffer.from(input), { key: device.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
const registered = await new Promise<ServerResponse>((resolve) => {
  const req = new IncomingMessage(socket);
  req.method = 'POST';
  req.url = offer[1]!;
  req.headers = { host: '127.0.0.1', cookie: boundSession, 'secure-session-response': `"${proof}"` };
  const res = new ServerResponse(req);
  const end = res.end.bind(res);
  res.end = ((...args: Parameters<typeof end>) => {
    const out = end(...args);
    resolve(res);
    return out;
  }) as typeof res.end;
  boundMiddleware(req, res, () => {
    throw new Error('the registration endpoint was not answered by the middleware');
  });
});
if (registered.statusCode !== 200) throw new Error(`DBSC registration failed: ${registered.statusCode}`);
const boundCookie = String([registered.getHeader('set-cookie')].flat()[0]).split(';')[0]!;
const boundHeader = `theme=dark; ${boundSession}; ${boundCookie}; _ga=GA1.1.123456789.1700000000`;
const boundAlone = await request(`theme=dark; ${boundSession}`, withBound);
if (String(boundAlone.getHeader('set-cookie') ?? '').length > 0)
  throw new Error('a refused request got a cookie');

type BenchKind = Kind | 'deviceBound';
async function run(kind: BenchKind, n: number): Promise<number> {
  const handler = EXPRESS
    ? { bare: bareExpress, session: sessionExpress, floor: floorExpress, deviceBound: withBound }[kind]
    : { bare: dashboard, session: withSession, floor: withFloor, deviceBound: withBound }[kind];
  const header = kind === 'floor' ? floorHeader : kind === 'deviceBound' ? boundHeader : cookieHeader;
  return cpuPerRequest(n, async (i) => {
    const res = await request(header, handler);
    if (kind !== 'bare' && i === 0 && !NOOP && !res.getHeader('set-cookie'))
      throw new Error('no rolling cookie');
  });
}

const kinds: BenchKind[] = EXPRESS ? KINDS : [...KINDS, 'deviceBound'];
const times = await alternate(run, ROUNDS, REQUESTS, kinds);
const layer = (k: BenchKind) => layerMicros(times, k);
const stats = cached.stats();
console.log(
  `bare ${(median(times.bare) / 1000).toFixed(1)} µs/req; session layer: pgsession ${layer('session').toFixed(1)} µs/req, ` +
    `floor ${layer('floor').toFixed(1)} µs/req (median of ${ROUNDS} rounds x ${REQUESTS}; pgsession per round: ` +
    `${times.session.map((t, i) => ((t - times.bare[i]!) / 1000).toFixed(1)).join(' ')}); cache hits ${stats.hits}, misses ${stats.misses}`,
);
if (!EXPRESS) {
  const ratio = median(times.deviceBound.map((t, i) => t / times.session[i]!));
  console.log(
    `deviceBound (enforce require, a registered session): session layer ${layer('deviceBound').toFixed(1)} µs/req; whole request x${ratio.toFixed(3)} of pgsession without it (per round: ${times.deviceBound.map((t, i) => (t / times.session[i]!).toFixed(3)).join(' ')})`,
  );
}
await cached.close();
await boundCache.close();
process.exit(0);
