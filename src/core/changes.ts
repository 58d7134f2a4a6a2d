/**
 * Change detection: whether a request modified its session, and which top-level keys it
 * changed. "Modified" is express-session's verdict, judged per top-level key by its JSON (so an
 * in-place change to a nested object counts), against the data as loaded; an update then sends
 * only the changed keys, so two requests that change different keys both keep their change.
 */
import { SerializationError } from './errors.js';
import { Session } from './session.js';
import type { SessionJSON, SessionRecord } from './store.js';
import type { StoredData } from './stored-data.js';

/** The JSON text of each top-level data key (not `cookie`), in key order. */
export type Snapshot = Map<string, string>;

export function snapshot(session: Session): Snapshot {
  const snap: Snapshot = new Map();
  for (const key of Object.keys(session)) {
    if (key === 'cookie') continue;
    let json: string | undefined;
    try {
      json = JSON.stringify(session[key]);
    } catch (err) {
      throw new SerializationError(
        `req.session.${key} cannot be saved: ${(err as Error).message}. Session data must be JSON-serializable (no BigInt, no cycles).`,
        err,
      );
    }
    if (json !== undefined) snap.set(key, json);
  }
  return snap;
}

function sameSnapshot(a: Snapshot | undefined, b: Snapshot): boolean {
  if (!a || a.size !== b.size) return false;
  for (const [key, json] of b) if (a.get(key) !== json) return false;
  return true;
}

/** The session as stored: its cookie's JSON and the data keys of `snap`. */
export function toJSON(session: Session, snap: Snapshot): SessionJSON {
  const data: SessionJSON = { cookie: session.cookie.toJSON() as SessionJSON['cookie'] };
  for (const key of snap.keys()) data[key] = JSON.parse(snap.get(key)!);
  // Dates inside the cookie become ISO strings, as in the stored JSON.
  const expires = data.cookie.expires as unknown;
  if (expires instanceof Date) data.cookie.expires = expires.toISOString();
  return data;
}

/**
 * What one request's session looked like when loaded (or generated) and when last saved, and
 * the comparisons against it. A loaded session keeps only the JSON text it was loaded from (the
 * store's, when it has it); the per-key snapshot is built from that text only when something
 * may have changed, so a steady request serializes its session once, not once per key twice.
 */
export class ChangeTracker {
  /** The loaded data as the store keeps it, split by key (when the store has it so). */
  private base: StoredData | undefined;
  /** The loaded data's JSON text (undefined for a generated session, or data no JSON holds). */
  private baseText: string | undefined;
  /** The loaded cookie's JSON value, which stands in for the live cookie when comparing with `baseText`. */
  private baseCookie: unknown;
  /** Per-key JSON of the data as loaded or generated; built lazily from `baseText` for loaded sessions. */
  private originalSnapValue: Snapshot | undefined;
  private savedSnap: Snapshot | undefined;
  /** What was last saved is the data as loaded (`savedSnap` then stays undefined). */
  private savedIsOriginal = false;

  /** A brand-new session: its data (usually none) is the reference, and nothing is saved. */
  generated(session: Session): void {
    this.base = undefined;
    this.baseText = undefined;
    this.baseCookie = undefined;
    this.originalSnapValue = snapshot(session);
    this.savedSnap = undefined;
    this.savedIsOriginal = false;
  }

  /**
   * A stored session: `record` is the reference. With `resave`, nothing counts as saved, so the
   * end of the request writes it again (express-session's `resave: true`).
   */
  loaded(record: SessionRecord, session: Session, resave: boolean): void {
    this.savedSnap = undefined;
    this.savedIsOriginal = !resave;
    this.originalSnapValue = undefined;
    this.base = record.stored;
    this.baseText = undefined;
    this.baseCookie = undefined;
    // Split by key: compared key by key, and `record.data` is never read (see StoredData).
    if (this.base) return;
    // The text must be exactly JSON.stringify(record.data): a store that kept it says so.
    let text = record.json;
    if (text === undefined) {
      try {
        text = JSON.stringify(record.data);
      } catch {
        // Data no JSON can hold (only a foreign store could return it): the eager snapshot below
        // reports it as before.
      }
    }
    this.baseText = text;
    this.baseCookie = record.data.cookie;
    this.originalSnapValue = text === undefined ? snapshot(session) : undefined;
  }

  /** The session was just written with this data. */
  saved(current: Snapshot): void {
    this.savedSnap = current;
    this.savedIsOriginal = false;
  }

  /** Whether what was last saved is the data as loaded (nothing written since). */
  get savedAsLoaded(): boolean {
    return this.savedIsOriginal;
  }

  /** Nothing of this session was ever saved (neither loaded from the store nor written). */
  get neverSaved(): boolean {
    return this.savedSnap === undefined && !this.savedIsOriginal;
  }

  /** Per-key JSON of the data as loaded (built on first use for a loaded session). */
  private get originalSnap(): Snapshot {
    if (this.originalSnapValue === undefined) {
      // The same copy rules as on load (keys shadowing methods, `__proto__` and `cookie` skipped),
      // applied to a fresh parse of the loaded text: exactly the snapshot load would have taken.
      const data = this.base
        ? this.base.data()
        : this.baseText === undefined
          ? undefined
          : JSON.parse(this.baseText);
      this.originalSnapValue = data === undefined ? new Map() : snapshot(new Session({}, data));
    }
    return this.originalSnapValue;
  }

  /**
   * True when the session certainly holds the data it was loaded with: its keys, in their
   * order, with the loaded cookie in place of the live one, serialize to the loaded text (one
   * JSON.stringify, no per-key snapshot), or key by key match the stored data the store gave.
   * False means "compare per key" (the exact check), never "modified": a key order change or a
   * skipped key only costs the slow path.
   */
  unchangedSinceLoad(session: Session): boolean {
    if (this.base) return this.base.sameAs(session);
    const text = this.baseText;
    if (text === undefined) return false;
    const probe: Record<string, unknown> = {};
    for (const key of Object.keys(session)) {
      // An own `__proto__` key would set the probe's prototype instead of a property.
      if (key === '__proto__') return false;
      probe[key] = key === 'cookie' ? this.baseCookie : session[key];
    }
    let json: string;
    try {
      json = JSON.stringify(probe);
    } catch {
      // Not serializable (BigInt, cycle): the per-key snapshot reports which key.
      return false;
    }
    return json === text;
  }

  /** Whether `current` differs from the data as loaded or generated. */
  differsFromOriginal(current: Snapshot): boolean {
    return !sameSnapshot(this.originalSnap, current);
  }

  /** Whether `current` is what was last saved. */
  matchesSaved(current: Snapshot): boolean {
    return sameSnapshot(this.savedIsOriginal ? this.originalSnap : this.savedSnap, current);
  }

  /** The top-level keys `current` sets (changed or new) and unsets, against what was last saved. */
  diff(current: Snapshot, data: SessionJSON): { set: Record<string, unknown>; unset: string[] } {
    const base = this.savedSnap ?? this.originalSnap;
    const set: Record<string, unknown> = { cookie: data.cookie };
    const unset: string[] = [];
    for (const [k, json] of current) if (base.get(k) !== json) set[k] = data[k];
    for (const k of base.keys()) if (!current.has(k)) unset.push(k);
    return { set, unset };
  }
}
