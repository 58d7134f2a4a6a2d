/**
 * One request's view of its session: the decisions express-session makes (when to create,
 * save, touch and re-send the cookie), made in one place, plus the methods behind
 * `req.session.save()` & co. Read top to bottom: attach (generate or inflate), decide at the
 * end of the request (commit), and the Set-Cookie value the response gets.
 */
import { ChangeTracker, type Snapshot, snapshot, toJSON } from './changes.js';
import { Cookie, type CookieOptions, clearCookieHeader, hasSecurePrefix, resolveAuto } from './cookie.js';
import { registrationHeader } from './device-bound.js';
import type { DeferredTouch, EngineOptions, EngineServices } from './engine-options.js';
import { SessionStateError } from './errors.js';
import { readOnlyFault, runStore } from './faults.js';
import { expiresAt } from './lifetime.js';
import {
  isDataKey,
  kController,
  type RegenerateOptions,
  Session,
  type SessionController,
  type SessionData,
  type SessionHost,
} from './session.js';
import { type Secret, SIGNED_PREFIX, sign } from './signature.js';
import { type SessionJSON, type SessionRecord, storedCookieOf, userIdOf } from './store.js';

/** The cookie a request came with, verified (what `SessionEngine.load` found). */
export interface PresentedCookie {
  /** The id it names. */
  readonly id: string;
  /** Its value as sent (`s:<id>.<mac>`), re-sent as is while the id and secret stay the same. */
  readonly raw: string;
  /** Which secret verified it (0: the current one; more: re-signed with the current one). */
  readonly secretIndex: number;
}

let prefixName: string | undefined;
let prefixValue = false;

/** {@link hasSecurePrefix}, remembered for the last name (one per engine in practice): this runs on every response. */
function securePrefixed(name: string): boolean {
  if (name !== prefixName) {
    prefixValue = hasSecurePrefix(name);
    prefixName = name;
  }
  return prefixValue;
}

export class RequestSession implements SessionController {
  /** The cookie the request came with, if it verified. */
  private presented: PresentedCookie | undefined;
  /** The client's cookie should be deleted (logout, expiry, revoked elsewhere). */
  clearCookie = false;
  /**
   * The session is a last-known-good copy served while the store is unreachable (degraded
   * mode): reading works, any write fails with StoreUnavailableError, touches are skipped and
   * no Set-Cookie is sent (the cookie is neither refreshed nor replaced).
   */
  readOnly = false;
  id = '';
  key = '';
  private persisted = false;
  private createdAt = 0;
  private lastActiveAt = 0;
  private version = 0;
  /** The id the request started with: a regenerated session counts as modified against it. */
  private originalId = '';
  /** The loaded session is bound to a device key (DBSC); a new or renewed one never is. */
  private deviceBound = false;
  /** The owner of the session as loaded (null for a new one): a change of owner is a login. */
  private loadedUserId: string | null = null;
  /**
   * The request's session is bound to a device but came without a valid bound cookie, under
   * `deviceBound.enforce: 'require'`: it is served a new, empty session that is saved (and its
   * cookie sent) only if the request puts something in it, so the browser keeps its real one.
   */
  private refusedForDevice = false;
  /** The bound cookie (DBSC) the request came with, as the engine parsed it with the session cookie. */
  boundCookie: string | undefined = undefined;
  private readonly changes = new ChangeTracker();
  private touched = false;
  private committed = false;
  /**
   * The session method (save, destroy, regenerate, reload) still running, if any. Methods run one
   * after another, and the commit waits for them: `req.session.save(); res.redirect('/')` must
   * not race the commit into a second insert, nor `req.session.destroy(); res.redirect('/')`
   * answer before the row is gone.
   */
  private inflight: Promise<void> | undefined;

  constructor(
    private readonly engine: EngineServices,
    readonly host: SessionHost,
    readonly secure: boolean,
    /** This request's cookie options. */
    readonly cookieOptions: CookieOptions,
    /** This request's secrets: the first signs the cookie. */
    readonly secrets: readonly Secret[],
  ) {
    host[kController] = this;
  }

  private get opts(): EngineOptions {
    return this.engine.options;
  }

  /** The request came with a valid cookie (its session may still be gone). */
  presentedCookie(cookie: PresentedCookie): void {
    this.presented = cookie;
  }

  private emit(event: Parameters<NonNullable<EngineOptions['onEvent']>>[0]): void {
    this.opts.onEvent?.(event, this.host);
  }

  // ---- Attaching a session to the request ----

  /** A brand-new, unsaved session with a fresh id (never the presented one: no fixation). */
  generate(keep?: Record<string, unknown>): void {
    const { opts, host } = this;
    this.id = opts.genid(host);
    this.key = this.engine.keyOf(this.id);
    host.sessionID = this.id;
    const session = new Session(host) as Session & Partial<SessionData>;
    session.cookie = new Cookie(resolveAuto(this.cookieOptions, this.secure));
    host.session = session;
    this.persisted = false;
    this.createdAt = opts.now();
    this.lastActiveAt = this.createdAt;
    this.version = 0;
    this.readOnly = false;
    this.originalId = this.id;
    this.deviceBound = false;
    this.loadedUserId = null;
    this.changes.generated(session);
    if (keep) for (const [k, v] of Object.entries(keep)) if (!(k in session)) session[k] = v;
  }

  /** Attach a stored session. */
  inflate(id: string, key: string, record: SessionRecord): void {
    const { host } = this;
    this.id = id;
    this.key = key;
    host.sessionID = id;
    const stored = storedCookieOf(record) ?? { originalMaxAge: null };
    // The constructor turns a stored (string) `expires` into a Date itself.
    const cookie = new Cookie(stored);
    cookie.originalMaxAge = stored.originalMaxAge ?? null;
    let session: Session & Partial<SessionData>;
    if (record.stored) {
      session = new Session(host) as Session & Partial<SessionData>;
      record.stored.copyInto(session, cookie, isDataKey);
    } else {
      session = new Session(host, record.data) as Session & Partial<SessionData>;
      session.cookie = cookie;
    }
    host.session = session;
    this.persisted = true;
    this.createdAt = record.createdAt;
    this.lastActiveAt = record.lastActiveAt;
    this.version = record.version;
    this.readOnly = record.readOnly === true;
    this.originalId = id;
    this.deviceBound = record.device != null;
    this.loadedUserId = record.userId;
    this.changes.loaded(record, session, this.opts.resave);
  }

  /** Serve the request as having no session (see {@link refusedForDevice}). */
  refuseForDevice(): void {
    this.refusedForDevice = true;
    this.generate();
  }

  /**
   * The `Secure-Session-Registration` value for this response, or null: with `deviceBound` on,
   * offered when the request logged a session in (a session saved with an owner, whose id was
   * renewed or whose owner changed), since a new id starts unbound. Called with the Set-Cookie.
   */
  deviceRegistration(): string | null {
    const bound = this.opts.deviceBound;
    if (!bound || !this.persisted || this.deviceBound || !this.host.session) return null;
    const userId = this.currentUserId();
    if (userId === null || (this.sameId && userId === this.loadedUserId)) return null;
    return registrationHeader(bound, this.key, this.opts.now(), this.secrets[0]!);
  }

  // ---- Comparisons (change detection lives in changes.ts) ----

  private get sameId(): boolean {
    return this.originalId === this.id;
  }

  private isModified(current: Snapshot): boolean {
    return !this.sameId || this.changes.differsFromOriginal(current);
  }

  private shouldSave(current: Snapshot): boolean {
    // A new session the request did not touch is saved only with saveUninitialized.
    if (
      (!this.opts.saveUninitialized || this.refusedForDevice) &&
      this.changes.neverSaved &&
      this.presented?.id !== this.id
    ) {
      return this.isModified(current);
    }
    return !(this.sameId && this.changes.matchesSaved(current));
  }

  /** Whether the data or id differ from what was loaded (a snapshot only when it may). */
  private modifiedNow(session: Session): boolean {
    return !(this.sameId && this.changes.unchangedSinceLoad(session)) && this.isModified(snapshot(session));
  }

  private touchCookie(session: Session): void {
    if (this.touched) return;
    this.touched = true;
    session.touch();
  }

  // ---- The end of the request ----

  /**
   * Persist what the request changed. Returns null when nothing has to be awaited (the steady
   * state: no write, or only a throttled touch in the background), so the adapter can end the
   * response synchronously.
   */
  commit(): Promise<void> | null {
    if (this.committed) return null;
    this.committed = true;
    if (this.inflight) return this.inflight.then(() => this.decide() ?? undefined);
    return this.decide();
  }

  private decide(): Promise<void> | null {
    const session = this.host.session;
    if (!session) {
      if (this.opts.unset === 'destroy') {
        if (this.readOnly) return Promise.reject(readOnlyFault('destroy the session'));
        return this.destroyRow();
      }
      return null;
    }
    // As express-session: an app that made req.sessionID something else than an id gets no save.
    if (typeof this.host.sessionID !== 'string') return null;
    this.touchCookie(session);
    if (this.changes.savedAsLoaded && this.sameId && this.changes.unchangedSinceLoad(session)) {
      // The steady state: same id, same data as loaded and saved. Nothing to save (the checks
      // below would find the same without serializing every key), at most a touch.
      if (this.readOnly) {
        this.emit({ type: 'touch-skipped', key: this.key });
        return null;
      }
      if (this.presented?.id === this.id && this.persisted) this.touchStore(session, undefined);
      return null;
    }
    const current = snapshot(session);
    if (this.readOnly) {
      // Degraded mode: an unchanged session needs nothing (not even resave's rewrite); a changed
      // one cannot be saved, and the request must fail rather than pretend it was.
      if (this.isModified(current)) return Promise.reject(readOnlyFault('save the session'));
      this.emit({ type: 'touch-skipped', key: this.key });
      return null;
    }
    if (this.shouldSave(current)) return this.persist(session, current);
    if (this.presented?.id === this.id && this.persisted) this.touchStore(session, current);
    return null;
  }

  private async persist(session: Session & Partial<SessionData>, current: Snapshot): Promise<void> {
    const { opts, engine } = this;
    const now = opts.now();
    const data = toJSON(session, current);
    const userId = userIdOf(data);
    const expiry = expiresAt(opts, now, this.createdAt, session.cookie, this.cookieOptions);
    if (!this.persisted) {
      const record: SessionRecord = {
        data,
        expiresAt: expiry,
        createdAt: this.createdAt,
        lastActiveAt: now,
        userId,
        version: 0,
      };
      await runStore('save the session', () => opts.store.create(this.key, record, { id: this.id }));
      this.persisted = true;
      this.emit({ type: 'created', key: this.key, userId });
    } else {
      const { set, unset } = this.changes.diff(current, data);
      const change = {
        set,
        unset,
        data,
        expiresAt: expiry,
        lastActiveAt: now,
        userId,
        baseVersion: this.version,
      };
      const stored = await runStore('save the session', () =>
        opts.store.update(this.key, change, { id: this.id }),
      );
      if (!stored) {
        // Destroyed meanwhile (logout or revocation elsewhere): that wins; never resurrect it.
        this.persisted = false;
        this.host.session = undefined;
        this.clearCookie = true;
        this.emit({ type: 'lost', key: this.key, userId });
        return;
      }
      this.version = stored.version;
      this.emit({ type: 'saved', key: this.key, userId });
    }
    this.lastActiveAt = now;
    this.changes.saved(current);
    engine.undefer(this.key);
  }

  /**
   * Record activity, at most once per touchAfter, without holding up the response. `current`:
   * the session's snapshot if the caller has it (built here only if a store needs it).
   */
  private touchStore(session: Session, current: Snapshot | undefined): void {
    const { opts, engine } = this;
    const now = opts.now();
    const expiry = expiresAt(opts, now, this.createdAt, session.cookie, this.cookieOptions);
    if (now - this.lastActiveAt < opts.touchAfter) {
      // Written later only if nothing else writes it first: on shutdown (flush({ touches: true })).
      // The session's JSON is kept only for stores that need it, off the hot path otherwise.
      const lazy = opts.store.tracksActivity === false ? this.touchState(session, current) : undefined;
      // Serialized now: by shutdown the app may have changed the object.
      const state = lazy && { data: lazy.data, createdAt: lazy.createdAt, version: lazy.version };
      engine.defer(this.key, { expiresAt: expiry, lastActiveAt: now, state, id: this.id });
      this.emit({ type: 'touch-skipped', key: this.key });
      return;
    }
    const key = this.key;
    this.lastActiveAt = now;
    engine.undefer(key);
    // The session goes along for stores that derive their expiry from it (express-session stores)
    // and for the app's own `store.touch`, which gets what express-session hands it.
    engine.background(
      opts.store.touch(key, expiry, now, this.touchState(session, current), { id: this.id }),
      key,
    );
    this.emit({ type: 'touched', key });
  }

  /** The session as a store's `touch` is handed it; its JSON is only built if a store reads it. */
  private touchState(session: Session, current: Snapshot | undefined): DeferredTouch['state'] {
    let data: SessionJSON | undefined;
    return {
      get data() {
        data ??= toJSON(session, current ?? snapshot(session));
        return data;
      },
      createdAt: this.createdAt,
      version: this.version,
    };
  }

  /**
   * Delete the request's session row: a logout (`destroy()`), or `unset: 'destroy'` after the
   * request dropped `req.session`. The cookie is cleared only once the row is gone: a failed
   * logout must never look like a successful one. express-session asks the store to destroy even
   * a session it never stored (or one this request destroyed already); so does this, marked
   * `alreadyGone` so pgsession's own stores skip the call.
   */
  private async destroyRow(userId: string | null = this.currentUserId()): Promise<void> {
    const { key, id } = this;
    if (!this.persisted) {
      await runStore('destroy the session', () => this.opts.store.destroy(key, { id, alreadyGone: true }));
      return;
    }
    await runStore('destroy the session', () => this.opts.store.destroy(key, { id }));
    this.engine.undefer(key);
    this.persisted = false;
    this.clearCookie = true;
    this.emit({ type: 'destroyed', key, userId });
  }

  private currentUserId(): string | null {
    return this.host.session ? userIdOf(this.host.session as unknown as SessionJSON) : null;
  }

  /**
   * The Set-Cookie value for this response, or null. Called when headers are written, after
   * `commit()`. express-session's rules, plus: a destroyed or expired session's cookie is deleted,
   * and a cookie signed with an old secret is re-signed with the current one.
   */
  setCookieHeader(): string | null {
    const { opts } = this;
    // Degraded mode: nothing was stored, so nothing is refreshed, replaced or cleared.
    if (this.readOnly) return null;
    // As express-session: no cookie without a session id.
    if (typeof this.host.sessionID !== 'string') return null;
    const session = this.host.session;
    if (!session || !this.shouldSetCookie(session)) {
      return this.clearCookie && this.presented !== undefined
        ? clearCookieHeader(opts.name, this.cookieOptions, this.secure)
        : null;
    }
    // A prefixed cookie without Secure would be rejected by the browser: treat it as Secure.
    const prefixed = securePrefixed(opts.name);
    if ((session.cookie.secure === true || prefixed) && !this.secure) {
      opts.onInsecureRequest?.(session.cookie.secure === true ? 'secure' : 'prefix');
      return null;
    }
    this.touchCookie(session);
    const presented = this.presented;
    const value =
      presented && presented.id === this.id && presented.secretIndex === 0
        ? presented.raw
        : SIGNED_PREFIX + sign(this.id, this.secrets[0]!);
    return session.cookie.serialize(opts.name, value);
  }

  private shouldSetCookie(session: Session): boolean {
    const { opts, presented } = this;
    if (presented?.id !== this.id) {
      return (
        (opts.saveUninitialized && !this.refusedForDevice) ||
        this.persisted ||
        this.isModified(snapshot(session))
      );
    }
    if (presented.secretIndex > 0) return true;
    return opts.rolling || (session.cookie.expires != null && this.modifiedNow(session));
  }

  // ---- SessionController: the methods behind req.session.save() & co ----

  /** Run session methods one at a time; the first starts synchronously, as in express-session. */
  private serial(op: () => Promise<void>): Promise<void> {
    const run = this.inflight ? this.inflight.then(op) : op();
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.inflight = settled;
    void settled.then(() => {
      if (this.inflight === settled) this.inflight = undefined;
    });
    return run;
  }

  save(): Promise<void> {
    return this.serial(() => this.saveNow());
  }

  reload(): Promise<void> {
    return this.serial(() => this.reloadNow());
  }

  destroy(): Promise<void> {
    return this.serial(() => this.destroyNow());
  }

  regenerate(options: RegenerateOptions): Promise<void> {
    return this.serial(() => this.regenerateNow(options));
  }

  private async saveNow(): Promise<void> {
    const session = this.host.session;
    if (!session) throw new SessionStateError('cannot save a destroyed session');
    const current = snapshot(session);
    if (this.readOnly) {
      if (this.isModified(current)) throw readOnlyFault('save the session');
      return;
    }
    await this.persist(session, current);
  }

  private async reloadNow(): Promise<void> {
    const record = await runStore('reload the session', () =>
      this.opts.store.get(this.key, { fresh: true, id: this.id }),
    );
    if (!record) throw new SessionStateError('failed to load session');
    this.inflate(this.id, this.key, record);
  }

  private async destroyNow(): Promise<void> {
    // Degraded mode: a logout that cannot reach the store fails (503) and leaves everything be.
    if (this.readOnly) throw readOnlyFault('destroy the session');
    const userId = this.currentUserId();
    this.host.session = undefined;
    await this.destroyRow(userId);
    // A logout clears the cookie even when there was no row (nothing is left to log into).
    this.clearCookie = true;
  }

  private async regenerateNow(options: RegenerateOptions): Promise<void> {
    if (this.readOnly) throw readOnlyFault('regenerate the session');
    const previous = this.host.session;
    const previousKey = this.key;
    let keep: Record<string, unknown> | undefined;
    if (previous && options.keep) {
      keep = {};
      const names = options.keep === true ? Object.keys(previous) : options.keep;
      for (const k of names) if (k !== 'cookie' && k in previous) keep[k] = previous[k];
    }
    const previousId = this.id;
    // express-session's Store#regenerate destroys even a session it never stored.
    const alreadyGone = !this.persisted;
    await runStore('destroy the old session', () =>
      this.opts.store.destroy(previousKey, { id: previousId, ...(alreadyGone ? { alreadyGone } : {}) }),
    );
    if (!alreadyGone) this.engine.undefer(previousKey);
    const originalId = this.originalId;
    this.generate(keep);
    // As in express-session, the request's original id stays the reference: a regenerated
    // session counts as modified, so it is saved and its cookie sent even when empty.
    this.originalId = originalId;
    this.touched = false;
    this.emit({
      type: 'renewed',
      key: this.key,
      previousKey,
      userId: userIdOf((this.host.session ?? {}) as SessionJSON),
    });
  }
}
