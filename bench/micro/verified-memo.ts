/**
 * The verified-cookie memo at its capacity (10,000 values, `VERIFIED_MEMO_MAX` in
 * src/core/engine.ts) under round-robin access, as `npm run bench`'s rotating row drives it:
 * 10,002 sessions, then the same middleware cycling 9,000 of them, and 10,000 of them after one
 * other cookie was seen in between. An LRU exactly as large as the cycle misses on every request
 * once one other value came in (each insert evicts the next value of the cycle), so each
 * request pays the HMAC and the SHA-256 again. CPU time per request, bare Node objects.
 *
 *   npx tsx bench/micro/verified-memo.ts
 */
import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import { session } from '../../src/adapters/express/middleware.js';
import { kSessionStore } from '../../src/core/store.js';
import { CachedSessionStore } from '../../src/stores/cache/cached-store.js';
import type { InvalidationSource } from '../../src/stores/cache/types.js';
import { MemoryStore } from '../../src/stores/memory/memory-store.js';
import { sessionOptions } from '../apps/common.js';

const source: InvalidationSource = { listening: true, subscribe: () => () => {}, close: async () => {} };
const cached = new CachedSessionStore(new MemoryStore()[kSessionStore], source);
const middleware = session({ ...sessionOptions, store: { [kSessionStore]: cached } });
const socket = new Socket();
type Handler = (req: IncomingMessage, res: ServerResponse) => void;

function one(cookie: string | undefined, handler: Handler): ServerResponse {
  const req = new IncomingMessage(socket);
  req.method = 'GET';
  req.url = '/dashboard';
  req.headers = cookie ? { host: '127.0.0.1', cookie } : { host: '127.0.0.1' };
  const res = new ServerResponse(req);
  handler(req, res);
  return res;
}
const sessionOf = (req: IncomingMessage) => (req as unknown as { session: { userId?: number } }).session;

const cookies: string[] = [];
for (let i = 0; i < 10_002; i++) {
  const res = one(undefined, (req, r) =>
    middleware(req, r, () => {
      sessionOf(req).userId = i;
      r.end('ok');
    }),
  );
  await new Promise((resolve) => setImmediate(resolve));
  cookies.push(String([res.getHeader('set-cookie')].flat()[0]).split(';')[0]!);
}
await new Promise((resolve) => setTimeout(resolve, 200));

const visit: Handler = (req, res) => middleware(req, res, () => res.end(String(sessionOf(req).userId)));
function cycle(n: number, passes: number): number {
  const c0 = process.cpuUsage();
  for (let p = 0; p < passes; p++) for (let i = 0; i < n; i++) one(cookies[i], visit);
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / (n * passes);
}

cycle(9_000, 2); // warm-up
const rows: string[] = [];
for (let round = 1; round <= 3; round++) {
  const within = cycle(9_000, 3);
  one(cookies[10_001], visit); // one other cookie, as the one-cookie measurement between rounds
  const atCapacity = cycle(10_000, 3);
  rows.push(
    `round ${round}: 9,000 in rotation ${within.toFixed(2)} µs/req; 10,000 after one other ${atCapacity.toFixed(2)} µs/req`,
  );
}
console.log(rows.join('\n'));
await cached.close();
process.exit(0);
