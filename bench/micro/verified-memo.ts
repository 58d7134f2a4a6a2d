/**
 * The verified-cookie memo at its capacity (10,000 values, `VERIFIED_MEMO_MAX` in
 * src/core/engine.ts) under round-robin access, as `npm run bench`'s rotating row drives it:
 * 10,002 sessions, the memo filled with 10,000 of them in cycle order, then passes over the
 * 10,000 with nothing in between and right after one other cookie. A plain LRU exactly as large
 * as the cycle would miss on every request of the pass after one other value came in (each
 * insert evicting the next value of the cycle), paying the HMAC and the SHA-256 again; a full
 * memo admits one new value in eight instead, so both passes should cost the same. CPU time per
 * request, bare Node objects.
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

cycle(10_000, 1); // the memo now holds exactly the 10,000 of the cycle, in cycle order
const rows: string[] = [];
for (let round = 1; round <= 3; round++) {
  const steady = cycle(10_000, 1);
  one(cookies[10_001], visit); // one other cookie, as the one-cookie measurement between rounds
  const afterOther = cycle(10_000, 1); // a plain LRU would miss on every request of this pass
  rows.push(
    `round ${round}: a pass of 10,000, nothing in between ${steady.toFixed(2)} µs/req; the pass after one other cookie ${afterOther.toFixed(2)} µs/req`,
  );
}
console.log(rows.join('\n'));
await cached.close();
process.exit(0);
