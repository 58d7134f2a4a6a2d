/**
 * The Fetch adapter's per-request CPU on the steady path (authenticated GET, cache hit,
 * `rolling: true`), in process: a `Request` in, a `Response` out, no sockets and no bridge, so
 * a change to src/adapters/web can be compared A/B in seconds on a shared machine. "bare" is the
 * route alone; pgsession's `handler()` and the floor's wrapper (bench/apps/web.ts's shape) are
 * the same route with a session layer; their cost is the difference.
 *
 *   npx tsx bench/micro/web-hot-path.ts [--rounds=5] [--requests=20000]
 */
import { webSessions } from '../../src/adapters/web/index.js';
import { kSessionStore } from '../../src/core/store.js';
import { CachedSessionStore } from '../../src/stores/cache/cached-store.js';
import type { InvalidationSource } from '../../src/stores/cache/types.js';
import { MemoryStore } from '../../src/stores/memory/memory-store.js';
import { sessionOptions } from '../apps/common.js';
import { USER_AGENT } from '../lib/config.js';
import { Floor } from '../lib/floor.js';
import { alternate, cpuPerRequest, type Kind, layerMicros, median } from './rounds.js';

const arg = (name: string, fallback: number): number => {
  const hit = process.argv.find((a) => a.startsWith(`--${name}=`));
  return hit ? Number(hit.slice(name.length + 3)) : fallback;
};
const ROUNDS = arg('rounds', 5);
const REQUESTS = arg('requests', 20_000);

const source: InvalidationSource = { listening: true, subscribe: () => () => {}, close: async () => {} };
const cached = new CachedSessionStore(new MemoryStore()[kSessionStore], source);
const sessions = webSessions({ ...sessionOptions, store: { [kSessionStore]: cached } });

type S = Record<string, unknown> | undefined;
const BODY = '<!doctype html><p>Dashboard</p>'.repeat(10);
const route = (_request: Request, s: S) =>
  new Response(`${BODY}${s?.userId ?? 'bare'}${s?.csrfToken ?? ''}`, {
    headers: { 'content-type': 'text/html; charset=utf-8' },
  });
const logIn = (s: Record<string, unknown>) => {
  s.userId = 1;
  s.userRole = 'user';
  s.csrfToken = 'x'.repeat(43);
  s._meta = { ip: '127.0.0.1', ua: USER_AGENT, loginAt: Date.now() };
};

const withSession = sessions.handler((request, s) => route(request, s as S));
const floor = new Floor();
const withFloor = (request: Request) => {
  const state = floor.load(request.headers.get('cookie') ?? undefined);
  const response = route(request, state.session);
  const setCookie = floor.commit(state);
  if (setCookie !== null) {
    response.headers.append('set-cookie', setCookie);
    response.headers.set('cache-control', 'no-store');
  }
  return response;
};

const login = await sessions.handler((_r, s) => {
  logIn(s as Record<string, unknown>);
  return new Response('ok');
})(new Request('http://127.0.0.1/login', { method: 'POST' }));
const cookie = `theme=dark; ${login.headers.get('set-cookie')!.split(';')[0]}; _ga=GA1.1.123456789.1700000000`;
const floorState = floor.load(undefined);
logIn(floorState.session);
const floorCookie = `theme=dark; ${floor.commit(floorState)!.split(';')[0]}; _ga=GA1.1.123456789.1700000000`;
await new Promise((r) => setTimeout(r, 50));

const handlers: Record<Kind, (r: Request) => Response | Promise<Response>> = {
  bare: (r) => route(r, undefined),
  session: withSession,
  floor: withFloor,
};
const run = (kind: Kind, n: number) => {
  const headers = { cookie: kind === 'floor' ? floorCookie : cookie };
  return cpuPerRequest(n, async (i) => {
    const res = await handlers[kind](new Request('http://127.0.0.1/dashboard', { headers }));
    if (kind !== 'bare' && i === 0 && !res.headers.get('set-cookie')) throw new Error('no rolling cookie');
  });
};

const times = await alternate(run, ROUNDS, REQUESTS);
const layer = (k: Kind) => layerMicros(times, k);
console.log(
  `bare ${(median(times.bare) / 1000).toFixed(1)} µs/req; session layer: pgsession/web ${layer('session').toFixed(1)} µs/req, ` +
    `floor ${layer('floor').toFixed(1)} µs/req (median of ${ROUNDS} rounds x ${REQUESTS}); ` +
    `pgsession/web ${((100 * median(times.floor)) / median(times.session)).toFixed(1)}% of the floor's request rate`,
);
await cached.close();
process.exit(0);
