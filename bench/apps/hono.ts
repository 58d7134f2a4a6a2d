/** The app on Hono (through @hono/node-server): pgsession's middleware, or a floor built the same way. */
import { getRequestListener } from '@hono/node-server';
import { type Context, Hono } from 'hono';
import { Floor } from '../lib/floor.js';
import { type BenchSession, dashboard, FIXED_SESSION, type Layer, logIn, sessionOptions } from './common.js';
import type { App, AppContext } from './context.js';
import { importPackage } from './package.js';

type Env = { Variables: { session: BenchSession } };

export async function honoApp(layer: Layer, ctx: AppContext): Promise<App> {
  const app = new Hono<Env>();
  let close = async () => {};
  if (layer === 'pgsession') {
    const { PgStore } = await importPackage('pgsession');
    const { pgsessionHono } = await importPackage('pgsession/hono');
    const store = new PgStore({ pool: ctx.pool(), createTableIfMissing: true, pruneSessionInterval: false });
    const middleware = pgsessionHono({ ...sessionOptions, store });
    ctx.exposeStore(store, middleware);
    app.use(middleware as never);
    close = async () => {
      await middleware.flush().catch(() => {});
      await store.close().catch(() => {});
    };
  } else if (layer === 'floor') {
    const floor = new Floor();
    ctx.exposeFloor(floor);
    app.use(async (c, next) => {
      const state = floor.load(c.req.header('cookie'));
      c.set('session', state.session);
      await next();
      const setCookie = floor.commit(state);
      if (setCookie !== null) {
        // As pgsession's adapter: `c.header` copies the finished response once, the copy takes the second.
        c.header('Set-Cookie', setCookie, { append: true });
        c.res.headers.set('Cache-Control', 'no-store');
      }
    });
  } else if (layer !== 'ceiling') {
    throw new Error(`Hono has no ${layer} layer`);
  }
  const session = layer === 'ceiling' ? () => FIXED_SESSION : (c: Context<Env>) => c.get('session');

  app.get('/dashboard', (c) => {
    const html = dashboard(session(c));
    return html === null ? c.text('Not logged in', 401) : c.html(html);
  });
  app.post('/login', (c) => {
    const s = session(c);
    if (s) logIn(s, undefined);
    return c.json({ ok: true });
  });
  return { listener: getRequestListener(app.fetch), close };
}
