/**
 * `Cookie` against express-session's own `session/cookie.js`, with the clock frozen: same
 * maxAge / expires / originalMaxAge arithmetic, same JSON, same Set-Cookie string.
 */
import ExpressCookie from 'express-session/session/cookie.js';
import * as fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Store } from '../stores/connect-store.js';
import { Cookie, type CookieOptions } from './cookie.js';

const NOW = Date.UTC(2030, 0, 15, 12, 0, 0);

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(NOW);
});
afterEach(() => {
  vi.useRealTimers();
});

function view(c: { maxAge: unknown; originalMaxAge: unknown; expires: unknown; toJSON(): unknown }) {
  return {
    maxAge: c.maxAge,
    originalMaxAge: c.originalMaxAge,
    expires: c.expires,
    json: JSON.parse(JSON.stringify(c)),
    data: c.toJSON(),
  };
}

function same(options: Record<string, unknown> | undefined) {
  const theirs = new ExpressCookie(options);
  const ours = new Cookie(options as CookieOptions);
  expect(view(ours)).toEqual(view(theirs));
  expect(ours.serialize('sid', 's:abc.def')).toBe(theirs.serialize('sid', 's:abc.def'));
  return { theirs, ours };
}

describe('Cookie construction', () => {
  it('defaults: Path=/, HttpOnly, no expiry', () => {
    const { ours } = same(undefined);
    expect(ours.path).toBe('/');
    expect(ours.httpOnly).toBe(true);
    expect(ours.maxAge).toBeNull();
    expect(ours.originalMaxAge).toBeNull();
    expect(ours.serialize('sid', 'v')).toBe('sid=v; Path=/; HttpOnly');
    same({});
  });

  it('maxAge sets expires relative to now and originalMaxAge', () => {
    const { ours } = same({ maxAge: 60_000 });
    expect(ours.expires).toEqual(new Date(NOW + 60_000));
    expect(ours.originalMaxAge).toBe(60_000);
    same({ maxAge: 0 });
    same({ maxAge: -1000 });
    same({ maxAge: null });
    same({ maxAge: undefined });
  });

  it('expires sets originalMaxAge to the time left', () => {
    const { ours } = same({ expires: new Date(NOW + 5000) });
    expect(ours.originalMaxAge).toBe(5000);
    same({ expires: null });
    same({ expires: undefined });
  });

  it('applies keys in order: the later of maxAge and expires wins', () => {
    same({ maxAge: 1000, expires: new Date(NOW + 9000) });
    same({ expires: new Date(NOW + 9000), maxAge: 1000 });
    same({ originalMaxAge: 5000, maxAge: 1000 });
    same({ maxAge: 1000, originalMaxAge: 5000 });
  });

  it('copies every attribute, including partitioned and priority', () => {
    const { ours } = same({
      maxAge: 3_600_000,
      httpOnly: false,
      secure: true,
      sameSite: 'strict',
      domain: 'example.com',
      path: '/app',
      partitioned: true,
      priority: 'high',
    });
    expect(ours.serialize('sid', 'v')).toBe(
      `sid=v; Domain=example.com; Path=/app; Expires=${new Date(NOW + 3_600_000).toUTCString()}; Secure; Partitioned; Priority=High; SameSite=Strict`,
    );
    for (const sameSite of [true, false, 'lax', 'none', 'strict', 'Lax'] as const)
      same({ sameSite, secure: true });
    for (const priority of ['low', 'medium', 'high', 'Medium']) same({ priority });
    same({ partitioned: false });
  });

  it('refuses non-object options and non-number maxAge, as express-session does', () => {
    expect(() => new Cookie('x' as never)).toThrow(TypeError);
    expect(() => new ExpressCookie('x' as never)).toThrow(TypeError);
    expect(() => new Cookie({ maxAge: '1000' as never })).toThrow('maxAge must be a number or Date');
    expect(() => new ExpressCookie({ maxAge: '1000' })).toThrow('maxAge must be a number or Date');
  });

  it('ignores a `data` key', () => {
    same({ data: { path: '/nope' }, path: '/yes' });
  });
});

describe('Cookie arithmetic over time', () => {
  it('maxAge counts down; resetting it restarts from originalMaxAge', () => {
    const theirs = new ExpressCookie({ maxAge: 10_000 });
    const ours = new Cookie({ maxAge: 10_000 });
    vi.setSystemTime(NOW + 4000);
    expect(ours.maxAge).toBe(6000);
    expect(view(ours)).toEqual(view(theirs));
    // What Session#touch does.
    theirs.maxAge = theirs.originalMaxAge;
    ours.maxAge = ours.originalMaxAge;
    expect(ours.expires).toEqual(new Date(NOW + 14_000));
    expect(view(ours)).toEqual(view(theirs));
    vi.setSystemTime(NOW + 20_000);
    expect(ours.maxAge).toBe(-6000);
    expect(view(ours)).toEqual(view(theirs));
  });

  it('setting maxAge or expires later changes originalMaxAge as express-session does', () => {
    const theirs = new ExpressCookie({ maxAge: 10_000 });
    const ours = new Cookie({ maxAge: 10_000 });
    vi.setSystemTime(NOW + 1000);
    theirs.maxAge = 2000;
    ours.maxAge = 2000;
    expect(view(ours)).toEqual(view(theirs));
    theirs.expires = new Date(NOW + 7000);
    ours.expires = new Date(NOW + 7000);
    expect(view(ours)).toEqual(view(theirs));
    theirs.maxAge = null;
    ours.maxAge = null;
    expect(view(ours)).toEqual(view(theirs));
    expect(ours.serialize('a', 'b')).toBe(theirs.serialize('a', 'b'));
  });

  it('stored JSON comes back as the same cookie (Store#createSession)', async () => {
    const ExpressStore = (await import('express-session')).default.Store;
    const original = new Cookie({ maxAge: 10_000, sameSite: 'lax', secure: true, priority: 'low' });
    const json = JSON.parse(JSON.stringify({ cookie: original, n: 1 }));
    vi.setSystemTime(NOW + 3000);
    const theirs = new ExpressStore().createSession({}, structuredClone(json)) as {
      cookie: InstanceType<typeof ExpressCookie>;
    };
    const ours = Store.prototype.createSession.call(new Store(), {}, structuredClone(json));
    expect(view(ours.cookie)).toEqual(view(theirs.cookie));
    expect(ours.cookie.originalMaxAge).toBe(10_000);
    expect(ours.cookie.maxAge).toBe(7000);
    expect(ours.cookie.serialize('sid', 'v')).toBe(theirs.cookie.serialize('sid', 'v'));
  });

  it('a Cookie built directly from stored JSON keeps originalMaxAge and a Date expiry (express-session keeps the string)', () => {
    const json = JSON.parse(JSON.stringify(new Cookie({ maxAge: 10_000 })));
    vi.setSystemTime(NOW + 3000);
    const ours = new Cookie(json);
    expect(ours.expires).toEqual(new Date(NOW + 10_000));
    expect(ours.originalMaxAge).toBe(10_000);
    expect(ours.maxAge).toBe(7000);
  });
});

describe("'auto' settings (deliberate difference)", () => {
  it("never stores or serializes 'auto': it is resolved per request before use", () => {
    const ours = new Cookie({ secure: 'auto', sameSite: 'auto' });
    expect(ours.toJSON().secure).toBeUndefined();
    expect(ours.toJSON().sameSite).toBeUndefined();
    expect(ours.serialize('sid', 'v')).toBe('sid=v; Path=/; HttpOnly');
    // express-session would store 'auto' and fail to serialize sameSite 'auto'.
    expect(() => new ExpressCookie({ sameSite: 'auto' }).serialize('sid', 'v')).toThrow();
  });
});

describe('property: any option set behaves as express-session', () => {
  const entries = {
    maxAge: fc.oneof(fc.constant(null), fc.integer({ min: -1e9, max: 1e10 })),
    expires: fc.oneof(
      fc.constant(null),
      fc.integer({ min: -1e9, max: 1e11 }).map((d) => new Date(NOW + d)),
    ),
    originalMaxAge: fc.oneof(fc.constant(null), fc.integer({ min: 0, max: 1e10 })),
    httpOnly: fc.boolean(),
    secure: fc.boolean(),
    sameSite: fc.constantFrom(true, false, 'lax', 'strict', 'none', undefined),
    domain: fc.constantFrom('example.com', '.example.org', 'a.b.c', undefined),
    path: fc.constantFrom('/', '/app', '/a/b', undefined),
    partitioned: fc.boolean(),
    priority: fc.constantFrom('low', 'medium', 'high', undefined),
  };
  const keys = Object.keys(entries) as Array<keyof typeof entries>;
  const options = fc
    .tuple(fc.shuffledSubarray(keys), fc.record(entries))
    .map(([order, values]) => Object.fromEntries(order.map((k) => [k, values[k]])));

  it('construction, JSON, Set-Cookie, and the touch that follows', () => {
    fc.assert(
      fc.property(options, fc.integer({ min: 0, max: 1e8 }), (opts, later) => {
        vi.setSystemTime(NOW);
        const theirs = new ExpressCookie(opts);
        const ours = new Cookie(opts as CookieOptions);
        expect(view(ours)).toEqual(view(theirs));
        expect(ours.serialize('sid', 'v')).toBe(theirs.serialize('sid', 'v'));
        vi.setSystemTime(NOW + later);
        theirs.maxAge = theirs.originalMaxAge as number | null;
        ours.maxAge = ours.originalMaxAge;
        expect(view(ours)).toEqual(view(theirs));
        expect(ours.serialize('sid', 'v')).toBe(theirs.serialize('sid', 'v'));
      }),
    );
  });
});

describe('Set-Cookie attribute memo (hot path): byte-identical to the serializer', () => {
  const signed = (n: number) => `s:${'id'.repeat(20)}${n}.mac+/=${n}`;

  it('reuses the attributes within a second and for other values, never across a change', () => {
    const theirs = new ExpressCookie({ maxAge: 60_000, sameSite: 'lax' });
    const ours = new Cookie({ maxAge: 60_000, sameSite: 'lax' });
    for (let i = 0; i < 3; i++)
      expect(ours.serialize('sid', signed(i))).toBe(theirs.serialize('sid', signed(i)));
    // Same second, other millisecond: same Expires; next second: a new one.
    for (const ms of [400, 999, 1000, 1001, 61_000]) {
      vi.setSystemTime(NOW + ms);
      ours.maxAge = 60_000;
      theirs.maxAge = 60_000;
      expect(ours.serialize('sid', signed(ms))).toBe(theirs.serialize('sid', signed(ms)));
    }
    // Every attribute, changed after a memo hit, shows up at once.
    const changes: Array<[string, unknown]> = [
      ['path', '/app'],
      ['httpOnly', false],
      ['secure', true],
      ['sameSite', 'strict'],
      ['sameSite', true],
      ['domain', 'example.com'],
      ['partitioned', true],
      ['priority', 'high'],
      ['expires', null],
      ['expires', new Date(NOW - 1)],
    ];
    for (const [key, value] of changes) {
      (ours as unknown as Record<string, unknown>)[key] = value;
      (theirs as unknown as Record<string, unknown>)[key] = value;
      expect(ours.serialize('sid', signed(1))).toBe(theirs.serialize('sid', signed(1)));
      expect(ours.serialize('other', signed(2))).toBe(theirs.serialize('other', signed(2)));
    }
  });

  it('still refuses what the serializer refuses, in the same order, memo or not', () => {
    const ours = new Cookie({ maxAge: 60_000 });
    const theirs = new ExpressCookie({ maxAge: 60_000 });
    expect(ours.serialize('sid', 'v')).toBe(theirs.serialize('sid', 'v'));
    const lone = '\ud800';
    expect(() => ours.serialize('sid', lone)).toThrow(URIError);
    ours.priority = 'urgent' as never;
    expect(() => ours.serialize('sid', 'v')).toThrow('option priority is invalid');
    // The value's error comes first, as in the serializer.
    expect(() => ours.serialize('sid', lone)).toThrow(URIError);
    ours.priority = undefined;
    expect(() => ours.serialize('bad name', 'v')).toThrow('argument name is invalid');
    (ours as unknown as { _expires: unknown })._expires = new Date(Number.NaN);
    expect(() => ours.serialize('sid', 'v')).toThrow('option expires is invalid');
    (ours as unknown as { _expires: unknown })._expires = 'tomorrow';
    expect(() => ours.serialize('sid', 'v')).toThrow('option expires is invalid');
    ours.expires = new Date(NOW + 5000);
    expect(ours.serialize('sid', '')).toBe(
      `sid=; Path=/; Expires=${new Date(NOW + 5000).toUTCString()}; HttpOnly`,
    );
  });
});
