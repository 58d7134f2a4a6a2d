import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { Session } from './session.js';
import type { SessionJSON } from './store.js';
import { StoredData } from './stored-data.js';

const cookie = {
  originalMaxAge: 604_800_000,
  expires: '2026-12-11T10:00:00.000Z',
  httpOnly: true,
  path: '/',
  sameSite: 'lax',
};

/** What a round trip of the whole session through JSON gives. */
const viaJSON = (data: unknown) => JSON.parse(JSON.stringify(data)) as SessionJSON;

describe('StoredData', () => {
  it('gives back what JSON would: same keys, same order, same values', () => {
    const data = {
      userId: 7,
      cookie,
      role: 'admin',
      flags: [1, 'two', { three: 3 }],
      prefs: { theme: 'dark', nested: { deep: true } },
      none: null,
      yes: false,
      when: new Date('2026-01-02T03:04:05.000Z'),
      gone: undefined,
      fn: () => 1,
      nan: Number.NaN,
      inf: Number.POSITIVE_INFINITY,
      negativeZero: -0,
      text: 'é €',
    } as unknown as SessionJSON;
    const stored = StoredData.of(data);
    expect(stored.data()).toStrictEqual(viaJSON(data));
    expect(Object.keys(stored.data())).toStrictEqual(Object.keys(viaJSON(data)));
    expect(Object.is(stored.data().negativeZero, 0)).toBe(true);
  });

  it('keeps its own copy: changing the data afterwards changes nothing stored', () => {
    const data = { cookie: { ...cookie }, cart: { items: [1] }, n: 1 } as SessionJSON;
    const stored = StoredData.of(data);
    (data.cart as { items: number[] }).items.push(2);
    data.n = 2;
    data.cookie.path = '/elsewhere';
    expect(stored.data()).toStrictEqual({ cookie, cart: { items: [1] }, n: 1 });
  });

  it('hands out a fresh copy every time, nested values and cookie included', () => {
    const stored = StoredData.of({ cookie, cart: { items: [1] } } as SessionJSON);
    const first = stored.data();
    (first.cart as { items: number[] }).items.push(2);
    first.cookie.path = '/changed';
    expect(stored.data()).toStrictEqual({ cookie, cart: { items: [1] } });
    expect(Object.isFrozen(stored.cookie)).toBe(true);
    expect(stored.cookie).toStrictEqual(cookie);
  });

  it('takes a toJSON on the data object at its word, and throws what JSON throws', () => {
    const custom = { cookie, secret: 'x', toJSON: () => ({ cookie, shown: 1 }) } as unknown as SessionJSON;
    expect(StoredData.of(custom).data()).toStrictEqual({ cookie, shown: 1 });
    expect(() => StoredData.of({ cookie, big: 1n } as unknown as SessionJSON)).toThrow(TypeError);
    const cyclic: Record<string, unknown> = { cookie };
    cyclic.self = { cyclic };
    (cyclic.self as Record<string, unknown>).cyclic = cyclic;
    expect(() => StoredData.of(cyclic as SessionJSON)).toThrow(TypeError);
  });

  it('has no cookie when the data has none (or a null one)', () => {
    expect(StoredData.of({ n: 1 } as unknown as SessionJSON).cookie).toBeUndefined();
    expect(StoredData.of({ cookie: null, n: 1 } as unknown as SessionJSON).cookie).toBeUndefined();
  });

  it('estimates its size from its JSON text, two bytes a character outside Latin-1', () => {
    const latin = StoredData.of({ cookie, note: 'a'.repeat(1000) } as SessionJSON);
    const wide = StoredData.of({ cookie, note: '€'.repeat(1000) } as SessionJSON);
    const text = JSON.stringify({ cookie, note: 'a'.repeat(1000) }).length;
    expect(latin.bytes).toBeGreaterThanOrEqual(text * 0.9);
    expect(latin.bytes).toBeLessThanOrEqual(text * 1.1);
    expect(wide.bytes - latin.bytes).toBe(1000);
  });

  it('shares one key list between sessions with the same keys', () => {
    const a = StoredData.of({ cookie, userId: 1, csrf: 'a' } as SessionJSON);
    const b = StoredData.of({ cookie, userId: 2, csrf: 'b' } as SessionJSON);
    const c = StoredData.of({ userId: 3, cookie, csrf: 'c' } as SessionJSON);
    expect(a.keys).toBe(b.keys);
    expect(c.keys).not.toBe(a.keys);
    expect(Object.isFrozen(a.keys)).toBe(true);
  });

  describe('copyInto', () => {
    it('copies in stored order, the given cookie in the cookie slot, only the keys accepted', () => {
      const stored = StoredData.of({ a: 1, cookie, save: 'x', b: { c: 2 } } as unknown as SessionJSON);
      const target: Record<string, unknown> = {};
      const live = { live: true };
      stored.copyInto(target, live, (_target, key) => key !== 'save');
      expect(Object.keys(target)).toStrictEqual(['a', 'cookie', 'b']);
      expect(target.cookie).toBe(live);
      expect(target.b).toStrictEqual({ c: 2 });
    });
  });

  describe('object values, read lazily', () => {
    const data = { cookie, userId: 7, meta: { ip: '127.0.0.1', tags: ['a'] } } as SessionJSON;
    const copy = (target: Record<string, unknown> = {}) => {
      const stored = StoredData.of(data);
      stored.copyInto(target, { live: true }, () => true);
      return { stored, target };
    };

    it('reads as the parsed value, then is a plain property of its own copy', () => {
      const { target } = copy();
      expect(Object.getOwnPropertyDescriptor(target, 'meta')?.get).toBeTypeOf('function');
      const meta = target.meta as { tags: string[] };
      expect(meta).toStrictEqual({ ip: '127.0.0.1', tags: ['a'] });
      expect(target.meta).toBe(meta);
      expect(Object.getOwnPropertyDescriptor(target, 'meta')).toStrictEqual({
        value: meta,
        writable: true,
        enumerable: true,
        configurable: true,
      });
      meta.tags.push('b');
      expect((copy().target.meta as { tags: string[] }).tags).toStrictEqual(['a']);
    });

    it('is seen by Object.keys, JSON, spread and assignment like a plain property', () => {
      expect(Object.keys(copy().target)).toStrictEqual(['cookie', 'userId', 'meta']);
      expect(JSON.parse(JSON.stringify(copy().target)).meta).toStrictEqual(data.meta);
      expect({ ...copy().target }.meta).toStrictEqual(data.meta);
      const { target } = copy();
      target.meta = 'replaced';
      expect(target.meta).toBe('replaced');
      delete target.meta;
      expect('meta' in target).toBe(false);
    });

    it('works through an object that inherits from the session, and on a frozen one', () => {
      const { target } = copy();
      const child = Object.create(target) as Record<string, unknown>;
      expect(child.meta).toStrictEqual(data.meta);
      expect(Object.hasOwn(child, 'meta')).toBe(false);
      expect(Object.getOwnPropertyDescriptor(target, 'meta')?.value).toStrictEqual(data.meta);
      const frozen = Object.freeze(copy().target);
      expect(frozen.meta).toStrictEqual(data.meta);
    });

    it('counts as unchanged until read and changed, whatever reading it did', () => {
      const unread = copy();
      expect(unread.stored.sameAs(unread.target)).toBe(true);
      const read = copy();
      void read.target.meta;
      expect(read.stored.sameAs(read.target)).toBe(true);
      const changed = copy();
      (changed.target.meta as { tags: string[] }).tags.push('b');
      expect(changed.stored.sameAs(changed.target)).toBe(false);
      const replaced = copy();
      replaced.target.meta = { ip: '127.0.0.1', tags: ['a'] };
      expect(replaced.stored.sameAs(replaced.target)).toBe(true);
      replaced.target.meta = { ip: '10.0.0.1', tags: ['a'] };
      expect(replaced.stored.sameAs(replaced.target)).toBe(false);
      const redefined = copy();
      Object.defineProperty(redefined.target, 'meta', { value: 1, enumerable: true, configurable: true });
      expect(redefined.stored.sameAs(redefined.target)).toBe(false);
    });

    it('shows in console.log of a session with its value', () => {
      const session = new Session({ sessionID: 'id' });
      StoredData.of(data).copyInto(session, { path: '/' }, () => true);
      const shown = inspect(session, { depth: 4 });
      expect(shown).toContain("ip: '127.0.0.1'");
      expect(shown).not.toContain('Getter');
      expect(shown.startsWith('Session {')).toBe(true);
    });
  });

  describe('sameAs', () => {
    const data = { cookie, userId: 7, role: 'user', meta: { ip: '127.0.0.1', at: 1 } } as SessionJSON;
    const loaded = () => {
      const stored = StoredData.of(data);
      const target: Record<string, unknown> = {};
      stored.copyInto(target, { maxAge: 1 }, () => true);
      return { stored, target };
    };

    it('is true for the data as loaded, whatever the cookie holds now', () => {
      const { stored, target } = loaded();
      expect(stored.sameAs(target)).toBe(true);
      target.cookie = { something: 'else' };
      expect(stored.sameAs(target)).toBe(true);
    });

    it('is true when a value was replaced by an equal one', () => {
      const { stored, target } = loaded();
      target.meta = { ip: '127.0.0.1', at: 1 };
      target.role = ['us', 'er'].join('');
      expect(stored.sameAs(target)).toBe(true);
    });

    it('is false for any change: a value, a nested value in place, a key added, removed or moved', () => {
      const changes: Array<(t: Record<string, unknown>) => void> = [
        (t) => {
          t.userId = 8;
        },
        (t) => {
          t.userId = '7';
        },
        (t) => {
          (t.meta as { at: number }).at = 2;
        },
        (t) => {
          t.meta = null;
        },
        (t) => {
          t.extra = 1;
        },
        (t) => {
          delete t.role;
        },
        (t) => {
          const role = t.role;
          delete t.role;
          t.role = role;
        },
        (t) => {
          t.meta = { at: 1, ip: '127.0.0.1' };
        },
      ];
      for (const change of changes) {
        const { stored, target } = loaded();
        change(target);
        expect(stored.sameAs(target), String(change)).toBe(false);
      }
    });

    it('is false, without throwing, for a value JSON cannot hold', () => {
      const { stored, target } = loaded();
      const cycle: Record<string, unknown> = {};
      cycle.cycle = cycle;
      target.meta = cycle;
      expect(stored.sameAs(target)).toBe(false);
      target.meta = { big: 1n };
      expect(stored.sameAs(target)).toBe(false);
    });
  });
});
