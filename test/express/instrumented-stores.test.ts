/**
 * pgsession's own stores as apps instrument them (issue 11 item 4): `store.get/set/touch/destroy`
 * wrapped or replaced on the instance after the middleware was made are called where, and with
 * what, express-session calls them; a wrapper that calls through keeps key-level merges and
 * no-resurrection; a store's own error reaches next(err) as it gave it. Un-instrumented stores
 * (and metrics' proxies) keep the engine-face fast path.
 */
import type { Express } from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { Cookie, kSessionStore, MemoryStore, type SessionJSON } from '../../src/index.js';
import { createSessionMetrics, instrumentStore } from '../../src/metrics/index.js';
import { fetchSeen, startPg } from './support.js';

type Started = Awaited<ReturnType<typeof startPg>>;
const running: Started[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((r) => r.close()));
});

type Cb = (err?: unknown, value?: unknown) => void;
interface Call {
  op: string;
  sid: string;
  sess?: SessionJSON;
}

/** Wrap the four methods on the instance, recording each call and passing it through. */
function instrument(store: MemoryStore): Call[] {
  const calls: Call[] = [];
  const target = store as unknown as Record<string, (...args: unknown[]) => unknown>;
  for (const op of ['get', 'set', 'touch', 'destroy']) {
    const original = target[op]!;
    target[op] = function (this: unknown, sid: unknown, ...rest: unknown[]) {
      const sess = op === 'set' || op === 'touch' ? (rest[0] as SessionJSON) : undefined;
      calls.push({ op, sid: sid as string, ...(sess ? { sess } : {}) });
      return original.call(this, sid, ...rest);
    };
  }
  return calls;
}

const routes = (app: Express) => {
  app.get('/login', (req, res) => {
    req.session.userId = 9;
    res.send(req.sessionID);
  });
  app.get('/a', (req, res) => {
    req.session.a = 1;
    res.send('a');
  });
  app.get('/b', async (req, res) => {
    await new Promise((r) => setTimeout(r, 30));
    req.session.b = 2;
    res.send('b');
  });
  app.get('/me', (req, res) =>
    res.json({ userId: req.session.userId ?? null, a: req.session.a ?? null, b: req.session.b ?? null }),
  );
  app.get('/logout', (req, res) => req.session.destroy(() => res.send('bye')));
  app.get('/regenerate', (req, res) => req.session.regenerate(() => res.send(req.sessionID)));
};

async function start(store: MemoryStore, options: Parameters<typeof startPg>[0] = {}) {
  const app = await startPg({ name: 'sid', store, touchAfter: 0, ...options }, routes);
  running.push(app);
  return app;
}

describe('a MemoryStore whose methods the app wrapped after creating the middleware', () => {
  it('is called as express-session calls it: get, set, touch and destroy with the session id and a session holding a Cookie', async () => {
    const store = new MemoryStore();
    const app = await start(store);
    const calls = instrument(store);
    const login = await fetchSeen(`${app.url}/login`, 'sid');
    const id = login.body;
    expect(calls.map((c) => c.op)).toEqual(['set']);
    expect(calls[0]!.sid).toBe(id);
    expect(calls[0]!.sess?.cookie).toBeInstanceOf(Cookie);
    expect(calls[0]!.sess).toMatchObject({ userId: 9 });
    calls.length = 0;
    expect(JSON.parse((await fetchSeen(`${app.url}/me`, 'sid', login.pair)).body).userId).toBe(9);
    await app.mw.flush();
    expect(calls.map((c) => [c.op, c.sid])).toEqual([
      ['get', id],
      ['touch', id],
    ]);
    calls.length = 0;
    await fetchSeen(`${app.url}/logout`, 'sid', login.pair);
    expect(calls.map((c) => [c.op, c.sid])).toEqual([
      ['get', id],
      ['destroy', id],
    ]);
    // A brand-new session regenerated: express-session destroys its id too.
    calls.length = 0;
    const fresh = await fetchSeen(`${app.url}/regenerate`, 'sid');
    expect(calls.map((c) => c.op)).toEqual(['destroy', 'set']);
    expect(calls[1]!.sid).toBe(fresh.body);
  });

  it('still merges two concurrent requests key by key, through the wrapper', async () => {
    const store = new MemoryStore();
    const app = await start(store);
    const login = await fetchSeen(`${app.url}/login`, 'sid');
    instrument(store);
    await Promise.all([
      fetchSeen(`${app.url}/b`, 'sid', login.pair),
      fetchSeen(`${app.url}/a`, 'sid', login.pair),
    ]);
    expect(JSON.parse((await fetchSeen(`${app.url}/me`, 'sid', login.pair)).body)).toEqual({
      userId: 9,
      a: 1,
      b: 2,
    });
  });

  it('never brings back a session a concurrent logout destroyed, and clears the cookie', async () => {
    const store = new MemoryStore();
    const app = await start(store);
    const login = await fetchSeen(`${app.url}/login`, 'sid');
    instrument(store);
    const [late] = await Promise.all([
      fetchSeen(`${app.url}/b`, 'sid', login.pair), // saves after a 30 ms wait
      fetchSeen(`${app.url}/logout`, 'sid', login.pair),
    ]);
    expect(late.cookie).toBe('clear');
    const ids = await new Promise<string[] | undefined>((r) => store.ids((_e, v) => r(v)));
    expect(ids).toEqual([]);
  });

  it("a replaced get's error reaches next(err) as the store gave it; ENOENT means no session", async () => {
    const store = new MemoryStore();
    const app = await start(store);
    const login = await fetchSeen(`${app.url}/login`, 'sid');
    const target = store as unknown as { get: (sid: string, cb: Cb) => void };
    target.get = (_sid, cb) => cb(new Error('boom!'));
    const failed = await fetchSeen(`${app.url}/me`, 'sid', login.pair);
    expect(failed.status).toBe(500);
    expect(failed.body).toBe('error: Error: boom!');
    expect(failed.cookie).toBe('none');
    target.get = (_sid, cb) => cb(Object.assign(new Error('gone'), { code: 'ENOENT' }));
    const missing = await fetchSeen(`${app.url}/me`, 'sid', login.pair);
    expect(missing.status).toBe(200);
    expect(JSON.parse(missing.body).userId).toBeNull();
  });

  it('a replaced set that fails: the error handler answers with that error, no cookie', async () => {
    const store = new MemoryStore();
    const app = await start(store);
    (store as unknown as { set: (sid: string, sess: unknown, cb: Cb) => void }).set = (_s, _v, cb) =>
      cb(new Error('disk full'));
    const res = await fetchSeen(`${app.url}/login`, 'sid');
    expect(res.status).toBe(500);
    expect(res.body).toBe('error: Error: disk full');
    expect(res.cookie).toBe('none');
  });
});

describe('the fast path', () => {
  it("an un-instrumented MemoryStore, or one behind metrics' proxy, is used through its engine face", async () => {
    const metrics = createSessionMetrics();
    const store = instrumentStore(new MemoryStore(), metrics);
    const face = store[kSessionStore];
    let creates = 0;
    const create = face.create.bind(face);
    face.create = (...args) => {
      creates++;
      return create(...args);
    };
    const app = await start(store);
    await fetchSeen(`${app.url}/login`, 'sid');
    expect(creates).toBe(1);
    expect(await metrics.registry.metrics()).toMatch(/method="create",outcome="ok"/);
  });
});
