import Bowser from 'bowser';
import { ConfigError } from '../core/errors.js';
import type { SessionStore } from '../core/store.js';
import type { AuthRequest } from './request.js';
import type { SessionMeta } from './types.js';

/** What the session manager needs from pgsession's middleware (a `SessionMiddleware` fits). */
export interface SessionAccess {
  /** The engine's store (hashed keys). */
  readonly store: SessionStore;
  /** The engine, for the storage key of the current request's id. */
  readonly engine: { keyOf(id: string): string };
}

/** One session on the "your sessions" page. */
export interface SessionInfo {
  /**
   * The session's storage key (SHA-256 of its id): identifies it for revocation, but is not a
   * cookie value and cannot be turned into one.
   */
  id: string;
  /** The session of the request asking. */
  current: boolean;
  createdAt: Date;
  lastActiveAt: Date;
  expiresAt: Date;
  /** Client address at login, if recorded. */
  ip: string | null;
  userAgent: string | null;
  /** Browser and OS in words, e.g. "Chrome 120 on macOS Catalina". */
  device: string;
  /** The session is bound to a key on the device (DBSC, the `deviceBound` option). */
  deviceBound: boolean;
}

/** Browser and OS names the parser knows: its fallback otherwise reports a UA's first word as the browser. */
const KNOWN_BROWSERS: ReadonlySet<string> = new Set(Object.values(Bowser.BROWSER_MAP));
const KNOWN_OSES: ReadonlySet<string> = new Set(Object.values(Bowser.OS_MAP));
/** A version as browsers write it ("120.0.0.0", "17_1"): digits only, so no words or URLs get through. */
const VERSION = /^\d{1,6}([._]\d{1,6}){0,3}$/;
/** The parser's own names for OS releases ("Catalina", "10", "XP"). */
const VERSION_NAME = /^[A-Za-z0-9 .]{1,20}$/;

/**
 * Describe a User-Agent in words: "Firefox 128 on Linux", "Safari 17.1 on iOS 17.1". Only what
 * the UA parser recognises is described (names from its tables, versions made of digits);
 * anything else is "Unknown browser". The header is attacker-chosen and the description is
 * stored, shown and sent in security notices, so no text of it is ever copied through.
 */
export function describeUserAgent(ua: string | null | undefined): string {
  if (!ua) return 'Unknown device';
  let parsed: Bowser.Parser.ParsedResult;
  try {
    parsed = Bowser.parse(ua);
  } catch {
    return 'Unknown device';
  }
  const name = parsed.browser.name && KNOWN_BROWSERS.has(parsed.browser.name) ? parsed.browser.name : '';
  const version = VERSION.test(parsed.browser.version ?? '') ? (parsed.browser.version ?? '') : '';
  const major =
    /^\d+\.\d+\.0\.0$/.test(version) || /^\d+\.0$/.test(version) ? version.split('.')[0] : version;
  const browser = name ? `${name}${major ? ` ${major}` : ''}` : 'Unknown browser';
  const osName = parsed.os.name && KNOWN_OSES.has(parsed.os.name) ? parsed.os.name : '';
  const osVersion = VERSION_NAME.test(parsed.os.versionName ?? '')
    ? parsed.os.versionName
    : VERSION.test(parsed.os.version ?? '')
      ? parsed.os.version
      : '';
  const os = osName ? `${osName}${osVersion ? ` ${osVersion}` : ''}` : '';
  return os ? `${browser} on ${os}` : browser;
}

function metaOf(data: Record<string, unknown>): Partial<SessionMeta> {
  const meta = data._meta;
  return meta && typeof meta === 'object' ? (meta as Partial<SessionMeta>) : {};
}

/** What {@link SessionManager.revoke} did. */
export type RevokeOutcome = 'revoked' | 'current' | 'not-found';

/**
 * Listing and revoking a user's sessions ("your sessions", "log out everywhere else", admin
 * and account-disable revocation). Needs a store with `listByUser`/`destroyByUser` (the
 * PostgreSQL and memory stores have them).
 */
export class SessionManager {
  readonly #access: SessionAccess;

  constructor(access: SessionAccess) {
    this.#access = access;
  }

  get #store(): Required<Pick<SessionStore, 'listByUser' | 'destroyByUser'>> & SessionStore {
    const store = this.#access.store;
    if (typeof store.listByUser !== 'function' || typeof store.destroyByUser !== 'function') {
      throw new ConfigError(
        'listing and revoking sessions needs a store with listByUser/destroyByUser (PgStore or MemoryStore)',
      );
    }
    return store as Required<Pick<SessionStore, 'listByUser' | 'destroyByUser'>> & SessionStore;
  }

  /** The storage key of the request's session (what the sessions page shows as its id). */
  currentKey(req: AuthRequest): string | null {
    return req.sessionID ? this.#access.engine.keyOf(req.sessionID) : null;
  }

  /** The user's live sessions, most recently active first; `currentKey` is marked current. */
  async listForUser(userId: number, currentKey: string | null = null): Promise<SessionInfo[]> {
    const listings = await this.#store.listByUser(String(userId));
    return listings
      .map(({ key, record }) => {
        const meta = metaOf(record.data);
        const ua = typeof meta.ua === 'string' ? meta.ua : null;
        return {
          id: key,
          current: key === currentKey,
          createdAt: new Date(record.createdAt),
          lastActiveAt: new Date(record.lastActiveAt),
          expiresAt: new Date(record.expiresAt),
          ip: typeof meta.ip === 'string' ? meta.ip : null,
          userAgent: ua,
          device: describeUserAgent(ua),
          deviceBound: record.device != null,
        };
      })
      .sort(
        (a, b) =>
          Number(b.current) - Number(a.current) || b.lastActiveAt.getTime() - a.lastActiveAt.getTime(),
      );
  }

  /** The logged-in user's sessions (empty when not logged in). */
  async list(req: AuthRequest): Promise<SessionInfo[]> {
    const userId = req.session?.userId;
    if (typeof userId !== 'number') return [];
    return this.listForUser(userId, this.currentKey(req));
  }

  /**
   * Revoke one of the logged-in user's sessions by its listed id. Only a session that belongs
   * to the user is touched ('not-found' otherwise). Revoking the current session logs out
   * ('current').
   */
  async revoke(req: AuthRequest, id: string): Promise<RevokeOutcome> {
    const userId = req.session?.userId;
    if (typeof userId !== 'number' || typeof id !== 'string' || id.length === 0 || id.length > 128) {
      return 'not-found';
    }
    const current = this.currentKey(req);
    if (id === current) {
      await req.session!.destroy();
      return 'current';
    }
    const mine = await this.#store.listByUser(String(userId));
    if (!mine.some((s) => s.key === id)) return 'not-found';
    await this.#store.destroy(id);
    return 'revoked';
  }

  /** Revoke every session of the logged-in user except this one; returns how many went. */
  async revokeOthers(req: AuthRequest): Promise<number> {
    const userId = req.session?.userId;
    if (typeof userId !== 'number') return 0;
    return this.#store.destroyByUser(String(userId), this.currentKey(req) ?? undefined);
  }

  /** Revoke every session of a user (admin action, disabled account, role change). */
  async revokeAll(userId: number, exceptKey?: string): Promise<number> {
    return this.#store.destroyByUser(String(userId), exceptKey);
  }

  /** How many live sessions a user has. */
  async count(userId: number): Promise<number> {
    return (await this.#store.listByUser(String(userId))).length;
  }
}
