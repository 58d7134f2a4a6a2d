import { serialize } from 'cookie';
import { ConfigError } from './errors.js';
import type { CookieJSON } from './store.js';

/** Cookie options, as express-session takes them. */
export interface CookieOptions {
  /** Lifetime in ms; sets `Expires` relative to now. Also the default idle timeout. */
  maxAge?: number | null | undefined;
  /** Fixed expiry date (prefer `maxAge`). */
  expires?: Date | null | undefined;
  /** Default true: JavaScript in the page cannot read the cookie (XSS cannot steal it). */
  httpOnly?: boolean | undefined;
  /** `true`, `false`, or `'auto'` (Secure exactly when the request is HTTPS, honouring `proxy`/`trust proxy`). */
  secure?: boolean | 'auto' | undefined;
  /** `true`/`'strict'`, `'lax'`, `'none'`, `false`, or `'auto'` (`'none'` on HTTPS, `'lax'` otherwise). */
  sameSite?: boolean | 'lax' | 'strict' | 'none' | 'auto' | undefined;
  domain?: string | undefined;
  /** Default `/`. */
  path?: string | undefined;
  partitioned?: boolean | undefined;
  priority?: 'low' | 'medium' | 'high' | undefined;
}

type SameSite = boolean | 'lax' | 'strict' | 'none' | undefined;

/** A value the serializer passes through unchanged, used to cut the attributes off its output. */
const PLACEHOLDER = 'v';

/** The attributes of the last Set-Cookie string built, with everything they were built from. */
interface AttributeMemo {
  readonly name: string;
  /** The `Expires` second (epoch seconds), or null for none. */
  readonly second: number | null;
  readonly path: string;
  readonly httpOnly: boolean | undefined;
  readonly secure: boolean;
  readonly sameSite: SameSite;
  readonly domain: string | undefined;
  readonly partitioned: boolean | undefined;
  readonly priority: 'low' | 'medium' | 'high' | undefined;
  /** Everything after `name=value`: `; Path=/; Expires=…; HttpOnly; SameSite=Lax`. */
  readonly attributes: string;
}

let lastAttributes: AttributeMemo | undefined;

/**
 * The session cookie's settings, with express-session's exact semantics: `maxAge` is a view of
 * `expires` relative to now, `originalMaxAge` remembers the configured lifetime so `touch()` can
 * restart it, and the JSON form is what is stored inside `sess.cookie`.
 */
export class Cookie {
  path = '/';
  httpOnly: boolean | undefined = true;
  secure: boolean | 'auto' | undefined;
  sameSite: SameSite | 'auto';
  domain: string | undefined;
  partitioned: boolean | undefined;
  priority: 'low' | 'medium' | 'high' | undefined;
  /** The configured lifetime, restored by `touch()`; null for a browser-session cookie. */
  originalMaxAge: number | null | undefined = null;
  private _expires: Date | null | undefined = null;

  /**
   * Options are applied in the order given, through the same setters, as express-session does:
   * `{ maxAge }` sets `expires` and `originalMaxAge`; a later `expires` overrides both. One
   * deliberate difference: a string `expires` (stored JSON) becomes a Date and keeps the stored
   * `originalMaxAge`, where express-session keeps the string until `Store#createSession` fixes it.
   */
  constructor(options?: CookieOptions | CookieJSON) {
    if (options !== undefined && options !== null && typeof options !== 'object') {
      throw new TypeError('argument options must be a object');
    }
    if (options) {
      const given = options as Record<string, unknown>;
      for (const key of Object.keys(given)) {
        const value = given[key];
        if (key === 'data') continue;
        if (key === 'maxAge') this.maxAge = value as number | null;
        else if (key === 'expires' && typeof value === 'string') {
          this._expires = new Date(value);
          this.originalMaxAge =
            'originalMaxAge' in given ? (given.originalMaxAge as number | null) : this.maxAge;
        } else if (key === 'expires') this.expires = value as Date | null;
        else if (key === 'originalMaxAge' && typeof given.expires === 'string') {
          // Applied together with the string `expires` above, whatever the key order.
        } else (this as Record<string, unknown>)[key] = value;
      }
    }
    if (this.originalMaxAge === undefined || this.originalMaxAge === null) this.originalMaxAge = this.maxAge;
  }

  /** Setting `expires` also resets `originalMaxAge` to the time left, as express-session does. */
  set expires(date: Date | null | undefined) {
    this._expires = date;
    this.originalMaxAge = this.maxAge;
  }

  get expires(): Date | null | undefined {
    return this._expires;
  }

  /** Milliseconds left before the cookie expires (null for a browser-session cookie). */
  set maxAge(ms: number | Date | null | undefined) {
    if (ms && typeof ms !== 'number' && !(ms instanceof Date)) {
      throw new TypeError('maxAge must be a number or Date');
    }
    if (typeof ms === 'number') {
      // express-session reads the clock twice (expiry, then time left), so a busy process can
      // record 980 for maxAge 1000; one read gives the value it means.
      this._expires = new Date(Date.now() + ms);
      this.originalMaxAge = ms;
    } else this.expires = ms;
  }

  /** Like express-session, `null`/`undefined` pass through when there is no expiry date. */
  get maxAge(): number | null | undefined {
    return this._expires instanceof Date ? this._expires.valueOf() - Date.now() : this._expires;
  }

  /** The serializable settings (express-session's `cookie.data`). */
  get data(): CookieJSON & { expires?: Date | string | null } {
    return {
      originalMaxAge: this.originalMaxAge,
      partitioned: this.partitioned,
      priority: this.priority,
      expires: this._expires,
      secure: this.secure === 'auto' ? undefined : this.secure,
      httpOnly: this.httpOnly,
      domain: this.domain,
      path: this.path,
      sameSite: this.sameSite === 'auto' ? undefined : this.sameSite,
    } as CookieJSON & { expires?: Date | null };
  }

  /**
   * A `Set-Cookie` header value for `name=value` with these settings.
   *
   * With `rolling: true` every response re-sends the cookie, and the `cookie` package's
   * serializer copies the options, validates every attribute and formats the date each time.
   * The attributes after the value depend only on the name and these
   * settings, and `Expires` only on its second, so they are memoised (one entry, shared by every
   * session with the same settings in the same second) and only the value is encoded per call.
   * The memo holds the serializer's own output for the same inputs, so the string is identical,
   * and anything it would reject (or that is not a plain Date) still goes through it.
   */
  serialize(name: string, value: string): string {
    const expires = this._expires;
    let second: number | null = null;
    if (expires instanceof Date) {
      const time = expires.getTime();
      if (!Number.isFinite(time)) return serialize(name, value, this.serializeOptions());
      second = Math.floor(time / 1000);
    } else if (expires !== null && expires !== undefined) {
      return serialize(name, value, this.serializeOptions());
    }
    if (typeof value !== 'string' || value === '') return serialize(name, value, this.serializeOptions());
    // The serializer encodes the value before it checks any option: so does this (same error first).
    // encodeURIComponent's output always passes the serializer's cookie-value check.
    const encoded = encodeURIComponent(value);
    const secure = this.secure === true;
    const sameSite = this.sameSite === 'auto' ? undefined : this.sameSite;
    const memo = lastAttributes;
    if (
      memo !== undefined &&
      memo.second === second &&
      memo.name === name &&
      memo.path === this.path &&
      memo.httpOnly === this.httpOnly &&
      memo.secure === secure &&
      memo.sameSite === sameSite &&
      memo.domain === this.domain &&
      memo.partitioned === this.partitioned &&
      memo.priority === this.priority
    ) {
      return name + '=' + encoded + memo.attributes;
    }
    const full = serialize(name, PLACEHOLDER, this.serializeOptions());
    const attributes = full.slice(name.length + 1 + PLACEHOLDER.length);
    lastAttributes = {
      name,
      second,
      path: this.path,
      httpOnly: this.httpOnly,
      secure,
      sameSite,
      domain: this.domain,
      partitioned: this.partitioned,
      priority: this.priority,
      attributes,
    };
    return name + '=' + encoded + attributes;
  }

  /** Options for the `cookie` package's serializer. */
  serializeOptions(): Parameters<typeof serialize>[2] {
    return {
      expires: this._expires ?? undefined,
      httpOnly: this.httpOnly,
      secure: this.secure === true,
      sameSite: this.sameSite === 'auto' ? undefined : this.sameSite,
      domain: this.domain,
      path: this.path,
      partitioned: this.partitioned,
      priority: this.priority,
    };
  }

  toJSON(): CookieJSON & { expires?: Date | string | null } {
    return this.data;
  }
}

/** RFC 6265 cookie-name token characters (stricter than the serializer, which is the point: a name that passes is one every browser takes). */
const COOKIE_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * The cookie-name prefix browsers enforce, if any (RFC 6265bis §4.1.3, matched
 * case-insensitively, as browsers do): `__Secure-` needs `Secure`; `__Host-` needs `Secure`,
 * `Path=/` and no `Domain`.
 */
export function cookiePrefix(name: string): '__Host-' | '__Secure-' | null {
  if (/^__host-/i.test(name)) return '__Host-';
  if (/^__secure-/i.test(name)) return '__Secure-';
  return null;
}

/** True when browsers accept a cookie of this name only with `Secure` (a `__Host-`/`__Secure-` prefix). */
export function hasSecurePrefix(name: string): boolean {
  return cookiePrefix(name) !== null;
}

/**
 * `secure: 'auto'` and `sameSite: 'auto'` as one request resolves them: Secure exactly when the
 * request came over HTTPS, and SameSite=None there (Lax otherwise). Returns a copy, keys in
 * their order (the Cookie constructor applies them in order).
 */
export function resolveAuto(options: CookieOptions, secureRequest: boolean): CookieOptions {
  if (options.secure !== 'auto' && options.sameSite !== 'auto') return options;
  const resolved = { ...options };
  if (resolved.secure === 'auto') resolved.secure = secureRequest;
  if (resolved.sameSite === 'auto') resolved.sameSite = secureRequest ? 'none' : 'lax';
  return resolved;
}

/**
 * A Set-Cookie value that deletes the cookie in the browser. It carries the attributes the
 * cookie was set with, as this request resolves them: browsers ignore a deletion of a prefixed
 * or `SameSite=None` cookie that lacks `Secure`.
 */
export function clearCookieHeader(name: string, options: CookieOptions, secureRequest: boolean): string {
  const c = resolveAuto(options, secureRequest);
  const secure = c.secure === true || hasSecurePrefix(name);
  const cookie = new Cookie({
    path: c.path ?? '/',
    domain: c.domain,
    httpOnly: c.httpOnly ?? true,
    secure,
    sameSite: c.sameSite === 'none' && !secure ? undefined : c.sameSite,
    partitioned: c.partitioned,
    expires: new Date(0),
  });
  return cookie.serialize(name, '');
}

/** Whether the `cookie` serializer takes this attribute: the same check that would run per request. */
function serializable(option: 'domain' | 'path', value: string): boolean {
  try {
    serialize('n', 'v', { [option]: value });
    return true;
  } catch {
    return false;
  }
}

/** Validate a cookie name: a non-empty RFC 6265 token. */
export function validateCookieName(name: unknown): string {
  if (typeof name !== 'string' || !COOKIE_NAME.test(name)) {
    throw new ConfigError(
      `name must be a cookie name (letters, digits and !#$%&'*+-.^_\`|~), got ${JSON.stringify(name)}`,
    );
  }
  return name;
}

function oneOf(value: unknown, allowed: readonly unknown[]): boolean {
  return allowed.includes(typeof value === 'string' ? value.toLowerCase() : value);
}

/**
 * Check cookie options and apply the rules of the cookie-name prefixes, which browsers enforce by
 * silently dropping the cookie: `__Secure-` needs `Secure`; `__Host-` needs `Secure`, `Path=/`
 * and no `Domain`. Unset attributes are filled in (`secure: true`, `path: '/'`); options that
 * contradict the prefix are a ConfigError. Returns a copy; throws ConfigError naming the option.
 */
export function validateCookieOptions(name: string, options: unknown): CookieOptions {
  if (options === undefined || options === null) options = {};
  if (typeof options !== 'object' || Array.isArray(options)) {
    throw new ConfigError(
      `cookie option must be an object (or a function returning one), got ${typeof options}`,
    );
  }
  const c = { ...(options as CookieOptions) };
  const bad = (key: string, expected: string): never => {
    const value = (c as Record<string, unknown>)[key];
    throw new ConfigError(
      `cookie.${key} must be ${expected}, got ${typeof value === 'string' ? JSON.stringify(value) : String(value)} (${typeof value})`,
    );
  };
  if (c.maxAge != null && (typeof c.maxAge !== 'number' || !Number.isFinite(c.maxAge))) {
    bad('maxAge', 'a number of milliseconds (or null)');
  }
  if (c.expires != null && !(c.expires instanceof Date && Number.isFinite(c.expires.getTime()))) {
    bad('expires', 'a valid Date (or null)');
  }
  if (c.httpOnly !== undefined && typeof c.httpOnly !== 'boolean') bad('httpOnly', 'a boolean');
  if (c.partitioned !== undefined && typeof c.partitioned !== 'boolean') bad('partitioned', 'a boolean');
  if (c.secure !== undefined && typeof c.secure !== 'boolean' && c.secure !== 'auto') {
    bad('secure', "true, false or 'auto'");
  }
  if (c.sameSite !== undefined && !oneOf(c.sameSite, [true, false, 'lax', 'strict', 'none', 'auto'])) {
    bad('sameSite', "true, false, 'lax', 'strict', 'none' or 'auto'");
  }
  if (c.priority !== undefined && !oneOf(c.priority, ['low', 'medium', 'high'])) {
    bad('priority', "'low', 'medium' or 'high'");
  }
  if (c.domain !== undefined && (typeof c.domain !== 'string' || !serializable('domain', c.domain))) {
    bad('domain', 'a domain name');
  }
  if (c.path !== undefined && (typeof c.path !== 'string' || !serializable('path', c.path))) {
    bad('path', 'a URL path (no ";" or control characters)');
  }
  const prefix = cookiePrefix(name);
  const host = prefix === '__Host-';
  if (prefix) {
    if (c.secure === false) {
      throw new ConfigError(`a ${prefix} cookie must be Secure: set cookie.secure to true or 'auto'`);
    }
    c.secure ??= true;
  }
  if (host) {
    if (c.domain !== undefined)
      throw new ConfigError('a __Host- cookie cannot have a Domain: remove cookie.domain');
    if (c.path !== undefined && c.path !== '/') {
      throw new ConfigError(`a __Host- cookie must have Path=/, got cookie.path ${JSON.stringify(c.path)}`);
    }
    c.path = '/';
  }
  return c;
}
