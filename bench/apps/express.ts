/**
 * The seed-shaped Express 5 app: urlencoded body parser, the session middleware, a `requireAuth`
 * guard and `GET /dashboard`. With `incumbent` and `pgsession` only the two imports differ
 * (express-session + connect-pg-simple, or `pgsession` + `pgsession/connect-pg-simple`); the
 * floor and the ceiling replace the session middleware (`ceilingDict`: see common.ts).
 */
import { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import { toDictionaryMode } from '../../src/adapters/express/dictionary-mode.js';
import { Floor, floorMiddleware } from '../lib/floor.js';
import { type BenchSession, dashboard, FIXED_SESSION, type Layer, logIn, sessionOptions } from './common.js';
import type { App, AppContext } from './context.js';
import { importPackage } from './package.js';

const require = createRequire(import.meta.url);

type WithSession = Request & { session?: BenchSession & { destroy?(cb: (err?: unknown) => void): void } };

type StoreFactory = (session: unknown) => new (options: Record<string, unknown>) => object;

export async function expressApp(layer: Layer, ctx: AppContext): Promise<App> {
  const app = express();
  app.disable('x-powered-by');
  app.use(express.urlencoded({ extended: false }));
  let close = async () => {};

  if (layer === 'incumbent' || layer === 'pgsession') {
    let session: (options: Record<string, unknown>) => RequestHandler;
    let connectPgSimple: StoreFactory;
    if (layer === 'incumbent') {
      session = require('express-session');
      connectPgSimple = require('connect-pg-simple');
    } else {
      session = (await importPackage('pgsession')).default as unknown as typeof session;
      connectPgSimple = (await importPackage('pgsession/connect-pg-simple'))
        .default as unknown as StoreFactory;
    }
    const PgSession = connectPgSimple(session);
    const store = new PgSession({
      pool: ctx.pool(),
      createTableIfMissing: true,
      pruneSessionInterval: false,
      ...ctx.storeOptions,
    });
    const middleware = session({
      ...sessionOptions,
      ...(layer === 'pgsession' ? ctx.sessionOptions : {}),
      store,
    });
    app.use(middleware);
    ctx.exposeStore(store, middleware);
    close = async () => {
      await (middleware as { flush?: () => Promise<void> }).flush?.().catch(() => {});
      await (store as { close?: () => Promise<void> }).close?.().catch(() => {});
    };
    if (ctx.auth) {
      const { createAuth, runAuthMigrations } = await importPackage('pgsession/auth');
      const auth = createAuth({ pool: ctx.pool(), session: middleware as never });
      await runAuthMigrations(ctx.pool());
      await auth.ready();
      await ctx.auth(auth);
      app.post('/login', express.json(), async (req: Request, res: Response, next: NextFunction) => {
        try {
          const { email, password } = req.body as { email?: string; password?: string };
          const user = await auth.login(req as never, email, password);
          res.status(user ? 200 : 401).json({ ok: user !== null });
        } catch (err) {
          next(err);
        }
      });
    }
  } else if (layer === 'floor') {
    const floor = new Floor();
    app.use(floorMiddleware(floor) as RequestHandler);
    ctx.exposeFloor(floor);
  } else if (layer === 'ceilingDict') {
    // The ceiling, with req and res switched to dictionary properties as pgsession does.
    app.use((req, res, next) => {
      toDictionaryMode(req, IncomingMessage.prototype, 'httpVersion');
      toDictionaryMode(res, ServerResponse.prototype, 'sendDate');
      (req as unknown as { session: BenchSession }).session = FIXED_SESSION;
      next();
    });
  } else {
    // The ceiling: the same app with no session layer, one line in its place.
    app.use((req, _res, next) => {
      (req as unknown as { session: BenchSession }).session = FIXED_SESSION;
      next();
    });
  }

  const requireAuth = (req: WithSession, res: Response, next: NextFunction) => {
    if (typeof req.session?.userId !== 'number') {
      res.status(401).type('text').send('Not logged in');
      return;
    }
    next();
  };

  app.post('/login', (req: WithSession, res: Response) => {
    if (req.session) logIn(req.session, req.socket.remoteAddress);
    res.json({ ok: true });
  });
  app.get('/dashboard', requireAuth, (req: WithSession, res: Response) => {
    res.type('html').send(dashboard(req.session));
  });
  app.post('/logout', (req: WithSession, res: Response, next: NextFunction) => {
    const s = req.session;
    if (!s?.destroy) {
      res.status(204).end();
      return;
    }
    s.destroy((err) => (err ? next(err) : res.status(204).end()));
  });
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    process.stderr.write(`bench express (${layer}): ${(err as Error)?.stack ?? String(err)}\n`);
    if (!res.headersSent) res.status(500).json({ error: String((err as Error)?.message ?? err) });
  });
  return { listener: app, close };
}
