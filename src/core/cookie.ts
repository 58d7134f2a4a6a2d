import { serialize } from 'cookie';
import type { CookieJSON } from '../stores/types.js';

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
  originalMaxAge: number | null = null;
  private _expires: Date | null | undefined = null;

  constructor(options?: CookieOptions | CookieJSON) {
    if (options !== undefined && (typeof options !== 'object' || options === null)) {
      throw new TypeError('argument options must be a object');
    }
    let original: number | null | undefined;
    if (options) {
      for (const key of Object.keys(options) as Array<keyof CookieOptions | 'originalMaxAge'>) {
        if (key === ('data' as string)) continue;
        const value = (options as Record<string, unknown>)[key];
        if (key === 'originalMaxAge') original = value as number | null;
        else if (key === 'maxAge') this.maxAge = value as number | null;
        else if (key === 'expires')
          this.expires =
            value instanceof Date || value == null ? (value as Date | null) : new Date(value as string);
        else (this as Record<string, unknown>)[key] = value;
      }
    }
    // Stored JSON carries the configured lifetime; restore it after `expires` (whose setter
    // overwrote it with the time left) so touch() restarts the full lifetime.
    if (original !== undefined && original !== null) this.originalMaxAge = original;
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
    this.expires = typeof ms === 'number' ? new Date(Date.now() + ms) : (ms ?? null);
  }

  get maxAge(): number | null {
    return this._expires instanceof Date ? this._expires.valueOf() - Date.now() : null;
  }

  /** The serializable settings (express-session's `cookie.data`). */
  get data(): CookieJSON & { expires?: Date | string | null } {
    return {
      originalMaxAge: this.originalMaxAge,
      partitioned: this.partitioned,
      priority: this.priority,
      expires: this._expires ?? null,
      secure: this.secure === 'auto' ? undefined : this.secure,
      httpOnly: this.httpOnly,
      domain: this.domain,
      path: this.path,
      sameSite: this.sameSite === 'auto' ? undefined : this.sameSite,
    } as CookieJSON & { expires?: Date | null };
  }

  /** A `Set-Cookie` header value for `name=value` with these settings. */
  serialize(name: string, value: string): string {
    return serialize(name, value, this.serializeOptions());
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
