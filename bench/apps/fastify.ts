/** The app on Fastify 5: pgsession's plugin, or a floor built the same way (onRequest + onSend hooks). */
import { createServer, type RequestListener } from 'node:http';
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import { Floor, type FloorState } from '../lib/floor.js';
import { type BenchSession, dashboard, FIXED_SESSION, type Layer, logIn, sessionOptions } from './common.js';
import type { App, AppContext } from './context.js';
import { importPackage } from './package.js';

type Req = FastifyRequest & { floor?: FloorState | undefined };
const sessionOf = (request: FastifyRequest) => (request as unknown as { session?: BenchSession }).session;

export async function fastifyApp(layer: Layer, ctx: AppContext): Promise<App> {
  let listener: RequestListener | undefined;
  const app = Fastify({
    serverFactory: (handler) => {
      listener = handler;
      return createServer();
    },
  });
  let close = async () => {};
  if (layer === 'pgsession') {
    const { PgStore } = await importPackage('pgsession');
    const { pgsessionFastify } = await importPackage('pgsession/fastify');
    const store = new PgStore({ pool: ctx.pool(), createTableIfMissing: true, pruneSessionInterval: false });
    await app.register(pgsessionFastify, { ...sessionOptions, store });
    ctx.exposeStore(store, app.pgsession);
    close = async () => {
      await app.close();
      await store.close().catch(() => {});
    };
  } else if (layer === 'floor') {
    const floor = new Floor();
    ctx.exposeFloor(floor);
    app.decorateRequest('floor', undefined);
    app.addHook('onRequest', async (request: Req) => {
      request.floor = floor.load(request.headers.cookie);
    });
    app.addHook('onSend', (request: Req, reply: FastifyReply, payload, done) => {
      const state = request.floor;
      const setCookie = state ? floor.commit(state) : null;
      if (setCookie !== null) {
        reply.header('set-cookie', setCookie);
        reply.header('cache-control', 'no-store');
      }
      done(null, payload);
    });
  } else if (layer !== 'ceiling') {
    throw new Error(`Fastify has no ${layer} layer`);
  }
  const session =
    layer === 'ceiling'
      ? () => FIXED_SESSION
      : layer === 'floor'
        ? (request: FastifyRequest) => (request as Req).floor?.session as BenchSession | undefined
        : sessionOf;

  app.get('/dashboard', async (request, reply) => {
    const html = dashboard(session(request));
    if (html === null) return reply.code(401).type('text/plain; charset=utf-8').send('Not logged in');
    return reply.type('text/html; charset=utf-8').send(html);
  });
  app.post('/login', async (request) => {
    const s = session(request);
    if (s) logIn(s, request.ip);
    return { ok: true };
  });
  await app.ready();
  if (!listener) throw new Error('Fastify did not hand over its request listener');
  return { listener, close };
}
