/**
 * pgsession for Fastify: the same engine, options, signed cookie and `session` table as the
 * Express middleware, so one store (and one cookie) can serve Express and Fastify apps alike.
 *
 * ```ts
 * import Fastify from 'fastify';
 * import { PgStore } from 'pgsession';
 * import { pgsessionFastify } from 'pgsession/fastify';
 *
 * const app = Fastify();
 * await app.register(pgsessionFastify, { secret: process.env.SESSION_SECRET!, store: new PgStore({ pool }) });
 * app.post('/login', async (request) => {
 *   await request.session.regenerate();
 *   request.session.userId = user.id;
 *   return { ok: true };
 * });
 * ```
 *
 * @module
 */
import type { IncomingMessage } from 'node:http';
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { RequestSession } from '../../core/request-session.js';
import type { Session, SessionData, SessionHost } from '../../core/session.js';
import {
  attachHandle,
  isSecureRequest,
  nodeDeviceRequest,
  pathnameOf,
  REGISTRATION_HEADER,
  resolveSessionOptions,
  retryAfterOf,
  type SessionHandle,
  type SessionOptions,
  SKIPPED_HEADER,
  sessionHeaders,
} from '../http.js';

/**
 * Options of {@link pgsessionFastify}: exactly the Express middleware's. Callbacks that take a
 * request (`genid`, `onEvent`) receive Node's `IncomingMessage` (`request.raw`). `proxy`
 * `undefined` follows Fastify's own `trustProxy` (through `request.protocol`).
 */
export type PgSessionFastifyOptions = SessionOptions;

/**
 * What the plugin adds to the Fastify instance as `fastify.pgsession`: the engine, the store's
 * engine face, and `flush()`, which `onClose` calls with `{ touches: true }`, so a graceful
 * shutdown keeps every session's last activity.
 */
export type PgSessionFastifyHandle = SessionHandle;

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * The request's session (express-session's API: data as properties, plus `regenerate`,
     * `destroy`, `save`, `reload`, `touch`). Assign `null` to unset it. Undefined on routes
     * outside `cookie.path` and after `destroy()`.
     */
    session: Session & Partial<SessionData>;
    /** The session id (never logged or stored by pgsession; the store sees its SHA-256). */
    readonly sessionID: string;
  }
  interface FastifyInstance {
    /** pgsession's engine and store, for shutdown and tooling. */
    readonly pgsession: PgSessionFastifyHandle;
  }
}

/** The session hangs off the raw Node request, as in Express; `request.session` is a view of it. */
type Host = IncomingMessage & SessionHost;

/**
 * The request's session context, on the request itself (a decoration, so Fastify keeps one shape
 * for every request), until `onSend` commits it; null before and after (a later onSend pass, the
 * error reply, must not set cookies).
 */
const kSession: unique symbol = Symbol('pgsession.fastify.session');
type Req = FastifyRequest & { [kSession]: RequestSession | null };

/** Store faults are 503s with Retry-After (fastify's error handler reads `status`). */
function toReplyError(reply: FastifyReply, err: unknown): Error {
  const retryAfter = retryAfterOf(err);
  if (retryAfter !== undefined) reply.header('retry-after', retryAfter);
  return err as Error;
}

/** Fastify's own `request.protocol` (its `trustProxy` setting). */
const fastifySecure = (request: FastifyRequest): boolean => request.protocol === 'https';

/** Put the session's headers on the reply; false if deciding them failed (`done` got the error). */
function sendHeaders(ctx: RequestSession, reply: FastifyReply, done: (err: Error) => void): boolean {
  let headers: ReturnType<typeof sessionHeaders>;
  try {
    headers = sessionHeaders(ctx);
  } catch (err) {
    done(err as Error);
    return false;
  }
  if (headers) {
    reply.header('set-cookie', headers.setCookie);
    reply.header('cache-control', headers.cacheControl);
    if (headers.registration) reply.header(REGISTRATION_HEADER, headers.registration);
  }
  return true;
}

const plugin: FastifyPluginAsync<PgSessionFastifyOptions> = async (fastify: FastifyInstance, options) => {
  const { engine, sessionStore, proxy, cookiePath } = resolveSessionOptions(options);

  fastify.decorateRequest('session', {
    getter(this: FastifyRequest) {
      return (this.raw as Host).session as Session & Partial<SessionData>;
    },
    setter(this: FastifyRequest, value: (Session & Partial<SessionData>) | null | undefined) {
      (this.raw as Host).session = value ?? undefined;
    },
  });
  fastify.decorateRequest('sessionID', {
    getter(this: FastifyRequest) {
      return (this.raw as Host).sessionID as string;
    },
  });
  fastify.decorateRequest(kSession, null);
  fastify.decorate('pgsession', attachHandle({}, engine, sessionStore));
  fastify.addHook('onClose', async () => {
    // Graceful shutdown: deferred touches too, or sessions active since their last write would
    // look idle (and expire early) after the restart.
    await engine.flush({ touches: true });
  });

  const deviceBound = engine.options.deviceBound !== undefined;
  // Callback style, not async: a cached session is attached in this call, and the request goes
  // on without a promise.
  fastify.addHook('onRequest', (request, reply, done) => {
    const host = request.raw as Host;
    if (host.session) return done();
    const pathname = pathnameOf(request.url);
    if (!pathname.startsWith(cookiePath)) return done();
    // Without `proxy`, Fastify's own `request.protocol` (its `trustProxy` setting) decides.
    const secure = isSecureRequest(request, proxy, fastifySecure);
    let loaded: RequestSession | Promise<RequestSession>;
    try {
      const endpoint = deviceBound ? engine.deviceEndpoint(pathname) : null;
      if (endpoint) {
        // Answered here, without running the app (and so without calling `done`).
        engine.handleDeviceEndpoint(endpoint, host, nodeDeviceRequest(request.raw, secure)).then(
          (answer) => reply.code(answer.status).headers(answer.headers).send(answer.body),
          (err: unknown) => done(toReplyError(reply, err)),
        );
        return;
      }
      loaded = engine.attach(host, {
        cookieHeader: request.headers.cookie,
        secure,
        deviceSkipped: deviceBound ? (request.headers[SKIPPED_HEADER] as string | undefined) : undefined,
      });
    } catch (err) {
      return done(toReplyError(reply, err));
    }
    if (!(loaded instanceof Promise)) {
      (request as Req)[kSession] = loaded;
      return done();
    }
    loaded.then(
      (ctx) => {
        (request as Req)[kSession] = ctx;
        done();
      },
      (err: unknown) => done(toReplyError(reply, err)),
    );
  });

  // Commit before the payload (and the headers) leave; `commit()` is null in the steady state,
  // and then nothing waits.
  fastify.addHook('onSend', (request, reply, payload, done) => {
    const ctx = (request as Req)[kSession];
    if (!ctx) return done(null, payload);
    (request as Req)[kSession] = null;
    let pending: Promise<void> | null;
    try {
      pending = ctx.commit();
    } catch (err) {
      return done(toReplyError(reply, err));
    }
    if (!pending) {
      if (sendHeaders(ctx, reply, done)) done(null, payload);
      return;
    }
    pending.then(
      () => {
        if (sendHeaders(ctx, reply, done)) done(null, payload);
      },
      (err: unknown) => done(toReplyError(reply, err)),
    );
  });
};

/**
 * The Fastify plugin. Register it once, at the root (it is not encapsulated, like plugins wrapped
 * with `fastify-plugin`): `await fastify.register(pgsessionFastify, options)`. It loads the
 * session in `onRequest`, commits it in `onSend` (so the store has it before the response
 * leaves), and sets `Set-Cookie` plus `Cache-Control: no-store` when the cookie is (re)sent.
 * Store failures become `StoreUnavailableError` (503, `Retry-After`) through Fastify's error
 * handler — never an empty session. Replies that bypass `onSend` (`reply.hijack()`, writing to
 * `reply.raw`) bypass the commit too: save the session yourself first (`await request.session.save()`).
 */
export const pgsessionFastify: FastifyPluginAsync<PgSessionFastifyOptions> = Object.assign(plugin, {
  [Symbol.for('skip-override')]: true,
  [Symbol.for('fastify.display-name')]: 'pgsession',
  [Symbol.for('plugin-meta')]: { name: 'pgsession', fastify: '5.x' },
});

export default pgsessionFastify;
