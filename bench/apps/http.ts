/** The app on raw `node:http`: pgsession's middleware called directly, no framework. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Floor, floorMiddleware } from '../lib/floor.js';
import { type BenchSession, dashboard, FIXED_SESSION, type Layer, logIn, sessionOptions } from './common.js';
import type { App, AppContext } from './context.js';
import { importPackage } from './package.js';

type Req = IncomingMessage & { session?: BenchSession };
type Middleware = (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void;

function fail(res: ServerResponse, err: unknown): void {
  process.stderr.write(`bench http: ${(err as Error)?.stack ?? String(err)}\n`);
  if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
  res.end('error');
}

function route(req: Req, res: ServerResponse): void {
  if (req.url === '/dashboard') {
    const html = dashboard(req.session);
    if (html === null) {
      res.writeHead(401, { 'content-type': 'text/plain; charset=utf-8' });
      res.end('Not logged in');
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(html);
  } else if (req.url === '/login' && req.method === 'POST') {
    if (req.session) logIn(req.session, req.socket.remoteAddress);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"ok":true}');
  } else {
    res.writeHead(404);
    res.end();
  }
}

export async function httpApp(layer: Layer, ctx: AppContext): Promise<App> {
  if (layer === 'ceiling') {
    return {
      listener: (req: Req, res) => {
        req.session = FIXED_SESSION;
        route(req, res);
      },
      close: async () => {},
    };
  }
  let middleware: Middleware;
  let close = async () => {};
  if (layer === 'floor') {
    const floor = new Floor();
    ctx.exposeFloor(floor);
    middleware = floorMiddleware(floor);
  } else if (layer === 'pgsession') {
    const { session, PgStore } = await importPackage('pgsession');
    const store = new PgStore({ pool: ctx.pool(), createTableIfMissing: true, pruneSessionInterval: false });
    const m = session({ ...sessionOptions, store });
    ctx.exposeStore(store, m);
    middleware = m;
    close = async () => {
      await m.flush().catch(() => {});
      await store.close().catch(() => {});
    };
  } else {
    throw new Error(`node:http has no ${layer} layer`);
  }
  return {
    listener: (req, res) => middleware(req, res, (err) => (err ? fail(res, err) : route(req, res))),
    close,
  };
}
