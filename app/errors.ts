/**
 * The end of the demo's middleware chain: a real 404, and the error handler that turns every
 * error into a status and a message safe to show (never a stack trace or an internal message),
 * in the format the client asked for.
 */
import type { NextFunction, Request, Response } from 'express';
import type { Logger } from 'pino';
import {
  type Auth,
  AuthError,
  CsrfError,
  clientAddress,
  csrfToken,
  ForbiddenError,
  isAuthenticated,
  TooManyAttemptsError,
  userAgent,
  wantsJson,
} from '../src/auth/index.js';
import { isDatabaseUnavailable, PgSessionError, StoreUnavailableError } from '../src/index.js';
import type { AppUser } from './http.js';
import { errorPage } from './views.js';

/** What the error page says, and the status and code it answers with. */
interface Outcome {
  status: number;
  code: string;
  title: string;
  message: string;
  retryAfter?: number;
}

const SERVER_ERROR: Outcome = {
  status: 500,
  code: 'internal_error',
  title: 'Server error',
  message: 'Something went wrong on our side. Please try again.',
};

function outcomeOf(err: unknown): Outcome {
  // A database that cannot be reached (the session store's fault, or one of the app's own
  // queries failing to connect, hanging or running out of time) is a 503 the client may retry,
  // never a 500: the library's one classification (isDatabaseUnavailable).
  if (err instanceof StoreUnavailableError || isDatabaseUnavailable(err)) {
    return {
      status: 503,
      code: 'unavailable',
      title: 'Temporarily unavailable',
      message: 'The service is temporarily unavailable. Please try again in a moment.',
      retryAfter: err instanceof StoreUnavailableError ? err.retryAfter : 5,
    };
  }
  if (err instanceof TooManyAttemptsError) {
    return {
      status: 429,
      code: 'rate_limited',
      title: 'Too many attempts',
      message: `Too many failed login attempts. Try again in ${Math.ceil(err.retryAfter / 60)} minute(s).`,
      retryAfter: err.retryAfter,
    };
  }
  if (err instanceof CsrfError) {
    return {
      status: 403,
      code: 'csrf',
      title: 'Request refused',
      message:
        'This form did not come from this site, or it was open too long. Go back, reload the page and try again.',
    };
  }
  if (err instanceof ForbiddenError) {
    return {
      status: 403,
      code: 'forbidden',
      title: 'Forbidden',
      message: 'Your account cannot open this page: it is for administrators.',
    };
  }
  if (err instanceof AuthError) {
    return {
      status: err.status,
      code: err.code === 'BAD_REQUEST' ? 'bad_request' : err.code.replace(/^PGSESSION_/, '').toLowerCase(),
      title: err.status === 401 ? 'Login required' : err.status === 403 ? 'Forbidden' : 'Bad request',
      message: err.message,
    };
  }
  // Other library errors (serialisation, state) are programming errors: 500.
  if (err instanceof PgSessionError) return SERVER_ERROR;
  const e = err as { status?: unknown; statusCode?: unknown; type?: unknown };
  const s = Number(e?.status ?? e?.statusCode);
  // body-parser and friends: 400 (malformed), 413 (too large), 415 …
  if (Number.isInteger(s) && s >= 400 && s < 500) {
    return {
      status: s,
      code: typeof e.type === 'string' ? e.type : 'bad_request',
      title: 'Bad request',
      message: 'The request could not be understood.',
    };
  }
  return SERVER_ERROR;
}

/**
 * The user an error page shows in its header (so a logged-in user is not offered "Log in"):
 * the one a route loaded, else a quick look-up; nothing if that fails too.
 */
async function pageUser(auth: Auth, req: Request, res: Response): Promise<AppUser | null> {
  const loaded = res.locals.user as AppUser | undefined;
  if (loaded) return loaded;
  if (!isAuthenticated(req)) return null;
  try {
    return await auth.currentUser(req);
  } catch {
    return null;
  }
}

async function sendPage(auth: Auth, req: Request, res: Response, outcome: Outcome): Promise<void> {
  // No database look-up when the database is the problem.
  const user = outcome.status === 503 ? null : await pageUser(auth, req, res);
  res.type('html').send(
    errorPage({
      status: outcome.status,
      title: outcome.title,
      message: outcome.message,
      user,
      csrfToken: user ? csrfToken(req) : undefined,
    }),
  );
}

/** A real 404, in the format the client asked for. */
export function notFound(auth: Auth) {
  return async (req: Request, res: Response) => {
    res.status(404);
    if (wantsJson(req)) return res.json({ error: 'not_found' });
    await sendPage(auth, req, res, {
      status: 404,
      code: 'not_found',
      title: 'Not found',
      message: 'There is no page at this address. It may have moved, or the link may be mistyped.',
    });
  };
}

/** Errors: a status and a message safe to show; 5xx are logged, 403s go to the audit log. */
export function errorHandler(auth: Auth, logger: Logger, audit: Logger) {
  return async (err: unknown, req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) return next(err);
    const outcome = outcomeOf(err);
    if (outcome.retryAfter !== undefined) res.setHeader('Retry-After', String(outcome.retryAfter));
    if (outcome.status >= 500) logger.error({ err, url: req.originalUrl.split('?')[0] }, 'request failed');
    else if (outcome.status === 403)
      audit.warn(
        {
          event: 'request.forbidden',
          code: err instanceof AuthError ? err.code.replace(/^PGSESSION_/, '').toLowerCase() : outcome.code,
          ip: clientAddress(req),
          ua: userAgent(req),
          url: req.path,
        },
        'forbidden',
      );
    res.status(outcome.status);
    if (wantsJson(req)) return res.json({ error: outcome.code, message: outcome.message });
    await sendPage(auth, req, res, outcome);
  };
}
