import type { Server } from 'node:http';
import { createAdaptorServer, type HttpBindings } from '@hono/node-server';
import { type Context, Hono } from 'hono';
import { HTTPException } from 'hono/http-exception';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { SessionOptions } from '../../src/adapters/express/middleware.js';
import {
  type PgSessionEnv,
  type PgSessionHonoOptions,
  pgsessionHono,
} from '../../src/adapters/hono/index.js';
import { ConfigError, StoreUnavailableError } from '../../src/core/errors.js';
import { hashId } from '../../src/core/id.js';
import { kSessionStore } from '../../src/core/store.js';
import { MemoryStore } from '../../src/stores/memory/memory-store.js';
import { expressApp, flaky, idOf, shape } from '../helpers/adapters.js';
import { Client, listen } from '../helpers/http.js';
import { touchRecorder } from '../helpers/touch-recorder.js';

const SECRET = 'hono-adapter-test-secret-0123456789abcdef';
const HOUR = 3_600_000;

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  vi.useRealTimers();
  for (const close of closers.splice(0).reverse()) await close();
});

function options(
  store: SessionOptions['store'],
  extra: Partial<PgSessionHonoOptions> = {},
): PgSessionHonoOptions {
  return {
    secret: SECRET,
    store,
    resave: false,
    saveUninitialized: false,
    cookie: { maxAge: HOUR, sameSite: 'lax' },
    ...extra,
  };
}

function buildApp(opts: PgSessionHonoOptions): Hono {
  const app = new Hono();
  app.use(pgsessionHono(opts));
  app.post('/login', async (c) => {
    await c.get('session').regenerate();
    // After regenerate(), c.get('session') is the new session.
    c.get('session').userId = 42;
    return c.json({ ok: true });
  });
  app.get('/me', (c) => c.json({ userId: c.get('session')?.userId ?? null, id: c.get('sessionID') ?? null }));
  app.post('/logout', async (c) => {
    await c.get('session').destroy();
    return c.json({ ok: true, after: c.get('session') ?? null });
  });
  app.post('/visit', (c) => {
    const s = c.get('session');
    s.visits = (Number(s.visits) || 0) + 1;
    return c.json({ visits: s.visits });
  });
  return app;
}

type FetchApp = Parameters<typeof createAdaptorServer>[0]['fetch'];

async function honoApp(opts: PgSessionHonoOptions, app: { fetch: FetchApp } = buildApp(opts)) {
  const server = await listen(createAdaptorServer({ fetch: app.fetch }) as Server);
  closers.push(server.close);
  return new Client(server.url);
}

/** The reference: the Express middleware with the same routes. */
describe('Hono middleware', () => {
  it('logs in with a signed cookie in the same format as the Express middleware', async () => {
    const store = new MemoryStore();
    const client = await honoApp(options(store));
    const reference = await expressApp(options(store) as SessionOptions, closers);

    const anonymous = await client.get('/me');
    expect(await anonymous.json()).toMatchObject({ userId: null });
    expect(anonymous.headers.getSetCookie()).toEqual([]);

    const res = await client.post('/login');
    expect(res.status).toBe(200);
    const [setCookie] = res.headers.getSetCookie();
    expect(setCookie).toMatch(/^connect\.sid=s%3A[A-Za-z0-9_-]{43}\.[A-Za-z0-9%]+; /);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const id = idOf(setCookie!, SECRET);
    expect(await store[kSessionStore].get(hashId(id))).toMatchObject({ userId: '42' });
    expect(await store[kSessionStore].get(id)).toBeNull();

    const [expressCookie] = (await reference.post('/login')).headers.getSetCookie();
    expect(shape(setCookie!)).toBe(shape(expressCookie!));
    expect(shape(setCookie!)).toBe('connect.sid=<value>; Path=/; Expires=<date>; HttpOnly; SameSite=Lax');

    const me = await client.get('/me');
    expect(await me.json()).toEqual({ userId: 42, id });
    expect(me.headers.getSetCookie()).toEqual([]);
  });

  it('shares sessions with an Express app on the same store, both ways', async () => {
    const store = new MemoryStore();
    const honoClient = await honoApp(options(store));
    const expressClient = await expressApp(options(store) as SessionOptions, closers);

    await honoClient.post('/login');
    const onExpress = await expressClient.get('/me', { headers: { cookie: honoClient.cookieHeader() } });
    expect(await onExpress.json()).toMatchObject({
      userId: 42,
      id: idOf(`connect.sid=${honoClient.jar.get('connect.sid')}`, SECRET),
    });

    await expressClient.post('/login');
    const onHono = await honoClient.get('/me', { headers: { cookie: expressClient.cookieHeader() } });
    expect(await onHono.json()).toMatchObject({
      userId: 42,
      id: idOf(`connect.sid=${expressClient.jar.get('connect.sid')}`, SECRET),
    });
  });

  it('slides the expiry: rolling re-sends the cookie with a later Expires and touches the row', async () => {
    vi.useFakeTimers({ toFake: ['Date'], now: new Date('2030-01-01T00:00:00Z') });
    const store = new MemoryStore();
    const events: string[] = [];
    const client = await honoApp(
      options(store, { rolling: true, onEvent: (event) => events.push(event.type) }),
    );

    const first = (await client.post('/login')).headers.getSetCookie()[0]!;
    expect(first).toContain('Expires=Tue, 01 Jan 2030 01:00:00 GMT');
    const key = hashId(idOf(first, SECRET));
    const before = (await store[kSessionStore].get(key))!.expiresAt;

    vi.setSystemTime(new Date('2030-01-01T00:10:00Z'));
    const later = await client.get('/me');
    expect(await later.json()).toMatchObject({ userId: 42 });
    const second = later.headers.getSetCookie()[0]!;
    expect(second).toContain('Expires=Tue, 01 Jan 2030 01:10:00 GMT');
    expect(idOf(second, SECRET)).toBe(idOf(first, SECRET));
    expect(later.headers.get('cache-control')).toBe('no-store');
    await new Promise((r) => setTimeout(r, 10)); // the touch is written in the background
    expect(events).toContain('touched');
    expect((await store[kSessionStore].get(key))!.expiresAt).toBe(before + 10 * 60_000);

    vi.setSystemTime(new Date('2030-01-01T03:00:00Z'));
    const expired = await client.get('/me');
    expect(await expired.json()).toMatchObject({ userId: null });
  });

  it('logs out: the row is deleted and the cookie cleared; the old cookie no longer works', async () => {
    const store = new MemoryStore();
    const client = await honoApp(options(store));
    await client.post('/login');
    const cookie = client.cookieHeader();
    const key = hashId(idOf(cookie, SECRET));
    expect(await store[kSessionStore].get(key)).not.toBeNull();

    const res = await client.post('/logout');
    expect(await res.json()).toEqual({ ok: true, after: null });
    const [cleared] = res.headers.getSetCookie();
    expect(cleared).toMatch(/^connect\.sid=; Path=\/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly/);
    expect(await store[kSessionStore].get(key)).toBeNull();
    expect(client.jar.size).toBe(0);

    const replay = await client.get('/me', { headers: { cookie } });
    expect(await replay.json()).toMatchObject({ userId: null });
  });

  it('ignores a tampered or unsigned cookie and never adopts its id', async () => {
    const store = new MemoryStore();
    const client = await honoApp(options(store, { saveUninitialized: true }));
    await client.post('/login');
    const value = client.jar.get('connect.sid')!;
    const id = idOf(`connect.sid=${value}`, SECRET);
    const tampered = value.slice(0, -1) + (value.endsWith('A') ? 'B' : 'A');

    for (const cookie of [
      `connect.sid=${tampered}`,
      `connect.sid=${encodeURIComponent(`s:${id}`)}`,
      `connect.sid=${id}`,
    ]) {
      const res = await client.get('/me', { headers: { cookie } });
      const body = (await res.json()) as { userId: string | null; id: string };
      expect(body.userId).toBeNull();
      expect(body.id).not.toBe(id);
      expect(idOf(res.headers.getSetCookie()[0]!, SECRET)).toBe(body.id);
    }
    expect(await store[kSessionStore].get(hashId(id))).toMatchObject({ userId: '42' });
  });

  it('answers 503 with Retry-After when the store fails, and keeps the session', async () => {
    const memory = new MemoryStore();
    const { store, broken } = flaky(memory);
    const client = await honoApp(options(store));
    await client.post('/login');
    const cookie = client.cookieHeader();

    broken.add('get');
    const down = await client.get('/me');
    expect(down.status).toBe(503);
    expect(down.headers.get('retry-after')).toBe('2');
    expect(down.headers.getSetCookie()).toEqual([]);
    expect(client.cookieHeader()).toBe(cookie);

    broken.clear();
    await client.post('/visit');
    broken.add('update');
    const failedWrite = await client.post('/visit');
    expect(failedWrite.status).toBe(503);
    expect(failedWrite.headers.get('retry-after')).toBe('2');
    expect(failedWrite.headers.getSetCookie()).toEqual([]);

    broken.clear();
    expect(await (await client.get('/me')).json()).toMatchObject({ userId: 42 });
    expect(await (await client.post('/visit')).json()).toEqual({ visits: 2 });
  });

  it("hands the StoreUnavailableError to the app's onError as the HTTPException's cause", async () => {
    const { store, broken } = flaky(new MemoryStore());
    const app = buildApp(options(store));
    const seen: unknown[] = [];
    app.onError((err, c) => {
      seen.push(err);
      if (err instanceof HTTPException) return err.getResponse();
      return c.text('boom', 500);
    });
    const client = await honoApp(options(store), app);
    await client.post('/login');
    broken.add('get');
    const res = await client.get('/me');
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('2');
    expect(seen[0]).toBeInstanceOf(HTTPException);
    expect((seen[0] as HTTPException).cause).toBeInstanceOf(StoreUnavailableError);
  });

  it('types the session through the Env generic and gets the Context in genid/onEvent', async () => {
    const contexts: Context<PgSessionEnv>[] = [];
    const app = new Hono<PgSessionEnv>();
    let n = 0;
    app.use(
      pgsessionHono({
        ...options(new MemoryStore()),
        genid: (c) => {
          contexts.push(c);
          return `id-${++n}-${c.req.path.replace(/\W/g, '')}`.padEnd(43, 'x');
        },
      }),
    );
    app.post('/login', (c) => {
      const s = c.var.session;
      s.userId = 7;
      return c.text(c.var.sessionID);
    });
    // Works without a Node server too (app.request), e.g. in an app's own unit tests.
    const res = await app.request('/login', { method: 'POST' });
    expect(await res.text()).toBe('id-1-login'.padEnd(43, 'x'));
    expect(contexts).toHaveLength(1);
    expect(res.headers.get('set-cookie')).toMatch(/^connect\.sid=s%3Aid-1-login/);
  });

  it("composes with an app's own Env (bindings and variables of its own)", async () => {
    type AppEnv = { Bindings: HttpBindings; Variables: { requestId: string } };
    const app = new Hono<AppEnv>();
    app.use(async (c, next) => {
      c.set('requestId', 'r-1');
      await next();
    });
    app.use(pgsessionHono(options(new MemoryStore(), { onEvent: (event, c) => c.var.session && event })));
    app.post('/login', (c) => {
      const s = c.get('session');
      s.userId = 3;
      return c.json({
        requestId: c.var.requestId,
        userId: s.userId,
        remote: c.env.incoming.socket.remoteAddress,
      });
    });
    const client = await honoApp(options(new MemoryStore()), app);
    const res = await client.post('/login');
    expect(await res.json()).toEqual({ requestId: 'r-1', userId: 3, remote: '127.0.0.1' });
    expect(res.headers.getSetCookie()).toHaveLength(1);
  });

  it('destroys the session when the app unsets it (unset: "destroy")', async () => {
    const store = new MemoryStore();
    const app = buildApp(options(store, { unset: 'destroy' }));
    app.post('/forget', (c) => {
      c.set('session', null as unknown as PgSessionEnv['Variables']['session']);
      return c.text('ok');
    });
    const client = await honoApp(options(store), app);
    await client.post('/login');
    const key = hashId(idOf(client.cookieHeader(), SECRET));
    const res = await client.post('/forget');
    expect(res.headers.getSetCookie()[0]).toMatch(/Expires=Thu, 01 Jan 1970/);
    expect(await store[kSessionStore].get(key)).toBeNull();
  });

  it('flush({ touches: true }) writes the activity that touch throttling deferred; flush() does not', async () => {
    const { store, touches } = touchRecorder();
    const start = Date.UTC(2030, 0, 1);
    let now = start;
    const opts = options(store, { rolling: true, touchAfter: 60_000, now: () => now });
    const mw = pgsessionHono(opts);
    const app = new Hono<PgSessionEnv>();
    app.use(mw);
    app.post('/login', async (c) => {
      await c.get('session').regenerate();
      c.get('session').userId = 42;
      return c.json({ ok: true });
    });
    app.get('/me', (c) => c.json({ userId: c.get('session')?.userId ?? null }));
    const client = await honoApp(opts, app);
    await client.post('/login');
    now = start + 5_000; // within touchAfter: the touch is deferred, not written
    expect(await (await client.get('/me')).json()).toMatchObject({ userId: 42 });
    await mw.flush();
    expect(touches).toEqual([]);
    await mw.flush({ touches: true });
    expect(touches.map((t) => t.lastActiveAt)).toEqual([start + 5_000]);
  });

  it('a proxy option that is not a boolean is a ConfigError at start-up', () => {
    expect(() => pgsessionHono(options(new MemoryStore(), { proxy: 'yes' as unknown as boolean }))).toThrow(
      ConfigError,
    );
  });

  it('leaves requests outside cookie.path without a session', async () => {
    const client = await honoApp(options(new MemoryStore(), { cookie: { path: '/app' } }));
    expect(await (await client.get('/me')).json()).toEqual({ userId: null, id: null });
  });
});
