/**
 * Hold the response until the session is committed, so a redirect right after login can never
 * reach a server that does not see the session yet (express-session writes the body first).
 * `commit()` returns null in the steady state, and then nothing is held at all.
 */
import type { ServerResponse } from 'node:http';
import type { RequestSession } from '../../core/request-session.js';
import { REGISTRATION_HEADER, type SessionHeaders, sessionHeaders } from '../http.js';

type Next = (err?: unknown) => void;

function appendHeader(res: ServerResponse, name: string, value: string): void {
  const prev = res.getHeader(name);
  if (prev === undefined) res.setHeader(name, value);
  else res.setHeader(name, Array.isArray(prev) ? [...prev, value] : [String(prev), value]);
}

/**
 * The arguments for Node's `writeHead` that send the app's `writeHead(status, [reason],
 * [headers])` with the session's headers added. The session's come after the app's: a
 * `Set-Cookie` the app passes adds to the session's (set before, Node would let it replace the
 * session's and log the user out), and `no-store` replaces the app's `Cache-Control`.
 *
 * With headers already set (`setHeader`, as Express always has), Node merges the passed ones
 * into them, later pairs replacing earlier ones: they are applied so, the session's appended,
 * and Node is called with the status alone. With none set (a bare `node:http` handler passing
 * all its headers to `writeHead`), Node writes the list it is given as it is, every pair kept,
 * without building its per-header table: the session's headers join that list instead of
 * going through `setHeader`, one entry per name with all its values. Anything Node refuses is
 * left in the call for it to refuse.
 */
function writeHeadArgs(res: ServerResponse, args: unknown[], session: SessionHeaders): unknown[] {
  const reason = typeof args[1] === 'string';
  const given = reason ? args[2] : args[1];
  const none = given === undefined || given === null;
  if (res.getHeaderNames().length > 0) {
    // Express's own `writeHead(status)` (from `res.end()`) passes nothing: the arguments stay.
    let call = args;
    if (!none) {
      const pairs = headerPairs(given);
      if (pairs === null) return args;
      for (const [name, value] of pairs) res.setHeader(name, value as string | number | readonly string[]);
      call = reason ? [args[0], args[1]] : [args[0]];
    }
    appendHeader(res, 'Set-Cookie', session.setCookie);
    res.setHeader('Cache-Control', session.cacheControl);
    if (session.registration) res.setHeader(REGISTRATION_HEADER, session.registration);
    return call;
  }
  const pairs = none ? [] : headerPairs(given);
  if (pairs === null) return args;
  const status = reason ? [args[0], args[1]] : [args[0]];
  // One list for Node to write as it is. Only the names the session sets are looked at (by
  // length first: lower-casing every name would allocate on every response).
  const flat: unknown[] = [];
  let cookies: unknown[] | undefined;
  for (const [name, value] of pairs) {
    const own = SESSION_NAME_LENGTHS.has(name.length) ? name.toLowerCase() : '';
    if (own === 'set-cookie') {
      cookies ??= [];
      if (Array.isArray(value)) cookies.push(...value);
      else cookies.push(value);
    } else if (own !== 'cache-control' && own !== REGISTRATION_NAME) flat.push(name, value);
  }
  // The app's cookies and the session's as one entry: written line by line either way.
  flat.push('Set-Cookie', cookies ? [...cookies, session.setCookie] : session.setCookie);
  flat.push('Cache-Control', session.cacheControl);
  if (session.registration) flat.push(REGISTRATION_HEADER, session.registration);
  status.push(flat);
  return status;
}

const REGISTRATION_NAME = REGISTRATION_HEADER.toLowerCase();
/** Lengths of the header names the session sets (`set-cookie`, `cache-control`, the registration). */
const SESSION_NAME_LENGTHS = new Set(['set-cookie'.length, 'cache-control'.length, REGISTRATION_NAME.length]);

/**
 * The `[name, value]` pairs of `writeHead`'s headers argument when given (an object, a flat
 * `[name, value, …]` list or a list of pairs), empty names skipped as Node skips them; null
 * for a shape Node refuses (an odd-length list, a primitive).
 */
function headerPairs(given: unknown): Array<[string, unknown]> | null {
  const pairs: Array<[string, unknown]> = [];
  if (Array.isArray(given)) {
    if (given.length > 0 && Array.isArray(given[0])) {
      for (const pair of given as unknown[][]) pairs.push([String(pair[0]), pair[1]]);
      return pairs;
    }
    if (given.length % 2 !== 0) return null;
    for (let i = 0; i < given.length; i += 2) if (given[i]) pairs.push([String(given[i]), given[i + 1]]);
    return pairs;
  }
  if (typeof given !== 'object' || given === null) return null;
  for (const name of Object.keys(given))
    if (name) pairs.push([name, (given as Record<string, unknown>)[name]]);
  return pairs;
}

type Chunks = Array<{ end: boolean; args: unknown[] }>;

/** Node's error for a header change after the headers left (`ERR_HTTP_HEADERS_SENT`). */
function headersSentError(verb: string): Error {
  return Object.assign(new Error(`Cannot ${verb} headers after they are sent to the client`), {
    code: 'ERR_HTTP_HEADERS_SENT',
  });
}

/** Header methods that throw once the headers left, with the verb of Node's message. */
const HEADER_METHODS = [
  ['setHeader', 'set'],
  ['appendHeader', 'append'],
  ['removeHeader', 'remove'],
] as const;

/**
 * The state of one held response. The state lives in one object with its steps as methods, and the patched `write`, `end` and
 * `writeHead` are the only closures made per request: this runs on every request, and closures
 * made per response are allocation the hot path does not need.
 */
class ResponseHold {
  state: 'open' | 'committing' | 'done' = 'open';
  abandoned = false;
  /** Calls held while the commit is in flight (allocated only then). */
  queue: Chunks | undefined;
  /** The session's headers, once decided (undefined: not yet). */
  headers: ReturnType<typeof sessionHeaders> | undefined;
  /** Header methods replaced while the response is held (see {@link freeze}). */
  frozen: Array<[name: string, own: PropertyDescriptor | undefined]> | undefined;

  constructor(
    readonly res: ServerResponse,
    readonly ctx: RequestSession,
    readonly next: Next,
    readonly write: ServerResponse['write'],
    readonly end: ServerResponse['end'],
  ) {}

  sessionHeaders(): ReturnType<typeof sessionHeaders> {
    if (this.headers === undefined) this.headers = sessionHeaders(this.ctx);
    return this.headers;
  }

  /**
   * The patched writeHead: add the cookie (decided once) to headers about to leave. Returns the
   * arguments for Node's writeHead: the app's own, or with the session's headers added (see
   * {@link writeHeadArgs}).
   */
  onWriteHead(res: ServerResponse, args: unknown[]): unknown[] {
    if (this.abandoned || res.headersSent) return args;
    let headers: ReturnType<typeof sessionHeaders> = null;
    try {
      headers = this.sessionHeaders();
    } catch (err) {
      // Only when the app wrote headers before ending (writeHead, flushHeaders): the response
      // is on its way, so it leaves without the cookie and Express gets the error, as with
      // express-session. Otherwise the value was decided, and any error handled, in finish().
      this.headers = null;
      process.nextTick(this.next, err);
    }
    return headers ? writeHeadArgs(res, args, headers) : args;
  }

  restore(): void {
    this.thaw();
    this.res.write = this.write;
    this.res.end = this.end;
  }

  /**
   * The app wrote or ended a response that is held for the commit. Without the hold its headers
   * would have left by now, so they behave as if they had: changing one throws Node's own error
   * and `headersSent` is true, exactly as over plain `http` (and with express-session).
   */
  freeze(): void {
    if (this.frozen) return;
    const res = this.res as unknown as Record<string, unknown>;
    this.frozen = [];
    for (const [name, verb] of HEADER_METHODS) {
      this.frozen.push([name, Object.getOwnPropertyDescriptor(res, name)]);
      Object.defineProperty(res, name, {
        configurable: true,
        writable: true,
        value: () => {
          throw headersSentError(verb);
        },
      });
    }
    this.frozen.push(['headersSent', Object.getOwnPropertyDescriptor(res, 'headersSent')]);
    Object.defineProperty(res, 'headersSent', { configurable: true, get: () => true });
  }

  /** Undo {@link freeze} before the held response is written out (or abandoned). */
  thaw(): void {
    const frozen = this.frozen;
    if (!frozen) return;
    this.frozen = undefined;
    const res = this.res as unknown as Record<string, unknown>;
    for (const [name, own] of frozen) {
      if (own) Object.defineProperty(res, name, own);
      else delete res[name];
    }
  }

  replay(): void {
    this.restore();
    const queue = this.queue;
    if (!queue) return;
    this.queue = undefined;
    for (const { end, args } of queue) {
      if (end) (this.end as (...a: unknown[]) => void).apply(this.res, args);
      else (this.write as (...a: unknown[]) => void).apply(this.res, args);
    }
  }

  fail(err: unknown): void {
    this.state = 'done';
    this.abandoned = true;
    this.queue = undefined;
    this.restore();
    this.next(err);
  }

  finish(): void {
    // Decide the Set-Cookie value while an error can still become an error response: the app
    // may have put a value the serializer refuses on req.session.cookie (say, priority 'urgent').
    try {
      this.sessionHeaders();
    } catch (err) {
      this.fail(err);
      return;
    }
    this.state = 'done';
    this.replay();
  }

  start(): void {
    this.state = 'committing';
    let pending: Promise<void> | null;
    try {
      pending = this.ctx.commit();
    } catch (err) {
      this.fail(err);
      return;
    }
    if (!pending) {
      this.finish();
      return;
    }
    // Anything thrown while replaying the response goes to Express, never unhandled.
    pending
      .then(
        () => this.finish(),
        (err: unknown) => this.fail(err),
      )
      .catch((err: unknown) => this.next(err));
  }

  hold(end: boolean, args: unknown[]): void {
    if (this.queue) this.queue.push({ end, args });
    else this.queue = [{ end, args }];
    this.freeze();
  }
}

export function holdResponse(res: ServerResponse, ctx: RequestSession, next: Next): void {
  const originalWriteHead = res.writeHead;
  const hold = new ResponseHold(res, ctx, next, res.write, res.end);
  // Anonymous function expressions: they need `this` (the response), and an anonymous one is
  // not wrapped for its name by tsx/esbuild's keepNames on every request.
  res.writeHead = function (this: ServerResponse, ...args: unknown[]) {
    if (hold.frozen) throw headersSentError('write');
    return (originalWriteHead as (...a: unknown[]) => ServerResponse).apply(
      this,
      hold.onWriteHead(this, args),
    );
  } as ServerResponse['writeHead'];
  res.write = function (this: ServerResponse, ...args: unknown[]) {
    if (hold.state === 'open') hold.start();
    if (hold.state === 'done') {
      return hold.abandoned ? true : (hold.write as (...a: unknown[]) => boolean).apply(this, args);
    }
    hold.hold(false, args);
    return true;
  } as ServerResponse['write'];
  res.end = function (this: ServerResponse, ...args: unknown[]) {
    if (hold.state === 'open') hold.start();
    if (hold.state === 'done') {
      if (!hold.abandoned) (hold.end as (...a: unknown[]) => void).apply(this, args);
      return this;
    }
    hold.hold(true, args);
    return this;
  } as ServerResponse['end'];
}
