import type { EventEmitter } from 'node:events';
import http from 'node:http';
import express5, {
  type Express,
  type NextFunction,
  type Request as Req,
  type Response as Res,
} from 'express';
import express4 from 'express4';
import session, { type SessionOptions } from '../../src/index.js';
import { Client, listen } from '../helpers/http.js';

/** A secret long enough for production rules; never used outside tests. */
export const SECRET = 'test-secret-0123456789-abcdefghijklmnopqrstuvwxyz';

/** What stores are handed: a session whose `cookie` is a Cookie (express-session) or its JSON. */
type StoreSession = { cookie?: object };

export type Op = 'get' | 'set' | 'touch' | 'destroy';
// biome-ignore lint/suspicious/noExplicitAny: store callbacks carry whatever the method returns.
type Cb = (err?: unknown, value?: any) => void;

/**
 * A store written the way stores for express-session are: a `Store` subclass keeping JSON in a
 * Map, callbacks answered asynchronously. It records which methods were called and, for `set`
 * and `touch`, what it was given, so tests can compare the decisions two middlewares make.
 */
export function recordingStoreClass(Base: new () => EventEmitter, options: { touch?: boolean } = {}) {
  class RecordingStore extends Base {
    readonly sessions = new Map<string, string>();
    calls: Array<{ op: Op; sid: string; sess?: unknown; maxAgeType?: string }> = [];
    /** Delay before callbacks, in ms (0: next turn of the event loop). */
    delay = 0;
    /** Make the next calls of these methods fail. */
    failing = new Set<Op>();

    answer(op: Op, cb: Cb | undefined, value?: unknown): void {
      const err = this.failing.has(op) ? new Error(`store ${op} failed`) : undefined;
      const done = () => cb?.(err, err ? undefined : value);
      if (this.delay > 0) setTimeout(done, this.delay);
      else setImmediate(done);
    }

    ops(): Op[] {
      return this.calls.map((c) => c.op);
    }

    count(op: Op): number {
      return this.calls.filter((c) => c.op === op).length;
    }

    get(sid: string, cb: Cb): void {
      this.calls.push({ op: 'get', sid });
      const json = this.sessions.get(sid);
      this.answer('get', cb, json ? JSON.parse(json) : null);
    }

    set(sid: string, sess: StoreSession, cb?: Cb): void {
      this.calls.push({
        op: 'set',
        sid,
        sess: JSON.parse(JSON.stringify(sess)),
        maxAgeType: typeof (sess.cookie as { maxAge?: unknown } | undefined)?.maxAge,
      });
      if (!this.failing.has('set')) this.sessions.set(sid, JSON.stringify(sess));
      this.answer('set', cb);
    }

    destroy(sid: string, cb?: Cb): void {
      this.calls.push({ op: 'destroy', sid });
      if (!this.failing.has('destroy')) this.sessions.delete(sid);
      this.answer('destroy', cb);
    }
  }
  if (options.touch === false) return RecordingStore;
  return class TouchingRecordingStore extends RecordingStore {
    /** As express-session's MemoryStore: keeps the session, replacing only its cookie. */
    touch(sid: string, sess: StoreSession, cb?: Cb): void {
      this.calls.push({
        op: 'touch',
        sid,
        sess: JSON.parse(JSON.stringify(sess)),
        maxAgeType: typeof (sess.cookie as { maxAge?: unknown } | undefined)?.maxAge,
      });
      const json = this.sessions.get(sid);
      if (json) {
        const stored = JSON.parse(json);
        stored.cookie = JSON.parse(JSON.stringify(sess.cookie));
        this.sessions.set(sid, JSON.stringify(stored));
      }
      this.answer('touch', cb);
    }
  };
}

export type RecordingStore = InstanceType<ReturnType<typeof recordingStoreClass>> & {
  touch?: (sid: string, sess: object, cb?: Cb) => void;
};

/** What a client sees of one response: status, body and the session cookie's fate. */
export interface Seen {
  status: number;
  body: string;
  /** `none`: no Set-Cookie for the session; `set`: a live cookie; `clear`: a deleting one. */
  cookie: 'none' | 'set' | 'clear';
  /** Attribute names of a `set` cookie, lower-cased and sorted (values ignored). */
  attributes: string[];
  /** The `name=value` pair of a `set` cookie, to send back. */
  pair: string | undefined;
  headers: Headers;
}

export function readSetCookie(res: Response, name: string): Pick<Seen, 'cookie' | 'attributes' | 'pair'> {
  for (const line of res.headers.getSetCookie()) {
    const [pair = '', ...attrs] = line.split(';').map((p) => p.trim());
    const eq = pair.indexOf('=');
    if (pair.slice(0, eq) !== name) continue;
    const value = pair.slice(eq + 1);
    const expired = attrs.some((a) => /^expires=thu, 01 jan 1970/i.test(a));
    if (expired || value === '') return { cookie: 'clear', attributes: [], pair: undefined };
    const attributes = attrs.map((a) => a.split('=')[0]!.toLowerCase()).sort();
    return { cookie: 'set', attributes, pair };
  }
  return { cookie: 'none', attributes: [], pair: undefined };
}

export async function fetchSeen(
  url: string,
  name: string,
  cookie?: string,
  init: RequestInit = {},
): Promise<Seen> {
  const headers = new Headers(init.headers);
  if (cookie) headers.set('cookie', cookie);
  const res = await fetch(url, { ...init, headers, redirect: 'manual' });
  const body = await res.text();
  return { status: res.status, body, headers: res.headers, ...readSetCookie(res, name) };
}

/** Start an HTTP server for a request handler (an Express app). */
export async function serve(handler: http.RequestListener) {
  return listen(http.createServer(handler));
}

/** Wait until the event loop has run pending I/O callbacks (store callbacks use setImmediate). */
export async function settle(turns = 3): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((r) => setImmediate(r));
}

export type ExpressVersion = 4 | 5;

/**
 * An Express app (4 or 5) with pgsession in front of `routes`, listening on a loopback port.
 * Errors reach a handler answering `<status> error: <name>: <message>` unless `routes` adds its own.
 */
export async function startPg(
  options: Partial<SessionOptions>,
  routes: (app: Express) => void,
  { version = 5 as ExpressVersion } = {},
) {
  const mw = session({
    secret: SECRET,
    resave: false,
    saveUninitialized: false,
    ...options,
  } as SessionOptions);
  const app = (version === 4 ? (express4 as unknown as typeof express5) : express5)();
  app.use(mw);
  routes(app);
  app.use((err: Error & { status?: number }, _req: Req, res: Res, _next: NextFunction) => {
    res.status(err.status ?? 500).send(`error: ${err.name}: ${err.message}`);
  });
  const server = await serve(app);
  return { mw, app, url: server.url, client: new Client(server.url), close: server.close };
}
