/**
 * DBSC through every adapter (the protocol is the engine's, so each adapter only routes the
 * two endpoints and sends the registration offer): Fastify, Hono, Koa and the Fetch adapter,
 * on PgStore, each with login, registration, a copied cookie refused under require once its
 * bound cookie expired, the owner's refresh, and logout.
 */
import http, { type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAdaptorServer } from '@hono/node-server';
import Fastify from 'fastify';
import { Hono } from 'hono';
import Koa from 'koa';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { pgsessionFastify } from '../../src/adapters/fastify/index.js';
import { pgsessionHono } from '../../src/adapters/hono/index.js';
import { pgsessionKoa } from '../../src/adapters/koa/index.js';
import { webSessions } from '../../src/adapters/web/index.js';
import type { SessionEvent } from '../../src/core/engine.js';
import { PgStore } from '../../src/stores/postgres/index.js';
import { listen } from '../helpers/http.js';
import { DbscBrowser } from './dbsc-client.js';
import { type Clock, dbscSuite, eventsOf, MINUTE, SECRET } from './support.js';

const suite = dbscSuite();
const { closers } = suite;

function options(pool: pg.Pool, clock: Clock) {
  const store = new PgStore({ pool, pruneSessionInterval: false, now: () => clock.now });
  closers.push(() => store.close());
  return {
    secret: SECRET,
    store,
    resave: false,
    saveUninitialized: false,
    cookie: { maxAge: 24 * 60 * MINUTE, sameSite: 'lax' as const },
    now: () => clock.now,
    deviceBound: { enforce: 'require' as const },
  };
}

type Options = ReturnType<typeof options>;

type Start = (opts: Options, events: SessionEvent[]) => Promise<string>;

const adapters: Record<string, Start> = {
  fastify: async (opts, events) => {
    const app = Fastify();
    await app.register(pgsessionFastify, { ...opts, onEvent: (e) => events.push(e) });
    app.post('/login', async (request) => {
      await request.session.regenerate();
      request.session.userId = 42;
      return { ok: true };
    });
    app.get('/me', async (request) => ({ userId: request.session?.userId ?? null }));
    app.post('/logout', async (request) => {
      await request.session.destroy();
      return { ok: true };
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    closers.push(() => app.close());
    return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  },
  hono: async (opts, events) => {
    const app = new Hono();
    app.use(pgsessionHono({ ...opts, onEvent: (e) => events.push(e) }));
    app.post('/login', async (c) => {
      await c.get('session').regenerate();
      c.get('session').userId = 42;
      return c.json({ ok: true });
    });
    app.get('/me', (c) => c.json({ userId: c.get('session')?.userId ?? null }));
    app.post('/logout', async (c) => {
      await c.get('session').destroy();
      return c.json({ ok: true });
    });
    const server = await listen(createAdaptorServer({ fetch: app.fetch }) as Server);
    closers.push(server.close);
    return server.url;
  },
  koa: async (opts, events) => {
    const app = new Koa();
    app.silent = true;
    app.use(pgsessionKoa({ ...opts, onEvent: (e) => events.push(e) }));
    app.use(async (ctx) => {
      const route = `${ctx.method} ${ctx.path}`;
      if (route === 'POST /login') {
        await ctx.session.regenerate();
        ctx.session.userId = 42;
        ctx.body = { ok: true };
      } else if (route === 'GET /me') {
        ctx.body = { userId: ctx.session?.userId ?? null };
      } else if (route === 'POST /logout') {
        await ctx.session.destroy();
        ctx.body = { ok: true };
      }
    });
    const server = await listen(http.createServer(app.callback()));
    closers.push(server.close);
    return server.url;
  },
  web: async (opts, events) => {
    const sessions = webSessions({ ...opts, onEvent: (e) => events.push(e) });
    const handlers: Record<string, (request: Request) => Promise<Response>> = {
      'GET /me': sessions.handler(async (_r, s) => Response.json({ userId: s?.userId ?? null })),
      'POST /logout': sessions.handler(async (_r, s) => {
        await s!.destroy();
        return Response.json({ ok: true });
      }),
    };
    // Login through load(), as a framework that builds its own response would; the DBSC
    // endpoints through device(), which such an app calls first (handler() routes them itself).
    handlers['POST /login'] = async (request) => {
      const loaded = await sessions.load(request);
      await loaded.session!.regenerate();
      loaded.session!.userId = 42;
      return loaded.respond(Response.json({ ok: true }));
    };
    const fetch = async (request: Request) => {
      const device = await sessions.device(request);
      if (device) return device;
      const route = handlers[`${request.method} ${new URL(request.url).pathname}`];
      return route ? route(request) : new Response('Not found', { status: 404 });
    };
    const server = await listen(createAdaptorServer({ fetch }) as Server);
    closers.push(server.close);
    return server.url;
  },
};

describe.each(Object.keys(adapters))('%s', (name) => {
  it('login offers registration; register, copied cookie refused after expiry, owner refreshes, logout ends it', async () => {
    const clock: Clock = { now: Date.now() };
    const events: SessionEvent[] = [];
    const url = await adapters[name]!(options(suite.db.pool, clock), events);
    const browser = new DbscBrowser(url);
    const login = await browser.post('/login');
    expect(login.status).toBe(200);
    expect(login.headers.get('secure-session-registration')).toMatch(
      /^\(ES256 RS256\);path="\/\.pgsession\/dbsc\/register";challenge="/,
    );
    const registered = await browser.register();
    expect(registered.status).toBe(200);
    expect(registered.headers.getSetCookie()[0]).toMatch(/^connect\.sid\.bound=/);
    expect(browser.session?.refresh_url).toBe('/.pgsession/dbsc/refresh');
    expect(eventsOf(events, 'device-registered')).toHaveLength(1);

    const thief = new DbscBrowser(url);
    thief.jar.set('connect.sid', browser.jar.get('connect.sid')!);
    thief.jar.set('connect.sid.bound', browser.jar.get('connect.sid.bound')!);
    expect(await (await thief.get('/me')).json()).toEqual({ userId: 42 });
    clock.now += 11 * MINUTE;
    expect(await (await thief.get('/me')).json()).toEqual({ userId: null });
    expect(eventsOf(events, 'device-unbound-request').at(-1)).toMatchObject({
      reason: 'expired',
      action: 'refused',
    });

    const first = await browser.refreshOnce();
    expect(first.status).toBe(403);
    expect(first.headers.get('secure-session-challenge')).toMatch(/^"[^"]+";id="[\w-]+"$/);
    expect((await browser.refreshOnce()).status).toBe(200);
    expect(await (await browser.get('/me')).json()).toEqual({ userId: 42 });
    // Bad input stays a 4xx on every adapter.
    expect((await browser.request('/.pgsession/dbsc/refresh', { method: 'GET' })).status).toBe(405);
    expect(
      (
        await browser.request('/.pgsession/dbsc/register', {
          method: 'POST',
          headers: { 'secure-session-response': '!' },
        })
      ).status,
    ).toBe(400);

    expect((await browser.post('/logout')).status).toBe(200);
    expect((await browser.refresh()).status).toBe(401);
  });
});
