/**
 * The app as Fetch handlers (`Request` → `Response`) on Node's HTTP server through
 * @hono/node-server's bridge, the way a Next.js route handler or a Bun/Deno server is written:
 * pgsession/web's `handler()`, or a floor built the same way (a wrapper around the handler).
 * Every layer runs on the same bridge, so the ratios measure the session layer alone.
 */
import { getRequestListener } from '@hono/node-server';
import { Floor } from '../lib/floor.js';
import { type BenchSession, dashboard, FIXED_SESSION, type Layer, logIn, sessionOptions } from './common.js';
import type { App, AppContext } from './context.js';
import { importPackage } from './package.js';

type Handler = (request: Request, session: BenchSession | undefined) => Response;

const route: Handler = (request, session) => {
  const path = request.url.slice(request.url.indexOf('/', 8));
  if (path === '/dashboard') {
    const html = dashboard(session);
    return html === null
      ? new Response('Not logged in', {
          status: 401,
          headers: { 'content-type': 'text/plain; charset=utf-8' },
        })
      : new Response(html, { headers: { 'content-type': 'text/html; charset=utf-8' } });
  }
  if (path === '/login' && request.method === 'POST') {
    if (session) logIn(session, undefined);
    return Response.json({ ok: true });
  }
  return new Response(null, { status: 404 });
};

export async function webApp(layer: Layer, ctx: AppContext): Promise<App> {
  let fetch: (request: Request) => Response | Promise<Response>;
  let close = async () => {};
  if (layer === 'pgsession') {
    const { PgStore } = await importPackage('pgsession');
    const { webSessions } = await importPackage('pgsession/web');
    const store = new PgStore({ pool: ctx.pool(), createTableIfMissing: true, pruneSessionInterval: false });
    const sessions = webSessions({ ...sessionOptions, store });
    ctx.exposeStore(store, sessions);
    fetch = sessions.handler((request, session) => route(request, session as BenchSession | undefined));
    close = async () => {
      await sessions.flush().catch(() => {});
      await store.close().catch(() => {});
    };
  } else if (layer === 'floor') {
    const floor = new Floor();
    ctx.exposeFloor(floor);
    fetch = (request) => {
      const state = floor.load(request.headers.get('cookie') ?? undefined);
      const response = route(request, state.session as BenchSession);
      const setCookie = floor.commit(state);
      if (setCookie !== null) {
        response.headers.append('set-cookie', setCookie);
        response.headers.set('cache-control', 'no-store');
      }
      return response;
    };
  } else if (layer === 'ceiling') {
    fetch = (request) => route(request, FIXED_SESSION);
  } else {
    throw new Error(`the Fetch app has no ${layer} layer`);
  }
  return { listener: getRequestListener(fetch), close };
}
