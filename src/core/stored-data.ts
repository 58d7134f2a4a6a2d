/**
 * A session's data as a store keeps it in memory between requests (the cache), split by
 * top-level key.
 *
 * Every request needs its own copy of the data, and at its end, whether the data changed. Kept as
 * one JSON text, that is a `JSON.parse` of the whole session and a `JSON.stringify` of the whole
 * session on every request. Split by key, a primitive value (most session data: an id, a role, a
 * token) is immutable, so it is shared as is and compared with `===`; only an object value keeps
 * its JSON text, parsed into each request's copy and serialized again to compare. The result is
 * the same as the round trip of the whole text: the same keys in the same order, the same values.
 */
import type { CookieJSON, SessionJSON } from './store.js';

/** A JSON primitive, as a top-level value of stored data. */
type Primitive = string | number | boolean | null;

/** The JSON text of an object (or array) value. */
class ObjectText {
  constructor(readonly text: string) {}
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: Latin-1 range test
const TWO_BYTE = /[^\u0000-\u00ff]/;

/** Estimated bytes of a string in V8: Latin-1 strings take 1 byte a character, others 2. */
export function textBytes(text: string): number {
  return TWO_BYTE.test(text) ? text.length * 2 : text.length;
}

/** The value JSON gives a top-level value: a primitive, an object's text, or undefined (the key is dropped). */
function jsonValue(value: unknown): Primitive | ObjectText | undefined {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return value;
  // JSON has no NaN, Infinity or -0: they come back as null, null and 0.
  if (typeof value === 'number') return Number.isFinite(value) ? value + 0 : null;
  // Everything else is what its JSON says: toJSON may make a primitive of an object (a Date's
  // string), undefined, functions and symbols drop the key, a BigInt throws.
  const text = JSON.stringify(value) as string | undefined;
  if (text === undefined) return undefined;
  if (text[0] === '{' || text[0] === '[') return new ObjectText(text);
  return JSON.parse(text) as Primitive;
}

/** The stored cookie, frozen, when every member is a primitive (it always is for express-session's). */
type FlatCookie = Readonly<Record<string, Primitive>>;

function flatCookie(cookie: unknown): FlatCookie | undefined {
  if (typeof cookie !== 'object' || cookie === null || Array.isArray(cookie)) return undefined;
  for (const value of Object.values(cookie))
    if (typeof value === 'object' && value !== null) return undefined;
  return Object.freeze(cookie as FlatCookie);
}

/**
 * Key lists shared by every stored session that has the same keys in the same order (most of an
 * app's sessions do): a list is kept once, not once per cached session. Bounded: past the limit,
 * lists are not shared.
 */
const keyLists = new Map<string, readonly string[]>();
const MAX_KEY_LISTS = 1000;

function sharedKeys(keys: string[]): readonly string[] {
  // JSON of the list: no two lists have the same text.
  const signature = JSON.stringify(keys);
  const known = keyLists.get(signature);
  if (known) return known;
  Object.freeze(keys);
  if (keyLists.size < MAX_KEY_LISTS) keyLists.set(signature, keys);
  return keys;
}

/**
 * Object values copied onto a session but not parsed yet: a request that never reads one (most
 * read an id and a role) never pays its `JSON.parse`, nor the `JSON.stringify` that would tell
 * whether it changed. Each is an accessor that parses the value on first access and puts it in
 * its place as a plain property; these are the sessions and the data they came from.
 */
const pending = new WeakMap<object, StoredData>();
/** Per key name, the accessor (one per name, so every session keeps one hidden class). */
const lazyProperties = new Map<string, PropertyDescriptor>();
/** Past this many key names, object values are parsed at once. */
const MAX_LAZY_KEYS = 1000;

function setValue(target: object, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, writable: true, enumerable: true, configurable: true });
}

/** Parse `key` of the session `target` (or that it inherits from) and make it a plain property. */
function materialize(target: object, key: string): unknown {
  let holder: object | null = target;
  let stored = pending.get(holder);
  while (stored === undefined && holder !== null) {
    holder = Object.getPrototypeOf(holder) as object | null;
    if (holder !== null) stored = pending.get(holder);
  }
  if (holder === null || stored === undefined) return undefined;
  const value = stored.parsed(key);
  try {
    setValue(holder, key, value);
  } catch {
    // A frozen session keeps the accessor: each read parses afresh.
  }
  return value;
}

function lazyProperty(key: string): PropertyDescriptor | undefined {
  const known = lazyProperties.get(key);
  if (known !== undefined || lazyProperties.size >= MAX_LAZY_KEYS) return known;
  const property: PropertyDescriptor = {
    get(this: object) {
      return materialize(this, key);
    },
    set(this: object, value: unknown) {
      setValue(this, key, value);
    },
    enumerable: true,
    configurable: true,
  };
  lazyProperties.set(key, property);
  return property;
}

/** Whether `target[key]` is still the untouched accessor of `stored`'s value. */
function untouched(target: object, key: string, stored: StoredData): boolean {
  const getter = lazyProperties.get(key)?.get;
  return (
    getter !== undefined &&
    Object.getOwnPropertyDescriptor(target, key)?.get === getter &&
    pending.get(target) === stored
  );
}

/** Slots below this index mark object values in a bit mask; later ones wrap their text. */
const MASK_BITS = 30;

/** What a {@link StoredData} is made of: {@link StoredData.split}'s result, for a subclass's constructor. */
export interface StoredParts {
  readonly keys: readonly string[];
  readonly values: readonly unknown[];
  readonly objects: number;
  readonly cookie: Readonly<CookieJSON> | undefined;
  readonly bytes: number;
}

export class StoredData {
  /** The top-level keys, in stored order, `cookie` included where it was. */
  readonly keys: readonly string[];
  /**
   * Per key: its primitive value, or its object's JSON text (a string marked in {@link objects},
   * or an ObjectText past {@link MASK_BITS} keys); the cookie's slot holds the frozen cookie
   * itself when it is flat (no text kept twice).
   */
  private readonly values: readonly (Primitive | ObjectText | FlatCookie)[];
  /** Bit i set: slot i holds an object's JSON text (no wrapper object per value). */
  private readonly objects: number;
  /**
   * The stored cookie (express-session's JSON form), frozen: every request copies it into its
   * own. Undefined when the data has none.
   */
  readonly cookie: Readonly<CookieJSON> | undefined;
  /** Estimated bytes of the data in memory (the JSON text's length, in V8's string widths). */
  readonly bytes: number;

  /** A store that keeps its own fields beside the data (the cache's entries) extends this. */
  protected constructor(parts: StoredParts) {
    this.keys = parts.keys;
    this.values = parts.values as readonly (Primitive | ObjectText | FlatCookie)[];
    this.objects = parts.objects;
    this.cookie = parts.cookie;
    this.bytes = parts.bytes;
  }

  /**
   * The data as JSON would store it (`JSON.parse(JSON.stringify(data))`, key by key), copied:
   * the caller may change `data` afterwards. Throws what JSON.stringify throws (a BigInt, a cycle).
   */
  static of(data: SessionJSON): StoredData {
    return new StoredData(StoredData.split(data));
  }

  /** {@link of}'s parts, for a subclass's constructor. */
  static split(data: SessionJSON): StoredParts {
    // A toJSON on the data object itself decides the whole text: take the text's word for it.
    if (typeof (data as { toJSON?: unknown }).toJSON === 'function') {
      return StoredData.split(JSON.parse(JSON.stringify(data)) as SessionJSON);
    }
    const keys: string[] = [];
    const values: (Primitive | ObjectText | FlatCookie)[] = [];
    let objects = 0;
    let cookie: CookieJSON | undefined;
    let bytes = 2;
    for (const key of Object.keys(data)) {
      const value = jsonValue(data[key]);
      if (value === undefined) continue;
      const slot = keys.length;
      keys.push(key);
      bytes += textBytes(key) + 4;
      if (value instanceof ObjectText) bytes += textBytes(value.text);
      else bytes += typeof value === 'string' ? textBytes(value) + 2 : 5;
      if (key === 'cookie') {
        const parsed: unknown = value instanceof ObjectText ? JSON.parse(value.text) : value;
        const flat = flatCookie(parsed);
        cookie = (flat ?? (parsed === null ? undefined : Object.freeze(parsed))) as CookieJSON | undefined;
        if (flat) {
          values.push(flat);
          continue;
        }
      }
      if (value instanceof ObjectText && slot < MASK_BITS) {
        values.push(value.text);
        objects |= 1 << slot;
      } else values.push(value);
    }
    return { keys: sharedKeys(keys), values, objects, cookie, bytes };
  }

  /** A fresh copy of the data: what `JSON.parse` of the stored text gives. */
  data(): SessionJSON {
    const data: Record<string, unknown> = {};
    for (let i = 0; i < this.keys.length; i++) data[this.keys[i]!] = this.valueAt(i);
    return data as SessionJSON;
  }

  /**
   * Copy the data onto `target` in stored order: the keys `accept` takes, with `cookie` in place
   * of the stored cookie. An object value is parsed afresh when it is first read (until then it
   * is an accessor on `target`; reading it, or assigning it, makes it a plain property).
   */
  copyInto<T extends object>(target: T, cookie: unknown, accept: (target: T, key: string) => boolean): void {
    const into = target as Record<string, unknown>;
    const { keys } = this;
    let lazy = false;
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i]!;
      if (key === 'cookie') {
        into.cookie = cookie;
        continue;
      }
      if (!accept(target, key)) continue;
      const property = this.textAt(i) === undefined ? undefined : lazyProperty(key);
      if (property === undefined) into[key] = this.valueAt(i);
      else {
        Object.defineProperty(target, key, property);
        lazy = true;
      }
    }
    if (lazy) pending.set(target, this);
  }

  /** The value of `key`, parsed afresh (undefined if there is no such key). */
  parsed(key: string): unknown {
    const i = this.keys.indexOf(key);
    return i < 0 ? undefined : this.valueAt(i);
  }

  /**
   * True when `target` certainly holds this data: its own keys are these keys in this order, and
   * each value but the cookie's serializes as stored (a primitive is the same primitive, an object
   * the same text, or still unread). The cookie is left out: its expiry moves on every request,
   * and its changes are judged apart. False means "compare exactly", never "changed".
   */
  sameAs(target: Record<string, unknown>): boolean {
    const { keys, values } = this;
    const own = Object.keys(target);
    if (own.length !== keys.length) return false;
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i]!;
      if (own[i] !== key) return false;
      if (key === 'cookie') continue;
      const text = this.textAt(i);
      if (text !== undefined) {
        // Never read, so never changed (and not parsed just to be compared).
        if (untouched(target, key, this)) continue;
        const live = target[key];
        if (typeof live !== 'object' || live === null) return false;
        let json: string | undefined;
        try {
          json = JSON.stringify(live);
        } catch {
          // Not serializable (a BigInt, a cycle): the exact comparison reports which key.
          return false;
        }
        if (json !== text) return false;
      } else if (target[key] !== values[i]) return false;
    }
    return true;
  }

  /** The JSON text slot `i` holds, if it holds an object's. */
  private textAt(i: number): string | undefined {
    const value = this.values[i];
    if (i < MASK_BITS) return (this.objects >>> i) & 1 ? (value as string) : undefined;
    return value instanceof ObjectText ? value.text : undefined;
  }

  private valueAt(i: number): unknown {
    const text = this.textAt(i);
    if (text !== undefined) return JSON.parse(text);
    const value = this.values[i];
    // The flat cookie: a copy of its members is a copy of it.
    return typeof value === 'object' && value !== null ? { ...value } : value;
  }
}
