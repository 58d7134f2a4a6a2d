import { afterEach, describe, expect, it } from 'vitest';
import { hashId } from '../../src/core/id.js';
import { kSessionStore, MemoryStore, type SessionJSON } from '../../src/index.js';

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

// The rules every store keeps run in contract.test.ts (the store contract); these are MemoryStore's own.
describe('MemoryStore, express-session API', () => {
  // Expiry by cookie.expires: the store contract (contract.test.ts).
  it('expires at cookie.expires exactly, or after a day without one', async () => {
    let now = T0;
    const store = make({ now: () => now });
    await p((cb) => store.set('short', sess(T0 + 1000), cb));
    await p((cb) => store.set('browser', sess(null), cb));
    now = T0 + 1000;
    expect(await p((cb) => store.get('short', cb))).toBeNull();
    expect(await p((cb) => store.get('browser', cb))).not.toBeNull();
    now = T0 + 86_400_000;
    expect(await p((cb) => store.get('browser', cb))).toBeNull();
  });

  it('takes session ids and keys them by their SHA-256, where the middleware finds them; hashIds: false keeps raw ids', async () => {
    const hashed = make({ now: () => T0 });
    await p((cb) => hashed.set('the-id', sess(T0 + 9000, { n: 1 }), cb));
    expect((await hashed[kSessionStore].get(hashId('the-id')))?.data).toMatchObject({ n: 1 });
    expect(await hashed[kSessionStore].get('the-id')).toBeNull();
    // all / ids list the storage key, tagged: never the session id.
    const [listed] = (await p<string[]>((cb) => hashed.ids(cb)))!;
    expect(listed!.startsWith(`${hashId('the-id')}.`)).toBe(true);
    expect(await p((cb) => hashed.all(cb))).toEqual({ [listed!]: expect.objectContaining({ n: 1 }) });
    const raw = make({ now: () => T0, hashIds: false });
    await p((cb) => raw.set('the-id', sess(T0 + 9000, { n: 2 }), cb));
    expect((await raw[kSessionStore].get('the-id'))?.data).toMatchObject({ n: 2 });
    expect(await p((cb) => raw.ids(cb))).toEqual(['the-id']);
  });

  it('keys from all() and ids() are accepted by get, set, touch and destroy: list-then-revoke revokes', async () => {
    const store = make({ now: () => T0 });
    await p((cb) => store.set('alice-id', sess(T0 + 9000, { user: 'alice' }), cb));
    await p((cb) => store.set('bob-id', sess(T0 + 9000, { user: 'bob' }), cb));
    const listed = (await p<Record<string, SessionJSON>>((cb) => store.all(cb)))!;
    const aliceKey = Object.keys(listed).find((k) => listed[k]!.user === 'alice')!;
    expect(await p((cb) => store.get(aliceKey, cb))).toMatchObject({ user: 'alice' });
    await p((cb) => store.set(aliceKey, sess(T0 + 9000, { user: 'alice', flagged: true }), cb));
    expect(await p((cb) => store.get('alice-id', cb))).toMatchObject({ flagged: true });
    await p((cb) => store.touch(aliceKey, sess(T0 + 9000), cb));
    await p((cb) => store.destroy(aliceKey, cb));
    expect(await p((cb) => store.get('alice-id', cb))).toBeNull();
    expect(await p((cb) => store.get('bob-id', cb))).toMatchObject({ user: 'bob' });
    // Revoking it again says it is gone, in express-session's "not found" convention.
    await expect(p((cb) => store.destroy(aliceKey, cb))).rejects.toMatchObject({ code: 'ENOENT' });
    // A listed key never re-creates a revoked session.
    await p((cb) => store.set(aliceKey, sess(T0 + 9000, { user: 'alice' }), cb));
    expect(await p((cb) => store.get('alice-id', cb))).toBeNull();
    // A bare storage key (a leaked hash) is not a session id, and a key of that shape from
    // another process is refused rather than taken for an id.
    expect(await p((cb) => store.get(hashId('bob-id'), cb))).toBeNull();
    const foreign = `${hashId('bob-id')}.${'A'.repeat(22)}`;
    expect(await p((cb) => store.get(foreign, cb))).toBeNull();
    await expect(p((cb) => store.destroy(foreign, cb))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await p((cb) => store.get('bob-id', cb))).toMatchObject({ user: 'bob' });
  });

  it('is bounded: beyond max, the least recently used session goes', async () => {
    const store = make({ max: 3 });
    for (const id of ['a', 'b', 'c']) await p((cb) => store.set(id, sess(null), cb));
    await p((cb) => store.get('a', cb)); // a is now the most recently used
    await p((cb) => store.set('d', sess(null), cb));
    const keys = (await p<string[]>((cb) => store.ids(cb)))!.map((k) => k.split('.')[0]);
    expect(keys.sort()).toEqual(['a', 'c', 'd'].map(hashId).sort());
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

  // Finding legacy rows is the store contract's; re-keying them is this store's own way.
  it('re-keys a row found under its legacy key', async () => {
    // Rows under raw ids: written by a store keyed without hashing.
    const store = make({ now: () => T0, hashIds: false });
    const face = faceOf(store);
    await p((cb) => store.set('raw-id', sess(T0 + 60_000, { n: 5 }), cb));
    expect((await face.get('hashed', { legacyKey: 'raw-id' }))!.data).toMatchObject({ n: 5 });
    expect(await p((cb) => store.ids(cb))).toEqual(['hashed']);
  });
});
