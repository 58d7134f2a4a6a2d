import { afterEach, describe, expect, it } from 'vitest';
import { hashId } from '../../src/core/id.js';
import { kSessionStore, MemoryStore, type SessionJSON, type SessionRecord } from '../../src/index.js';

const T0 = Date.UTC(2030, 0, 1);
let stores: MemoryStore[] = [];
afterEach(async () => {
  await Promise.all(stores.map((s) => s.close()));
  stores = [];
});

function make(options: ConstructorParameters<typeof MemoryStore>[0] = {}) {
  const store = new MemoryStore(options);
  stores.push(store);
  return store;
}

const p = <T>(fn: (cb: (err?: unknown, value?: T) => void) => void) =>
  new Promise<T | undefined>((resolve, reject) => fn((err, value) => (err ? reject(err) : resolve(value))));

const sess = (expires: number | null, extra: Record<string, unknown> = {}): SessionJSON => ({
  cookie: {
    originalMaxAge: expires === null ? null : 1000,
    expires: expires === null ? null : new Date(expires).toISOString(),
  },
  ...extra,
});

const record = (over: Partial<SessionRecord> = {}): SessionRecord => ({
  data: { cookie: { originalMaxAge: null }, userId: 'u1', n: 1 },
  expiresAt: T0 + 60_000,
  createdAt: T0,
  lastActiveAt: T0,
  userId: 'u1',
  version: 0,
  ...over,
});

describe('MemoryStore, express-session API', () => {
  it('set / get / destroy, answering asynchronously', async () => {
    const store = make();
    let sync = true;
    const got = p<SessionJSON | null>((cb) => store.get('nope', cb)).then((v) => ({ v, sync }));
    sync = false;
    expect(await got).toEqual({ v: null, sync: false });
    await p((cb) => store.set('a', sess(Date.now() + 60_000, { n: 1 }), cb));
    expect(await p<SessionJSON | null>((cb) => store.get('a', cb))).toMatchObject({ n: 1 });
    await p((cb) => store.destroy('a', cb));
    expect(await p((cb) => store.get('a', cb))).toBeNull();
  });

  it('returns copies: mutating what get gave does not change the store', async () => {
    const store = make();
    await p((cb) => store.set('a', sess(null, { list: [1] }), cb));
    const first = (await p<SessionJSON | null>((cb) => store.get('a', cb)))!;
    (first.list as number[]).push(2);
    expect((await p<SessionJSON | null>((cb) => store.get('a', cb)))!.list).toEqual([1]);
  });

  it('expires sessions by cookie.expires, or after a day without one', async () => {
    let now = T0;
    const store = make({ now: () => now });
    await p((cb) => store.set('short', sess(T0 + 1000), cb));
    await p((cb) => store.set('browser', sess(null), cb));
    now = T0 + 999;
    expect(await p((cb) => store.get('short', cb))).not.toBeNull();
    now = T0 + 1000;
    expect(await p((cb) => store.get('short', cb))).toBeNull();
    expect(await p((cb) => store.get('browser', cb))).not.toBeNull();
    now = T0 + 86_400_000;
    expect(await p((cb) => store.get('browser', cb))).toBeNull();
  });

  it('touch extends the expiry from the session it is given', async () => {
    let now = T0;
    const store = make({ now: () => now });
    await p((cb) => store.set('a', sess(T0 + 1000), cb));
    await p((cb) => store.touch('a', sess(T0 + 5000), cb));
    now = T0 + 4000;
    expect(await p((cb) => store.get('a', cb))).not.toBeNull();
  });

  it('all / length / ids / clear see only live sessions, by storage key', async () => {
    let now = T0;
    const store = make({ now: () => now });
    await p((cb) => store.set('a', sess(T0 + 1000, { n: 1 }), cb));
    await p((cb) => store.set('b', sess(T0 + 9000, { n: 2 }), cb));
    now = T0 + 2000;
    expect(await p((cb) => store.all(cb))).toEqual({ [hashId('b')]: expect.objectContaining({ n: 2 }) });
    expect(await p((cb) => store.length(cb))).toBe(1);
    expect(await p((cb) => store.ids(cb))).toEqual([hashId('b')]);
    await p((cb) => store.clear(cb));
    expect(await p((cb) => store.length(cb))).toBe(0);
  });

  it('takes session ids and keys them by their SHA-256, where the middleware finds them; hashIds: false keeps raw ids', async () => {
    const hashed = make({ now: () => T0 });
    await p((cb) => hashed.set('the-id', sess(T0 + 9000, { n: 1 }), cb));
    expect((await hashed[kSessionStore].get(hashId('the-id')))?.data).toMatchObject({ n: 1 });
    expect(await hashed[kSessionStore].get('the-id')).toBeNull();
    const raw = make({ now: () => T0, hashIds: false });
    await p((cb) => raw.set('the-id', sess(T0 + 9000, { n: 2 }), cb));
    expect((await raw[kSessionStore].get('the-id'))?.data).toMatchObject({ n: 2 });
    expect(await p((cb) => raw.ids(cb))).toEqual(['the-id']);
  });

  it('is bounded: beyond max, the least recently used session goes', async () => {
    const store = make({ max: 3 });
    for (const id of ['a', 'b', 'c']) await p((cb) => store.set(id, sess(null), cb));
    await p((cb) => store.get('a', cb)); // a is now the most recently used
    await p((cb) => store.set('d', sess(null), cb));
    expect(await p((cb) => store.ids(cb))).toEqual(expect.arrayContaining(['a', 'c', 'd'].map(hashId)));
    expect(await p((cb) => store.get('b', cb))).toBeNull();
  });

  it('sweeps expired sessions on its timer', async () => {
    let now = T0;
    const store = make({ now: () => now, checkPeriod: 10 });
    await p((cb) => store.set('a', sess(T0 + 1000), cb));
    now = T0 + 2000;
    await new Promise((r) => setTimeout(r, 40));
    // Read through `all`'s raw view: the sweep, not a read, removed it.
    expect(await store[kSessionStore].prune!()).toBe(0);
  });
});

describe('MemoryStore, engine face', () => {
  const faceOf = (store: MemoryStore) => store[kSessionStore];

  it('create / get / update (merging keys, bumping the version) / destroy', async () => {
    const face = faceOf(make({ now: () => T0 }));
    await face.create('k', record());
    expect(await face.get('k')).toEqual(record());
    const updated = await face.update('k', {
      set: { n: 2, added: true },
      unset: ['userId'],
      data: { cookie: { originalMaxAge: null }, n: 2, added: true },
      expiresAt: T0 + 120_000,
      lastActiveAt: T0 + 10,
      userId: null,
      baseVersion: 0,
    });
    expect(updated).toMatchObject({
      data: { cookie: { originalMaxAge: null }, n: 2, added: true },
      version: 1,
      createdAt: T0,
      lastActiveAt: T0 + 10,
      expiresAt: T0 + 120_000,
      userId: null,
    });
    await face.destroy('k');
    expect(await face.get('k')).toBeNull();
  });

  it('update merges with a concurrent writer instead of overwriting its keys', async () => {
    const face = faceOf(make({ now: () => T0 }));
    await face.create('k', record({ data: { cookie: { originalMaxAge: null }, a: 1, b: 1 } }));
    const change = (set: Record<string, unknown>) => ({
      set,
      unset: [],
      data: { cookie: { originalMaxAge: null } },
      expiresAt: T0 + 60_000,
      lastActiveAt: T0,
      userId: null,
      baseVersion: 0,
    });
    await face.update('k', change({ a: 2 }));
    await face.update('k', change({ b: 2 }));
    expect((await face.get('k'))!.data).toMatchObject({ a: 2, b: 2 });
  });

  it('update and touch never bring back a destroyed session', async () => {
    const face = faceOf(make({ now: () => T0 }));
    await face.create('k', record());
    await face.destroy('k');
    expect(
      await face.update('k', {
        set: {},
        unset: [],
        data: record().data,
        expiresAt: T0 + 1,
        lastActiveAt: T0,
        userId: null,
        baseVersion: 0,
      }),
    ).toBeNull();
    expect(await face.touch('k', T0 + 1000, T0)).toBe(false);
    expect(await face.get('k')).toBeNull();
  });

  it('touch moves expiry and activity, not data', async () => {
    let now = T0;
    const face = faceOf(make({ now: () => now }));
    await face.create('k', record({ expiresAt: T0 + 1000 }));
    expect(await face.touch('k', T0 + 5000, T0 + 500)).toBe(true);
    now = T0 + 4000;
    expect(await face.get('k')).toMatchObject({ lastActiveAt: T0 + 500, expiresAt: T0 + 5000, version: 0 });
  });

  it('finds a row under its legacy key and re-keys it', async () => {
    // Rows under raw ids: written by a store keyed without hashing.
    const store = make({ now: () => T0, hashIds: false });
    const face = faceOf(store);
    await p((cb) => store.set('raw-id', sess(T0 + 60_000, { n: 5 }), cb));
    expect((await face.get('hashed', { legacyKey: 'raw-id' }))!.data).toMatchObject({ n: 5 });
    expect(await p((cb) => store.ids(cb))).toEqual(['hashed']);
  });

  it('lists and destroys by user, newest activity first', async () => {
    const face = faceOf(make({ now: () => T0 }));
    await face.create('a', record({ lastActiveAt: T0 }));
    await face.create('b', record({ lastActiveAt: T0 + 5 }));
    await face.create('c', record({ userId: 'u2' }));
    expect((await face.listByUser!('u1')).map((l) => l.key)).toEqual(['b', 'a']);
    expect(await face.destroyByUser!('u1', 'b')).toBe(1);
    expect((await face.listByUser!('u1')).map((l) => l.key)).toEqual(['b']);
    expect((await face.listByUser!('u2')).map((l) => l.key)).toEqual(['c']);
  });

  it('returns records the caller may mutate freely', async () => {
    const face = faceOf(make({ now: () => T0 }));
    await face.create('k', record());
    const got = (await face.get('k'))!;
    got.data.n = 99;
    expect((await face.get('k'))!.data.n).toBe(1);
  });

  it('prune removes expired rows and reports how many', async () => {
    let now = T0;
    const face = faceOf(make({ now: () => now }));
    await face.create('a', record({ expiresAt: T0 + 10 }));
    await face.create('b', record({ expiresAt: T0 + 10_000 }));
    now = T0 + 100;
    expect(await face.prune!()).toBe(1);
  });
});
