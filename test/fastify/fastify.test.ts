import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { SessionOptions } from '../../src/adapters/express/middleware.js';
import { pgsessionFastify } from '../../src/adapters/fastify/index.js';
import { hashId } from '../../src/core/id.js';
import { kSessionStore } from '../../src/core/store.js';
import { MemoryStore } from '../../src/stores/memory/memory-store.js';
import { expressApp, flaky, idOf, shape } from '../helpers/adapters.js';
import { Client } from '../helpers/http.js';
import { touchRecorder } from '../helpers/touch-recorder.js';

const SECRET = 'fastify-adapter-test-secret-0123456789abcdef';
const HOUR = 3_600_000;

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  vi.useRealTimers();
  for (const close of closers.splice(0).reverse()) await close();
});

function options(store: SessionOptions['store'], extra: Partial<SessionOptions> = {}): SessionOptions {
  return {
    secret: SECRET,
    store,
    resave: false,
    saveUninitialized: false,
    cookie: { maxAge: HOUR, sameSite: 'lax' },
    ...extra,
  };
}

function routes(app: FastifyInstance): void {
  app.post('/login', async (request) => {
    await request.session.regenerate();
    request.session.userId = 42;
    return { ok: true };
  });
  app.get('/me', async (request) => ({
    userId: request.session?.userId ?? null,
    id: request.sessionID ?? null,
  }));
  app.post('/logout', async (request) => {
    await request.session.destroy();
    return { ok: true };
  });
  app.post('/visit', async (request) => {
    request.session.visits = (Number(request.session.visits) || 0) + 1;
    return { visits: request.session.visits };
  });
}

async function fastifyApp(opts: SessionOptions, setup?: (app: FastifyInstance) => Promise<void>) {
  const app = Fastify();
  if (setup) await setup(app);
  else await app.register(pgsessionFastify, opts);
  routes(app);
  await app.listen({ port: 0, host: '127.0.0.1' });
  closers.push(() => app.close());
  const { port } = app.server.address() as AddressInfo;
  return { app, client: new Client(`http://127.0.0.1:${port}`) };
}

/** The reference: the Express middleware with the same routes. */
describe('Fastify plugin', () => {
  it('logs in with a signed cookie in the same format as the Express middleware', async () => {
    const store = new MemoryStore();
    const { client } = await fastifyApp(options(store));
    const reference = await expressApp(options(store), closers);

    const anonymous = await client.get('/me');
    expect(await anonymous.json()).toMatchObject({ userId: null });
    expect(anonymous.headers.getSetCookie()).toEqual([]); // saveUninitialized: false

    const res = await client.post('/login');
    expect(res.status).toBe(200);
    const [setCookie] = res.headers.getSetCookie();
    expect(setCookie).toMatch(/^connect\.sid=s%3A[A-Za-z0-9_-]{43}\.[A-Za-z0-9%]+; /);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const id = idOf(setCookie!, SECRET);
    // Stored under the hash of the id, never the id.
    expect(await store[kSessionStore].get(hashId(id))).toMatchObject({ userId: '42' });
    expect(await store[kSessionStore].get(id)).toBeNull();

    const expressRes = await reference.post('/login');
    const [expressCookie] = expressRes.headers.getSetCookie();
    expect(shape(setCookie!)).toBe(shape(expressCookie!));
    expect(shape(setCookie!)).toBe('connect.sid=<value>; Path=/; Expires=<date>; HttpOnly; SameSite=Lax');

    const me = await client.get('/me');
    expect(await me.json()).toEqual({ userId: 42, id });
    // Unchanged session, not rolling: no cookie re-sent, nothing written.
    expect(me.headers.getSetCookie()).toEqual([]);
  });

  it('shares sessions with an Express app on the same store, both ways', async () => {
    const store = new MemoryStore();
    const { client: fastifyClient } = await fastifyApp(options(store));
    const expressClient = await expressApp(options(store), closers);

    await fastifyClient.post('/login');
    const onExpress = await expressClient.get('/me', { headers: { cookie: fastifyClient.cookieHeader() } });
    expect(await onExpress.json()).toMatchObject({
      userId: 42,
      id: idOf(`connect.sid=${fastifyClient.jar.get('connect.sid')}`, SECRET),
    });

    await expressClient.post('/login');
    const onFastify = await fastifyClient.get('/me', { headers: { cookie: expressClient.cookieHeader() } });
    expect(await onFastify.json()).toMatchObject({
      userId: 42,
      id: idOf(`connect.sid=${expressClient.jar.get('connect.sid')}`, SECRET),
    });
  });

  it('slides the expiry: rolling re-sends the cookie with a later Expires and touches the row', async () => {
    vi.useFakeTimers({ toFake: ['Date'], now: new Date('2030-01-01T00:00:00Z') });
    const store = new MemoryStore();
    const events: string[] = [];
    const { client } = await fastifyApp(
      options(store, { rolling: true, onEvent: (event) => events.push(event.type) }),
    );

    const login = await client.post('/login');
    const first = login.headers.getSetCookie()[0]!;
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

    // Past the idle timeout the session is gone server-side, whatever the cookie says.
    vi.setSystemTime(new Date('2030-01-01T03:00:00Z'));
    const expired = await client.get('/me', {
      headers: { cookie: `connect.sid=${encodeURIComponent(`s:${idOf(second, SECRET)}`)}` },
    });
    expect(await expired.json()).toMatchObject({ userId: null });
  });

  it('logs out: the row is deleted and the cookie cleared; the old cookie no longer works', async () => {
    const store = new MemoryStore();
    const { client } = await fastifyApp(options(store));
    await client.post('/login');
    const cookie = client.cookieHeader();
    const key = hashId(idOf(cookie, SECRET));
    expect(await store[kSessionStore].get(key)).not.toBeNull();

    const res = await client.post('/logout');
    expect(res.status).toBe(200);
    const [cleared] = res.headers.getSetCookie();
    expect(cleared).toMatch(/^connect\.sid=; Path=\/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly/);
    expect(await store[kSessionStore].get(key)).toBeNull();
    expect(client.jar.size).toBe(0);

    const replay = await client.get('/me', { headers: { cookie } });
    expect(await replay.json()).toMatchObject({ userId: null });
  });

  it('ignores a tampered or unsigned cookie and never adopts its id', async () => {
    const store = new MemoryStore();
    const { client } = await fastifyApp(options(store, { saveUninitialized: true }));
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
      const fresh = res.headers.getSetCookie()[0]!;
      expect(idOf(fresh, SECRET)).toBe(body.id);
    }
    // The real session is untouched.
    expect(await store[kSessionStore].get(hashId(id))).toMatchObject({ userId: '42' });
  });

  it('answers 503 with Retry-After when the store fails, and keeps the session', async () => {
    const memory = new MemoryStore();
    const { store, broken } = flaky(memory);
    const { client } = await fastifyApp(options(store));
    await client.post('/login');
    const cookie = client.cookieHeader();

    broken.add('get');
    const down = await client.get('/me');
    expect(down.status).toBe(503);
    expect(down.headers.get('retry-after')).toBe('2');
    expect(down.headers.getSetCookie()).toEqual([]);
    expect(await down.json()).toMatchObject({ code: 'PGSESSION_STORE_UNAVAILABLE', statusCode: 503 });
    expect(client.cookieHeader()).toBe(cookie);

    // A failed write (the commit) is a 503 too, with no cookie, and the stored session survives.
    broken.clear();
    await client.post('/visit');
    broken.add('update');
    const failedWrite = await client.post('/visit');
    expect(failedWrite.status).toBe(503);
    expect(failedWrite.headers.get('retry-after')).toBe('2');
    expect(failedWrite.headers.getSetCookie()).toEqual([]);

    broken.clear();
    const back = await client.get('/me');
    expect(await back.json()).toMatchObject({ userId: 42 });
    expect(await (await client.post('/visit')).json()).toEqual({ visits: 2 });
  });

  it('is not encapsulated: its hooks reach routes in child contexts', async () => {
    const store = new MemoryStore();
    const { app, client } = await fastifyApp(options(store), async (root) => {
      await root.register(pgsessionFastify, options(store));
      await root.register(
        async (child) => {
          child.get('/me', async (request) => ({ userId: request.session.userId ?? null }));
        },
        { prefix: '/child' },
      );
    });
    await client.post('/login');
    expect(await (await client.get('/child/me')).json()).toEqual({ userId: 42 });
    expect(app.hasRequestDecorator('session')).toBe(true);
    expect(app.pgsession.store).toBe(store[kSessionStore]);
    await app.pgsession.flush();
  });

  it('app.close() writes the activity that touch throttling deferred (graceful shutdown)', async () => {
    const { store, touches } = touchRecorder();
    const start = Date.UTC(2030, 0, 1);
    let now = start;
    const { app, client } = await fastifyApp(
      options(store, { rolling: true, touchAfter: 60_000, now: () => now }),
    );
    await client.post('/login');
    now = start + 5_000; // within touchAfter: the touch is deferred, not written
    expect(await (await client.get('/me')).json()).toMatchObject({ userId: 42 });
    await new Promise((r) => setTimeout(r, 10));
    expect(touches).toEqual([]);
    await app.close();
    expect(touches.map((t) => t.lastActiveAt)).toEqual([start + 5_000]);
  });

  it('leaves requests outside cookie.path without a session', async () => {
    const store = new MemoryStore();
    const { client } = await fastifyApp(options(store, { cookie: { path: '/app' } }));
    const res = await client.get('/me');
    expect(await res.json()).toEqual({ userId: null, id: null });
  });
});
