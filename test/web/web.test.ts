/**
 * The Fetch-API adapter (`pgsession/web`), served on Node's HTTP server through
 * `@hono/node-server`'s Request/Response bridge, as Next.js route handlers, Remix or Bun would
 * call it: same cookie as the Express middleware, commit before the response, 503 on a fault.
 */
import type { Server } from 'node:http';
import { createAdaptorServer } from '@hono/node-server';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { SessionOptions } from '../../src/adapters/express/middleware.js';
import { type WebSessionOptions, type WebSessions, webSessions } from '../../src/adapters/web/index.js';
import { ConfigError } from '../../src/core/errors.js';
import { hashId } from '../../src/core/id.js';
import { kSessionStore } from '../../src/core/store.js';
import { MemoryStore } from '../../src/stores/memory/memory-store.js';
import { PgStore } from '../../src/stores/postgres/index.js';
import { expressApp, flaky, idOf, shape } from '../helpers/adapters.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { Client, listen } from '../helpers/http.js';

const SECRET = 'web-adapter-test-secret-0123456789abcdefgh';
const HOUR = 3_600_000;

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  vi.useRealTimers();
  for (const close of closers.splice(0).reverse()) await close();
});

function options(store: SessionOptions['store'], extra: Partial<WebSessionOptions> = {}): WebSessionOptions {
  return {
    secret: SECRET,
    store,
    resave: false,
    saveUninitialized: false,
    cookie: { maxAge: HOUR, sameSite: 'lax' },
    ...extra,
  };
}

/** Routes written as Fetch handlers, the way a Next.js route handler file exports them. */
function routes(sessions: WebSessions) {
  return {
    'POST /login': async (request: Request) => {
      const loaded = await sessions.load(request);
      await loaded.session!.regenerate();
      loaded.session!.userId = 42;
      return loaded.respond(Response.json({ ok: true }));
    },
    'GET /me': sessions.handler(async (_request, s) =>
      Response.json({ userId: s?.userId ?? null, id: s?.id ?? null }),
    ),
    'POST /visit': sessions.handler(async (_request, s) => {
      s!.visits = (Number(s!.visits) || 0) + 1;
      return Response.json({ visits: s!.visits });
    }),
    'POST /logout': async (request: Request) => {
      const loaded = await sessions.load(request);
      await loaded.session!.destroy();
      return loaded.respond(Response.json({ ok: true, after: loaded.session ?? null }));
    },
    'POST /login-redirect': async (request: Request) => {
      const loaded = await sessions.load(request);
      await loaded.session!.regenerate();
      loaded.session!.userId = 7;
      // Response.redirect()'s headers are immutable: the adapter must answer with a copy.
      return loaded.respond(Response.redirect('http://127.0.0.1/dashboard', 303));
    },
  } as Record<string, (request: Request) => Promise<Response>>;
}

async function webApp(sessions: WebSessions) {
  const table = routes(sessions);
  const fetch = (request: Request) => {
    const route = table[`${request.method} ${new URL(request.url).pathname}`];
    return route ? route(request) : new Response('Not found', { status: 404 });
  };
  const server = await listen(createAdaptorServer({ fetch }) as Server);
  closers.push(server.close);
  return new Client(server.url);
}

describe('pgsession/web (Fetch API)', () => {
  it("logs in with the Express middleware's cookie format; Cache-Control: no-store", async () => {
    const store = new MemoryStore();
    const client = await webApp(webSessions(options(store)));
    const reference = await expressApp(options(store) as SessionOptions, closers);

    const anonymous = await client.get('/me');
    expect(await anonymous.json()).toMatchObject({ userId: null });
    expect(anonymous.headers.getSetCookie()).toEqual([]);

    const res = await client.post('/login');
    const [setCookie] = res.headers.getSetCookie();
    expect(res.headers.get('cache-control')).toBe('no-store');
    const id = idOf(setCookie!, SECRET);
    // Committed before the response: the store has it when the client reads the answer.
    expect(await store[kSessionStore].get(hashId(id))).toMatchObject({ userId: '42' });
    const [expressCookie] = (await reference.post('/login')).headers.getSetCookie();
    expect(shape(setCookie!)).toBe(shape(expressCookie!));

    expect(await (await client.get('/me')).json()).toEqual({ userId: 42, id });
  });

  it('shares sessions with an Express app on the same store, both ways', async () => {
    const store = new MemoryStore();
    const web = await webApp(webSessions(options(store)));
    const exp = await expressApp(options(store) as SessionOptions, closers);
    await web.post('/login');
    expect(await (await exp.get('/me', { headers: { cookie: web.cookieHeader() } })).json()).toMatchObject({
      userId: 42,
    });
    await exp.post('/login');
    expect(await (await web.get('/me', { headers: { cookie: exp.cookieHeader() } })).json()).toMatchObject({
      userId: 42,
    });
  });

  it('slides the expiry with rolling: a later Expires on each response', async () => {
    vi.useFakeTimers({ toFake: ['Date'], now: new Date('2030-01-01T00:00:00Z') });
    const client = await webApp(webSessions(options(new MemoryStore(), { rolling: true })));
    const first = (await client.post('/login')).headers.getSetCookie()[0]!;
    expect(first).toContain('Expires=Tue, 01 Jan 2030 01:00:00 GMT');
    vi.setSystemTime(new Date('2030-01-01T00:10:00Z'));
    const later = await client.get('/me');
    expect(await later.json()).toMatchObject({ userId: 42 });
    expect(later.headers.getSetCookie()[0]).toContain('Expires=Tue, 01 Jan 2030 01:10:00 GMT');
    vi.setSystemTime(new Date('2030-01-01T03:00:00Z'));
    expect(await (await client.get('/me')).json()).toMatchObject({ userId: null });
  });

  it('logs out: the row is deleted, the cookie cleared, the old cookie anonymous', async () => {
    const store = new MemoryStore();
    const client = await webApp(webSessions(options(store)));
    await client.post('/login');
    const cookie = client.cookieHeader();
    const res = await client.post('/logout');
    expect(await res.json()).toEqual({ ok: true, after: null });
    expect(res.headers.getSetCookie()[0]).toMatch(/^connect\.sid=; Path=\/; Expires=Thu, 01 Jan 1970/);
    expect(await store[kSessionStore].get(hashId(idOf(cookie, SECRET)))).toBeNull();
    expect(await (await client.get('/me', { headers: { cookie } })).json()).toMatchObject({ userId: null });
  });

  it('a tampered or unsigned cookie is anonymous and its id never adopted', async () => {
    const client = await webApp(webSessions(options(new MemoryStore())));
    await client.post('/login');
    const value = client.jar.get('connect.sid')!;
    const id = idOf(`connect.sid=${value}`, SECRET);
    const tampered = value.slice(0, -1) + (value.endsWith('A') ? 'B' : 'A');
    for (const cookie of [`connect.sid=${tampered}`, `connect.sid=${id}`]) {
      const body = (await (await client.get('/me', { headers: { cookie } })).json()) as { userId: unknown };
      expect(body.userId).toBeNull();
    }
  });

  it('adds the cookie to a redirect (immutable headers) by answering with a copy', async () => {
    const store = new MemoryStore();
    const client = await webApp(webSessions(options(store)));
    const res = await client.post('/login-redirect');
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('http://127.0.0.1/dashboard');
    const id = idOf(res.headers.getSetCookie()[0]!, SECRET);
    expect(await store[kSessionStore].get(hashId(id))).toMatchObject({ userId: '7' });
  });

  it('a store fault is 503 with Retry-After, the cookie untouched; the session is intact after', async () => {
    const { store, broken } = flaky(new MemoryStore());
    const client = await webApp(webSessions(options(store)));
    await client.post('/login');
    const cookie = client.cookieHeader();
    broken.add('get');
    const down = await client.get('/me');
    expect(down.status).toBe(503);
    expect(down.headers.get('retry-after')).toBe('2');
    expect(down.headers.getSetCookie()).toEqual([]);
    broken.clear();
    broken.add('update');
    await client.post('/visit').then((r) => expect(r.status).toBe(503));
    broken.clear();
    expect(client.cookieHeader()).toBe(cookie);
    expect(await (await client.get('/me')).json()).toMatchObject({ userId: 42 });
    expect(await (await client.post('/visit')).json()).toEqual({ visits: 1 });
  });

  it('requests outside cookie.path get no session; inside it (query string and all) they do', async () => {
    const sessions = webSessions(options(new MemoryStore(), { cookie: { path: '/app' } }));
    expect((await sessions.load(new Request('http://localhost/other'))).session).toBeUndefined();
    expect((await sessions.load(new Request('http://localhost/app/x?next=/other'))).session).toBeDefined();
    expect((await sessions.load(new Request('http://localhost:8080/app'))).session).toBeDefined();
  });

  it('bad options are a ConfigError at start-up', () => {
    expect(() => webSessions(undefined as unknown as WebSessionOptions)).toThrow(ConfigError);
    expect(() => webSessions({ ...options(new MemoryStore()), proxy: 'yes' as unknown as boolean })).toThrow(
      ConfigError,
    );
    expect(() => webSessions({ ...options(new MemoryStore()), secret: '' })).toThrow(ConfigError);
  });
});

describe('pgsession/web on PostgreSQL: restarts and other processes', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  function server() {
    const store = new PgStore({ pool: db.pool, pruneSessionInterval: false, createTableIfMissing: true });
    const sessions = webSessions(options(store));
    closers.push(() => store.close());
    return { store, sessions };
  }

  it('a restart keeps the session; a logout on one server is seen at once by another', async () => {
    const a = server();
    const clientA = await webApp(a.sessions);
    await clientA.post('/login');
    const cookie = clientA.cookieHeader();

    // "Restart": a new store and adapter on the same table.
    const b = server();
    const clientB = await webApp(b.sessions);
    expect(await (await clientB.get('/me', { headers: { cookie } })).json()).toMatchObject({ userId: 42 });
    // Cached on B now; a logout on A must still reach it.
    expect(await (await clientB.get('/me', { headers: { cookie } })).json()).toMatchObject({ userId: 42 });

    await clientA.post('/logout');
    await vi.waitFor(
      async () =>
        expect(await (await clientB.get('/me', { headers: { cookie } })).json()).toMatchObject({
          userId: null,
        }),
      { timeout: 2_000, interval: 20 },
    );
  });
});
