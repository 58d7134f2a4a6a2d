/**
 * Security notices (ASVS 6.3.5, 6.3.7): telling account owners about suspicious sign-in activity
 * and about changes to their credentials, not just writing it to an audit log nobody reads.
 *
 * Every notice is a row of `auth_security_notices` (migration `auth/003_security_notices`), so
 * the app can show it in the account (unread count, list, mark read), and is handed to the app's
 * `notify` hook (email, push…) addressed to the account's email. Recording never fails or delays
 * the action it reports: errors go to `onError`, and the hook runs detached with a time limit.
 */
import { createHash } from 'node:crypto';
import Bowser from 'bowser';
import type pg from 'pg';
import { parseDuration } from '../core/duration.js';
import { DEVICE_PREFIXES, networkOf } from './address.js';
import { type LimitScope, WindowCounter } from './rate-limit.js';
import { type AuthRequest, clientAddress, userAgent } from './request.js';
import { describeUserAgent } from './sessions.js';

/** What a notice is about. */
export type SecurityNoticeKind =
  | 'new-sign-in'
  | 'failed-sign-ins'
  | 'locked'
  | 'password-changed'
  | 'email-changed'
  | 'second-factor-failed';

/** Every kind, in the order the migration's CHECK lists them. */
export const SECURITY_NOTICE_KINDS: readonly SecurityNoticeKind[] = Object.freeze([
  'new-sign-in',
  'failed-sign-ins',
  'locked',
  'password-changed',
  'email-changed',
  'second-factor-failed',
]);

/** Where and when the reported event happened (the request that caused it). */
export interface NoticeContext {
  /** Client address (Express's `req.ip`: honours `trust proxy`). */
  ip: string;
  /** User-Agent, truncated to 512 characters. */
  ua: string;
  /** Browser and OS in words, e.g. "Firefox 128 on Linux". */
  device: string;
  /** When, ISO 8601 (UTC). */
  at: string;
}

/** The details stored with each kind of notice. Never a password, a session id or a cookie. */
export interface SecurityNoticeDetails {
  /** A successful sign-in from a browser/OS/network this account had not signed in from. */
  'new-sign-in': NoticeContext;
  /** `failures` wrong passwords within `windowSeconds`; the context is the last one's. */
  'failed-sign-ins': NoticeContext & { failures: number; windowSeconds: number };
  /** Sign-in refused by the failed-login limits (`scope`: which one) for `retryAfter` seconds. */
  locked: NoticeContext & { scope: LimitScope; retryAfter: number };
  /** The password was changed; `revokedSessions` other sessions were logged out. */
  'password-changed': NoticeContext & { revokedSessions: number };
  /** The account's email was changed from `previousEmail` to `newEmail`. */
  'email-changed': NoticeContext & { previousEmail: string; newEmail: string };
  /**
   * The right password, then a wrong two-factor code: whoever it was knows the password. At most
   * one per account per `failedSignIns.window`.
   */
  'second-factor-failed': NoticeContext;
}

interface NoticeBase {
  id: number;
  userId: number;
  createdAt: Date;
  /** When the user marked it read (null: unread). */
  readAt: Date | null;
}

/** One security notice, discriminated by `kind`. */
export type SecurityNotice = {
  [K in SecurityNoticeKind]: NoticeBase & { kind: K; details: SecurityNoticeDetails[K] };
}[SecurityNoticeKind];

/**
 * A notice as handed to the `notify` hook: `to` is the address to send it to. An email change is
 * delivered twice, to `details.previousEmail` and to `details.newEmail`, so the real owner hears
 * of it even when the change took their address away.
 */
export type SecurityNoticeMessage = SecurityNotice & { to: string };

/** The app's delivery hook (email, push…). */
export type NotifyHook = (notice: SecurityNoticeMessage) => void | Promise<void>;

/** Tunables of the security notices (`createAuth({ notices })`). */
export interface SecurityNoticeOptions {
  /**
   * Wrong passwords for one account: one `failed-sign-ins` notice when the `threshold`-th
   * failure within a window of `window` seconds happens, not one per failure. Default 3 in 15 min.
   */
  failedSignIns?: { threshold: number; window: number };
  /** At most one `locked` notice per account per this many seconds. Default 15 min. */
  lockedWindow?: number;
  /**
   * A device not seen for this many seconds counts as unfamiliar again. Default 180 days.
   */
  rememberDevices?: number;
  /** How long the `notify` hook may take before it is abandoned (and reported). Default 10 s. */
  notifyTimeoutMs?: number;
  /** Hook calls allowed in flight at once; more are dropped (and reported). Default 100. */
  maxPendingNotifications?: number;
  /** The clock (epoch ms), for tests. Default `Date.now`. */
  now?: () => number;
}

/** Options of {@link SecurityNotices}. */
export interface SecurityNoticesConfig extends SecurityNoticeOptions {
  /** `false`: record and send nothing (listing still works). Default true. */
  enabled?: boolean;
  /** Delivery hook; without one, notices are only stored. */
  notify?: NotifyHook | undefined;
  /** Where recording and delivery errors go. */
  onError: (err: unknown) => void;
  /** The counters' table (shared with the login limits). Default `auth_rate_limits`. */
  counterTable?: string | undefined;
}

/** Who a notice is for. */
export interface NoticeRecipient {
  id: number;
  email: string;
}

const DEFAULTS = {
  failedSignIns: { threshold: 3, window: 15 * 60 },
  lockedWindow: 15 * 60,
  rememberDevices: 180 * 86_400,
  notifyTimeoutMs: 10_000,
  maxPendingNotifications: 100,
};

/** The network part of an address: IPv4 /24, IPv6 /64; anything else as is. */
export function addressNetwork(ip: string): string {
  return networkOf(ip, DEVICE_PREFIXES);
}

/**
 * What makes a device "the same" for new-sign-in notices: browser family, OS family and client
 * network — not versions (browsers update themselves every few weeks) and not the exact address
 * (IPv6 privacy addresses change daily inside their /64, DHCP leases move inside a /24). Hashed:
 * the known-devices table only has to answer "seen before?".
 */
export function deviceKey(ua: string, ip: string): string {
  let family = '';
  try {
    const parsed = Bowser.parse(ua);
    if (parsed.browser.name || parsed.os.name)
      family = `${parsed.browser.name ?? ''}|${parsed.os.name ?? ''}`;
  } catch {
    // Unparseable: fall back to the product token below.
  }
  // Non-browser clients (curl/8.5, scripts): their product name stands for the family.
  if (!family) family = `?|${(ua.split(/[/\s]/, 1)[0] ?? '').toLowerCase()}`;
  return createHash('sha256')
    .update(`${family.toLowerCase()}|${addressNetwork(ip)}`)
    .digest('base64url')
    .slice(0, 32);
}

interface Row {
  id: string | number;
  user_id: string | number;
  kind: SecurityNoticeKind;
  created_at: Date;
  read_at: Date | null;
  details: Record<string, unknown>;
}

const COLUMNS = 'id, user_id, kind, created_at, read_at, details';

function toNotice(row: Row): SecurityNotice {
  // The row's kind and details were written together by this module; the union is keyed by kind.
  return {
    id: Number(row.id),
    userId: Number(row.user_id),
    kind: row.kind,
    createdAt: row.created_at,
    readAt: row.read_at,
    details: row.details,
  } as unknown as SecurityNotice;
}

function validUserId(id: number): boolean {
  return Number.isSafeInteger(id) && id > 0;
}

/**
 * The security-notice facility of the auth layer (`auth.notices`). `Auth` calls the recording
 * methods at login, on failures and lockouts, and on credential changes; the app calls
 * {@link list}, {@link countUnread} and {@link markRead}.
 */
export class SecurityNotices {
  readonly pool: pg.Pool;
  readonly enabled: boolean;
  readonly #notify: NotifyHook | undefined;
  readonly #onError: (err: unknown) => void;
  readonly #now: () => number;
  readonly #failed: { threshold: number; window: number };
  readonly #rememberDevices: number;
  readonly #notifyTimeoutMs: number;
  readonly #maxPending: number;
  readonly #failures: WindowCounter;
  readonly #lockouts: WindowCounter;
  readonly #codeFailures: WindowCounter;
  readonly #pending = new Set<Promise<void>>();
  #deliveries = 0;

  constructor(pool: pg.Pool, config: SecurityNoticesConfig) {
    this.pool = pool;
    this.enabled = config.enabled !== false;
    this.#notify = config.notify;
    this.#onError = config.onError;
    this.#now = config.now ?? Date.now;
    this.#failed = { ...DEFAULTS.failedSignIns, ...config.failedSignIns };
    this.#rememberDevices = config.rememberDevices ?? DEFAULTS.rememberDevices;
    this.#notifyTimeoutMs = config.notifyTimeoutMs ?? DEFAULTS.notifyTimeoutMs;
    this.#maxPending = config.maxPendingNotifications ?? DEFAULTS.maxPendingNotifications;
    const { threshold, window } = this.#failed;
    if (!Number.isInteger(threshold) || threshold < 1 || !(window > 0))
      throw new TypeError('notices.failedSignIns: threshold must be an integer ≥ 1 and window > 0 seconds');
    // Counters shared by every app server (same table as the login limits), so "the 3rd failure"
    // is the 3rd across all of them, and exactly one request sees it.
    const counter = (keyPrefix: string, duration: number) =>
      new WindowCounter({ pool, tableName: config.counterTable, keyPrefix, duration });
    this.#failures = counter('notice_fail', window);
    this.#lockouts = counter('notice_lock', config.lockedWindow ?? DEFAULTS.lockedWindow);
    this.#codeFailures = counter('notice_2fa', window);
  }

  /** Where and when, from a request. */
  context(req: AuthRequest): NoticeContext {
    const ua = userAgent(req);
    return {
      ip: clientAddress(req),
      ua,
      device: describeUserAgent(ua),
      at: new Date(this.#now()).toISOString(),
    };
  }

  // --- reading (for the app) ---------------------------------------------------------------

  /** A user's notices, newest first (at most `limit`, default 50; `unreadOnly` for the unread ones). */
  async list(
    userId: number,
    options: { unreadOnly?: boolean; limit?: number } = {},
  ): Promise<SecurityNotice[]> {
    if (!validUserId(userId)) return [];
    const limit = Math.min(Math.max(Math.trunc(options.limit ?? 50), 1), 500);
    const { rows } = await this.pool.query<Row>(
      `SELECT ${COLUMNS} FROM auth_security_notices
        WHERE user_id = $1 ${options.unreadOnly ? 'AND read_at IS NULL' : ''}
        ORDER BY created_at DESC, id DESC LIMIT $2`,
      [userId, limit],
    );
    return rows.map(toNotice);
  }

  /** How many of a user's notices are unread. */
  async countUnread(userId: number): Promise<number> {
    if (!validUserId(userId)) return 0;
    const { rows } = await this.pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM auth_security_notices WHERE user_id = $1 AND read_at IS NULL',
      [userId],
    );
    return rows[0]?.n ?? 0;
  }

  /**
   * Delete what no longer needs keeping: notices older than `olderThan` (default 365 days, read
   * or not: a year-old warning is history, and the table must not grow forever) and devices not
   * seen for longer than `rememberDevices` (already treated as unfamiliar again). Run it from a
   * cron job (`pgsession notices prune`) or a timer; one indexed DELETE each.
   */
  async prune(options: { olderThan?: number | string } = {}): Promise<{ notices: number; devices: number }> {
    const olderThan = parseDuration(options.olderThan ?? '365d', 'notices.prune olderThan');
    const now = this.#now();
    const notices = await this.pool.query(
      'DELETE FROM auth_security_notices WHERE created_at < to_timestamp($1::float8 / 1000)',
      [now - olderThan],
    );
    const devices = await this.pool.query(
      'DELETE FROM auth_known_devices WHERE last_seen_at < to_timestamp($1::float8 / 1000)',
      [now - this.#rememberDevices * 1000],
    );
    return { notices: notices.rowCount ?? 0, devices: devices.rowCount ?? 0 };
  }

  /**
   * Mark a user's notices read: those with these ids, or all of them when `ids` is omitted.
   * Only the user's own notices are touched (ids of other users' notices change nothing).
   * Returns how many changed.
   */
  async markRead(userId: number, ids?: readonly number[]): Promise<number> {
    if (!validUserId(userId)) return 0;
    const wanted = ids?.filter(validUserId);
    if (wanted && wanted.length === 0) return 0;
    const result = await this.pool.query(
      `UPDATE auth_security_notices SET read_at = to_timestamp($2::float8 / 1000)
        WHERE user_id = $1 AND read_at IS NULL ${wanted ? 'AND id = ANY($3::bigint[])' : ''}`,
      wanted ? [userId, this.#now(), wanted] : [userId, this.#now()],
    );
    return result.rowCount ?? 0;
  }

  /**
   * Resolves once the background work started so far (recording after failed logins and
   * lockouts, hook calls) has finished or timed out. For tests and graceful shutdown.
   */
  async settled(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
  }

  // --- recording (called by Auth) ----------------------------------------------------------

  /**
   * A successful sign-in: remember the device and, when it is one this account has not signed in
   * from (or not for `rememberDevices`), a `new-sign-in` notice. The very first sign-in of an
   * account (no device known at all, e.g. right after this migration) only sets the baseline:
   * there is nothing to compare with, and every existing user would otherwise get a notice.
   * Never throws.
   */
  async signedIn(user: NoticeRecipient, ctx: NoticeContext): Promise<SecurityNotice | null> {
    if (!this.enabled) return null;
    try {
      const now = this.#now();
      const { rows } = await this.pool.query<{ known: number; seen: Date | null }>(
        `WITH prior AS (
           SELECT count(*)::int AS known, max(last_seen_at) FILTER (WHERE device = $2) AS seen
             FROM auth_known_devices WHERE user_id = $1
         ), up AS (
           INSERT INTO auth_known_devices (user_id, device, first_seen_at, last_seen_at)
           VALUES ($1, $2, to_timestamp($3::float8 / 1000), to_timestamp($3::float8 / 1000))
           ON CONFLICT (user_id, device) DO UPDATE SET last_seen_at = EXCLUDED.last_seen_at
         )
         SELECT known, seen FROM prior`,
        [user.id, deviceKey(ctx.ua, ctx.ip), now],
      );
      const prior = rows[0];
      if (!prior || prior.known === 0) return null;
      const familiar = prior.seen !== null && prior.seen.getTime() > now - this.#rememberDevices * 1000;
      if (familiar) return null;
      return await this.#record(user, 'new-sign-in', ctx);
    } catch (err) {
      this.#onError(err);
      return null;
    }
  }

  /**
   * A wrong password for an existing account (at login, or when a logged-in session confirms
   * the password for a change or step-up). Counted per account (across servers); the
   * `threshold`-th failure of a window records one `failed-sign-ins` notice. Runs in the
   * background: the failed login's answer must not wait for it (nor differ in time from an
   * unknown email's, which records nothing).
   */
  failedSignIn(user: NoticeRecipient, ctx: NoticeContext): void {
    if (!this.enabled) return;
    this.#background(async () => {
      const count = await this.#failures.hit(String(user.id));
      if (count !== this.#failed.threshold) return;
      await this.#record(user, 'failed-sign-ins', {
        ...ctx,
        failures: count,
        windowSeconds: this.#failed.window,
      });
    });
  }

  /**
   * A wrong TOTP or recovery code after the right password. Unlike a wrong password this is not
   * guessing: the password is known to whoever typed it, so the owner hears of the first one
   * (then at most one per window, across servers), in the background like the other failures.
   */
  wrongSecondFactor(user: NoticeRecipient, ctx: NoticeContext): void {
    if (!this.enabled) return;
    this.#background(async () => {
      if ((await this.#codeFailures.hit(String(user.id))) !== 1) return;
      await this.#record(user, 'second-factor-failed', ctx);
    });
  }

  /**
   * Sign-in refused by the failed-login limits. `account` and `account-ip` refusals are about
   * one account: if it exists (looked up here, in the background, so a 429 takes the same time
   * and says the same whether it does or not), one `locked` notice per `lockedWindow`.
   */
  lockedOut(
    findUser: () => Promise<NoticeRecipient | null>,
    lock: { scope: LimitScope; retryAfter: number },
    ctx: NoticeContext,
  ): void {
    if (!this.enabled || lock.scope === 'ip') return;
    this.#background(async () => {
      const user = await findUser();
      if (!user) return;
      if ((await this.#lockouts.hit(String(user.id))) !== 1) return;
      await this.#record(user, 'locked', {
        ...ctx,
        scope: lock.scope,
        retryAfter: Math.ceil(lock.retryAfter),
      });
    });
  }

  /** The password was changed (never throws). */
  async passwordChanged(
    user: NoticeRecipient,
    ctx: NoticeContext,
    revokedSessions: number,
  ): Promise<SecurityNotice | null> {
    if (!this.enabled) return null;
    try {
      return await this.#record(user, 'password-changed', { ...ctx, revokedSessions });
    } catch (err) {
      this.#onError(err);
      return null;
    }
  }

  /** The email was changed: one notice, delivered to the previous and the new address (never throws). */
  async emailChanged(
    userId: number,
    previousEmail: string,
    newEmail: string,
    ctx: NoticeContext,
  ): Promise<SecurityNotice | null> {
    if (!this.enabled) return null;
    try {
      return await this.#record(
        { id: userId, email: newEmail },
        'email-changed',
        { ...ctx, previousEmail, newEmail },
        previousEmail === newEmail ? [newEmail] : [previousEmail, newEmail],
      );
    } catch (err) {
      this.#onError(err);
      return null;
    }
  }

  // --- internals -------------------------------------------------------------------------

  async #record<K extends SecurityNoticeKind>(
    user: NoticeRecipient,
    kind: K,
    details: SecurityNoticeDetails[K],
    to: readonly string[] = [user.email],
  ): Promise<SecurityNotice> {
    const { rows } = await this.pool.query<Row>(
      `INSERT INTO auth_security_notices (user_id, kind, created_at, details)
       VALUES ($1, $2, to_timestamp($3::float8 / 1000), $4::jsonb)
       RETURNING ${COLUMNS}`,
      [user.id, kind, this.#now(), JSON.stringify(details)],
    );
    const notice = toNotice(rows[0]!);
    for (const address of to) this.#deliver({ ...notice, to: address });
    return notice;
  }

  /** Run the app's hook detached: its errors, slowness or hang never reach the caller. */
  #deliver(message: SecurityNoticeMessage): void {
    const notify = this.#notify;
    if (!notify) return;
    if (this.#deliveries >= this.#maxPending) {
      // A hook that hangs must not pile up without limit; the notice stays in the table.
      this.#onError(new Error(`security notice ${message.id} not sent: too many notifications in flight`));
      return;
    }
    this.#deliveries++;
    this.#background(async () => {
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          // Called on a later tick, so a hook that throws synchronously is just a rejection.
          Promise.resolve().then(() => notify(message)),
          new Promise<never>((_, reject) => {
            timer = setTimeout(
              () => reject(new Error(`security notice hook timed out after ${this.#notifyTimeoutMs} ms`)),
              this.#notifyTimeoutMs,
            );
            timer.unref?.();
          }),
        ]);
      } finally {
        clearTimeout(timer);
        this.#deliveries--;
      }
    });
  }

  #background(work: () => Promise<void>): void {
    const run = work()
      .catch((err: unknown) => this.#onError(err))
      .finally(() => this.#pending.delete(run));
    this.#pending.add(run);
  }
}
