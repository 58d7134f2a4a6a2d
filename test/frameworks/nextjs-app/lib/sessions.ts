import pg from 'pg';
import { PgStore } from 'pgsession';
import { type WebSessions, webSessions } from 'pgsession/web';

declare module 'pgsession' {
  interface SessionData {
    userId: number;
  }
}

// One pool and one session layer per server process, made on first use (not while `next build`
// imports the routes), and kept on globalThis so every route bundle shares them.
const shared = globalThis as typeof globalThis & { pgsessions?: WebSessions };

export function sessions(): WebSessions {
  if (shared.pgsessions) return shared.pgsessions;
  const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL });
  pool.on('error', (err) => console.error(`idle PostgreSQL client: ${err.message}`));
  shared.pgsessions = webSessions({
    store: new PgStore({ pool }),
    name: process.env.SESSION_COOKIE_NAME ?? 'connect.sid',
    secret: process.env.SESSION_SECRET!,
    resave: false,
    saveUninitialized: false,
    idleTimeout: process.env.SESSION_IDLE_TIMEOUT ?? '7d', // slides on every request, server side
    absoluteTimeout: '30d',
    // Server components cannot set cookies: the cookie lives as long as a session can, and the
    // server enforces the idle timeout.
    cookie: { httpOnly: true, secure: 'auto', sameSite: 'lax', maxAge: 30 * 24 * 3600 * 1000 },
  });
  return shared.pgsessions;
}

/** The request's scheme, for `Secure` (Next.js sets x-forwarded-proto on every request). */
export function isHttps(headers: Headers): boolean {
  return headers.get('x-forwarded-proto') === 'https';
}
