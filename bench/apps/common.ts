/**
 * What every benchmark app shares, whatever its framework and session layer: the seed's session
 * options, what a login stores, the dashboard page and the ceiling's fixed session.
 */
import { randomBytes } from 'node:crypto';
import { COOKIE_NAME, MAX_AGE_MS, SECRET, USER_AGENT } from '../lib/config.js';

/** The session layers one framework is measured with. */
/**
 * `ceilingDict`: the ceiling with the one thing pgsession's Express middleware does to every
 * request besides sessions (`req` and `res` switched to dictionary properties, see
 * src/adapters/express/dictionary-mode.ts), so the session layer's own cost can be read net of it.
 */
export type Layer = 'incumbent' | 'pgsession' | 'floor' | 'ceiling' | 'ceilingDict';

/** Layers with no sessions to log into (the benchmark sends a fixed cookie). */
export const withoutSessions = (layer: Layer): boolean => layer === 'ceiling' || layer === 'ceilingDict';
export type Framework = 'express' | 'http' | 'fastify' | 'hono' | 'web';

/** The seed's settings, for express-session and pgsession alike. */
export const sessionOptions = {
  name: COOKIE_NAME,
  secret: SECRET,
  resave: false,
  saveUninitialized: false,
  rolling: true,
  cookie: { maxAge: MAX_AGE_MS, httpOnly: true, sameSite: 'lax' as const },
};

export interface BenchSession {
  userId?: number;
  userRole?: string;
  csrfToken?: string;
  _meta?: { ip: string; ua: string; loginAt: number };
}

/** What the demo app's login stores. */
export function logIn(session: BenchSession, ip: string | undefined): void {
  session.userId = 1;
  session.userRole = 'user';
  session.csrfToken = randomBytes(32).toString('base64url');
  session._meta = { ip: ip ?? '', ua: USER_AGENT, loginAt: Date.now() };
}

/** The ceiling's session: what a logged-in request would find, with no session layer at all. */
export const FIXED_SESSION: BenchSession = Object.freeze({
  userId: 1,
  userRole: 'user',
  csrfToken: 'ceiling-has-no-session-token',
});

const esc = (value: unknown) =>
  String(value ?? '')
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;');

/** The dashboard of a logged-in user, or null when the session has none (a 401). */
export function dashboard(session: BenchSession | undefined | null): string | null {
  if (typeof session?.userId !== 'number') return null;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Dashboard</title></head>
<body><header><a href="/dashboard">Dashboard</a>
<form method="post" action="/logout"><input type="hidden" name="_csrf" value="${esc(session.csrfToken)}"><button>Log out</button></form></header>
<main><h1>Dashboard</h1><p>Signed in as user #${esc(session.userId)} (${esc(session.userRole ?? 'user')}).</p></main></body></html>`;
}
