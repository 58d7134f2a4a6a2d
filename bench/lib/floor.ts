/**
 * The floor: the least a session layer can do on a steady request with `rolling: true`, as a
 * measuring stick for pgsession's own layer (issue 15). It is never shipped and is not a
 * session library: no store, no expiry, no signature check (a value is known only if this
 * process signed it), no regeneration.
 *
 * Per request: `cookie.parse` of the header, one `Map` lookup of the signed value, `JSON.parse`
 * of the cached text into the session, and when the headers leave: the rolling `Set-Cookie`
 * (its attributes memoised per second), `Cache-Control: no-store`, and one `JSON.stringify` to
 * see whether the session changed. Each framework gets the same steps in its own hook shape.
 */
import { createHmac, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { parse } from 'cookie';
import { COOKIE_NAME, MAX_AGE_MS, SECRET } from './config.js';

/** `on-headers` (express-session's own dependency): run a function just before the headers leave. */
const onHeaders = createRequire(import.meta.url)('on-headers') as (
  res: ServerResponse,
  listener: () => void,
) => void;

export type FloorSession = Record<string, unknown>;

/** One request's session as the floor sees it. */
export interface FloorState {
  /** The signed cookie value (`s:<id>.<mac>`), or undefined for a new session. */
  value: string | undefined;
  /** The cached text the session was parsed from ('' for a new one). */
  text: string;
  session: FloorSession;
}

let memoSecond = -1;
let memoAttributes = '';

/** `; Max-Age…` attributes of the rolling cookie, built once per second. */
function attributes(now: number): string {
  const second = Math.floor(now / 1000);
  if (second !== memoSecond) {
    memoSecond = second;
    memoAttributes = `; Path=/; Expires=${new Date(second * 1000 + MAX_AGE_MS).toUTCString()}; HttpOnly; SameSite=Lax`;
  }
  return memoAttributes;
}

function sign(id: string): string {
  const mac = createHmac('sha256', SECRET).update(id).digest('base64').replace(/=+$/, '');
  return `s:${id}.${mac}`;
}

/** The session data every layer stores: the app's keys plus express-session's cookie object. */
function cookieJSON(now: number): Record<string, unknown> {
  return {
    originalMaxAge: MAX_AGE_MS,
    expires: new Date(now + MAX_AGE_MS).toISOString(),
    httpOnly: true,
    path: '/',
    sameSite: 'lax',
  };
}

export class Floor {
  /** Signed cookie value → the session's JSON text. */
  readonly sessions = new Map<string, string>();

  load(cookieHeader: string | undefined): FloorState {
    const value = cookieHeader ? parse(cookieHeader)[COOKIE_NAME] : undefined;
    const text = value === undefined ? undefined : this.sessions.get(value);
    if (text === undefined) return { value: undefined, text: '', session: {} };
    return { value, text, session: JSON.parse(text) as FloorSession };
  }

  /**
   * The headers leave: save a changed session (a new one gets an id), and say which Set-Cookie
   * goes out (null: none, for a new session nobody wrote to).
   */
  commit(state: FloorState): string | null {
    const now = Date.now();
    if (state.value === undefined) {
      if (Object.keys(state.session).length === 0) return null;
      state.value = sign(randomBytes(24).toString('base64url'));
      state.session = { cookie: cookieJSON(now), ...state.session };
    }
    const json = JSON.stringify(state.session);
    if (json !== state.text) this.sessions.set(state.value, json);
    return `${COOKIE_NAME}=${encodeURIComponent(state.value)}${attributes(now)}`;
  }

  destroy(state: FloorState): void {
    if (state.value !== undefined) this.sessions.delete(state.value);
    state.value = undefined;
    state.session = {};
  }
}

type Req = IncomingMessage & { session?: FloorSession; floor?: FloorState };

/** The floor as connect-style middleware (Express and raw node:http). */
export function floorMiddleware(
  floor: Floor,
): (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void {
  return (req: Req, res, next) => {
    const state = floor.load(req.headers.cookie);
    req.session = state.session;
    req.floor = state;
    onHeaders(res, () => {
      state.session = req.session ?? {};
      const setCookie = floor.commit(state);
      if (setCookie === null) return;
      res.appendHeader('Set-Cookie', setCookie);
      res.setHeader('Cache-Control', 'no-store');
    });
    next();
  };
}
