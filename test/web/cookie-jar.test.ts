/**
 * `sessions.fromCookies(jar)`: the session where a framework hands out a cookie jar instead of
 * a `Request` (Next.js `cookies()` in a server action or a server component). The jar here
 * behaves as Next's: `get` gives the decoded value, `set` records name, value and attributes.
 */
import { describe, expect, it } from 'vitest';
import {
  type CookieJar,
  type JarCookieOptions,
  type WebSessionOptions,
  type WebSessions,
  webSessions,
} from '../../src/adapters/web/index.js';
import { StoreUnavailableError } from '../../src/core/errors.js';
import { MemoryStore } from '../../src/stores/memory/memory-store.js';
import { flaky, idOf } from '../helpers/adapters.js';

const SECRET = 'web-cookie-jar-test-secret-0123456789abcd';
const HOUR = 3_600_000;

class Jar implements CookieJar {
  readonly values = new Map<string, string>();
  readonly sets: Array<{ name: string; value: string; options: JarCookieOptions }> = [];
  readOnly = false;
  get(name: string) {
    const value = this.values.get(name);
    return value === undefined ? undefined : { value };
  }
  set(name: string, value: string, options: JarCookieOptions) {
    if (this.readOnly) throw new Error('Cookies can only be modified in a Server Action or Route Handler');
    this.sets.push({ name, value, options });
    if (value === '') this.values.delete(name);
    else this.values.set(name, value);
  }
}

function make(store: WebSessionOptions['store'] = new MemoryStore()) {
  return webSessions({
    secret: SECRET,
    store,
    resave: false,
    saveUninitialized: false,
    cookie: { maxAge: HOUR, sameSite: 'lax', httpOnly: true },
  });
}

/** A jar holding the cookie of a session logged in as `userId` (a login server action). */
async function loggedIn(sessions: WebSessions, userId: number) {
  const jar = new Jar();
  const login = await sessions.fromCookies(jar);
  await login.session!.regenerate();
  login.session!.userId = userId;
  await login.commit();
  return { jar, login };
}

describe('fromCookies (a cookie jar, as Next.js server actions have)', () => {
  it('logs in, is read back from the jar, and a Request-based route sees the same session', async () => {
    const sessions = make();
    const jar = new Jar();
    const action = await sessions.fromCookies(jar);
    await action.session!.regenerate();
    action.session!.userId = 42;
    await action.commit();

    expect(jar.sets).toHaveLength(1);
    const [set] = jar.sets;
    expect(set!.name).toBe('connect.sid');
    expect(set!.value.startsWith('s:')).toBe(true); // decoded, as a jar holds it
    expect(set!.options).toMatchObject({ path: '/', httpOnly: true, sameSite: 'lax' });
    expect(set!.options.expires!.getTime()).toBeGreaterThan(Date.now() + HOUR - 60_000);

    // A later server component reads it (read-only jar: a steady read sets nothing).
    jar.readOnly = true;
    const page = await sessions.fromCookies(jar);
    expect(page.session?.userId).toBe(42);
    await page.commit();

    // The route handler side: the same cookie, encoded as a browser sends it.
    const cookie = `connect.sid=${encodeURIComponent(set!.value)}`;
    expect(idOf(cookie, SECRET)).toBe(action.sessionID);
    const loaded = await sessions.load(new Request('http://localhost/me', { headers: { cookie } }));
    expect(loaded.session?.userId).toBe(42);
  });

  it('logout clears the cookie on the jar and the session is gone for every reader', async () => {
    const sessions = make();
    const { jar } = await loggedIn(sessions, 1);

    const logout = await sessions.fromCookies(jar);
    await logout.session!.destroy();
    await logout.commit();
    const cleared = jar.sets.at(-1)!;
    expect(cleared.value).toBe('');
    expect(cleared.options.expires!.getTime()).toBe(0);
    const after = await sessions.fromCookies(jar);
    expect(after.session?.userId).toBeUndefined();
  });

  it('a tampered cookie in the jar is anonymous', async () => {
    const sessions = make();
    const { jar, login } = await loggedIn(sessions, 9);
    const value = jar.values.get('connect.sid')!;
    jar.values.set('connect.sid', `${value.slice(0, -2)}${value.endsWith('AA') ? 'BB' : 'AA'}`);
    const forged = await sessions.fromCookies(jar);
    expect(forged.session?.userId).toBeUndefined();
    expect(forged.sessionID).not.toBe(login.sessionID);
  });

  it('Secure follows the request scheme it is told', async () => {
    const sessions = webSessions({
      secret: SECRET,
      store: new MemoryStore(),
      saveUninitialized: false,
      resave: false,
      cookie: { secure: 'auto' },
    });
    for (const secure of [true, false]) {
      const jar = new Jar();
      const s = await sessions.fromCookies(jar, { secure });
      s.session!.userId = 3;
      await s.commit();
      expect(jar.sets[0]!.options.secure ?? false).toBe(secure);
    }
  });

  it('a store fault throws StoreUnavailableError and leaves the cookie alone', async () => {
    const { store, broken } = flaky(new MemoryStore());
    const { jar } = await loggedIn(make(store), 5);
    const before = [...jar.values];
    broken.add('get');
    // Another process (no cached copy) reads the cookie while the store is down.
    const error = await make(store)
      .fromCookies(jar)
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect([...jar.values]).toEqual(before);
  });
});
