import assert from 'node:assert/strict';
import type {
  DeviceBinding,
  SessionChange,
  SessionJSON,
  SessionRecord,
  SessionStore,
} from '../core/store.js';

/**
 * The store contract: the rules every {@link SessionStore} keeps, as tests any runner can run.
 * It takes the runner's `describe` and `it` (vitest's, node:test's, mocha's…) so it imports no
 * test framework, and asserts with `node:assert`.
 *
 * ```ts
 * import { describe, it } from 'vitest'; // or 'node:test'
 * import { storeContract } from 'pgsession/testing';
 * storeContract({ name: 'MyStore', describe, it, makeStore: (now) => new MyStore({ now }) });
 * ```
 */

/** The test functions of the runner the contract registers its tests with. */
export interface ContractRunner {
  describe(name: string, fn: () => void): unknown;
  it(name: string, fn: () => Promise<void>): unknown;
}

/** Rules a store may declare it does not keep; each skips the tests of that rule (and says so in their names). */
export interface StoreLimits {
  /**
   * The store replaces whole sessions (stores written for express-session): an update carries
   * `change.data`, so two writers that changed different keys do not both keep their change.
   */
  wholeSessionWrites?: boolean | undefined;
  /** `create` of a key that exists overwrites it instead of rejecting (express-session stores upsert). */
  createOverwrites?: boolean | undefined;
  /**
   * The store keeps its own clock (it ignores the `now` given to `makeStore`), so the expiry
   * tests, which move the clock, cannot run.
   */
  ownClock?: boolean | undefined;
}

/** Options of {@link storeContract}. */
export interface StoreContractOptions extends ContractRunner {
  /** Name of the suite (the store's). */
  name: string;
  /**
   * A store with no sessions in it, reading the time from `now` (epoch ms) for its expiry
   * checks. Called once per test.
   */
  makeStore(now: () => number): SessionStore | Promise<SessionStore>;
  /** Release a store made by `makeStore`. Default: its `close()`, if any. */
  closeStore?: ((store: SessionStore) => Promise<void> | void) | undefined;
  /**
   * Put `record` under the raw session id `rawId`, as an older writer (connect-pg-simple,
   * express-session) stored it, so that `get(key, { legacyKey: rawId })` must find it. Omit
   * when the store has no such rows: the legacy-key tests are then skipped.
   */
  seedLegacy?: ((store: SessionStore, rawId: string, record: SessionRecord) => Promise<void>) | undefined;
  /** Rules the store does not keep. */
  limits?: StoreLimits | undefined;
}

/** The time at which every test starts: in 2030, so a store comparing against a real clock fails. */
export const CONTRACT_T0 = Date.UTC(2030, 0, 15, 12, 0, 0, 123);
const HOUR = 3_600_000;

/**
 * A session record as the engine creates it: `cookie.expires` agrees with `expiresAt` and
 * `originalMaxAge` with the time left, as express-session would have it, so stores that derive
 * their expiry from the cookie agree with those that keep `expiresAt`.
 */
export function contractRecord(
  now: number,
  data: Record<string, unknown> = {},
  overrides: Partial<Omit<SessionRecord, 'data'>> = {},
): SessionRecord {
  const lastActiveAt = overrides.lastActiveAt ?? now;
  const expiresAt = overrides.expiresAt ?? now + HOUR;
  const userId = overrides.userId ?? null;
  return {
    data: { cookie: cookieOf(expiresAt, lastActiveAt), ...(userId === null ? {} : { userId }), ...data },
    expiresAt,
    createdAt: overrides.createdAt ?? now,
    lastActiveAt,
    userId,
    version: overrides.version ?? 0,
  };
}

/** The change the engine hands `update` after a request set and unset these keys of `base`. */
export function contractChange(
  base: SessionRecord,
  set: Record<string, unknown>,
  unset: string[] = [],
  at: { now: number; expiresAt?: number; userId?: string | null } = { now: base.lastActiveAt },
): SessionChange {
  const expiresAt = at.expiresAt ?? at.now + HOUR;
  const data: SessionJSON = { ...base.data, ...set, cookie: cookieOf(expiresAt, at.now) };
  for (const key of unset) delete data[key];
  return {
    set,
    unset,
    data,
    expiresAt,
    lastActiveAt: at.now,
    userId: at.userId === undefined ? base.userId : at.userId,
    baseVersion: base.version,
  };
}

function cookieOf(expiresAt: number, activeAt: number): SessionJSON['cookie'] {
  return {
    originalMaxAge: expiresAt - activeAt,
    expires: new Date(expiresAt).toISOString(),
    httpOnly: true,
    path: '/',
  };
}

/** What each contract test gets: the store and the clock it reads. */
interface Harness {
  store: SessionStore;
  clock: { now: number };
}

/**
 * Register the store contract's tests for one store (see the module comment). Every test makes
 * its own store with `makeStore`, starting at {@link CONTRACT_T0}, and closes it at the end.
 */
export function storeContract(options: StoreContractOptions): void {
  const { describe, it, limits = {} } = options;
  const close = options.closeStore ?? ((store: SessionStore) => store.close?.());
  const test = (name: string, body: (h: Harness) => Promise<void>, skip?: string) => {
    it(skip ? `${name} (not kept: ${skip})` : name, async () => {
      if (skip) return;
      const clock = { now: CONTRACT_T0 };
      const store = await options.makeStore(() => clock.now);
      try {
        await body({ store, clock });
      } finally {
        await close(store);
      }
    });
  };
  const clockSkip = limits.ownClock ? 'the store keeps its own clock' : undefined;

  describe(`${options.name}: the store contract`, () => {
    describe('create / get', () => {
      test('get returns what create stored, with millisecond times; an unknown key is null', async ({
        store,
        clock,
      }) => {
        const r = contractRecord(
          clock.now,
          { userId: '7', cart: [1, 2] },
          {
            userId: '7',
            createdAt: clock.now - 5000,
          },
        );
        await store.create('k1', r);
        const got = await store.get('k1');
        assert.deepStrictEqual(withoutText(got), r);
        // `json`, when a store gives it, is exactly the text of `data`.
        if (got?.json !== undefined) assert.equal(got.json, JSON.stringify(got.data));
        // So is `stored`, split by key.
        if (got?.stored !== undefined) assert.deepStrictEqual(got.stored.data(), got.data);
        assert.equal(await store.get('missing'), null);
      });

      test(
        'create of a key that exists rejects (ids are random: a collision is a bug)',
        async ({ store, clock }) => {
          await store.create('k1', contractRecord(clock.now, { n: 1 }));
          await assert.rejects(store.create('k1', contractRecord(clock.now, { n: 2 })));
          assert.equal((await store.get('k1'))?.data.n, 1);
        },
        limits.createOverwrites ? 'create overwrites' : undefined,
      );

      test('returns records the caller owns: mutating one changes nothing stored', async ({
        store,
        clock,
      }) => {
        await store.create('k1', contractRecord(clock.now, { n: 1, list: [1] }));
        const got = (await store.get('k1'))!;
        got.data.n = 99;
        (got.data.list as number[]).push(2);
        got.expiresAt = 0;
        const again = (await store.get('k1'))!;
        assert.equal(again.data.n, 1);
        assert.deepStrictEqual(again.data.list, [1]);
        assert.notEqual(again.expiresAt, 0);
      });

      test('keeps no reference to the record it was given', async ({ store, clock }) => {
        const r = contractRecord(clock.now, { n: 1 });
        await store.create('k1', r);
        r.data.n = 2;
        assert.equal((await store.get('k1'))?.data.n, 1);
      });
    });

    describe('update', () => {
      test('merges key by key, bumps the version, keeps createdAt, and returns the stored record', async ({
        store,
        clock,
      }) => {
        const base = contractRecord(clock.now, { a: 1, b: 2, keep: 'me' });
        await store.create('k1', base);
        clock.now += 5000;
        const updated = await store.update(
          'k1',
          contractChange(base, { a: 10, c: 3, userId: 'u9' }, ['b'], { now: clock.now, userId: 'u9' }),
        );
        assert.ok(updated);
        assert.deepStrictEqual(pick(updated.data, ['a', 'b', 'c', 'keep']), { a: 10, c: 3, keep: 'me' });
        assert.equal('b' in updated.data, false);
        assert.equal(updated.version, base.version + 1);
        assert.equal(updated.createdAt, base.createdAt);
        assert.equal(updated.lastActiveAt, clock.now);
        assert.equal(updated.expiresAt, clock.now + HOUR);
        assert.equal(updated.userId, 'u9');
        assert.deepStrictEqual(withoutText(await store.get('k1')), withoutText(updated));
      });

      test(
        'keeps a concurrent writer’s keys: two requests that loaded the same version both keep their change',
        async ({ store, clock }) => {
          const base = contractRecord(clock.now, { a: 1, b: 1 });
          await store.create('k1', base);
          await store.update('k1', contractChange(base, { a: 2 }, [], { now: clock.now }));
          // Loaded before the first update: its `data` still says a: 1.
          await store.update('k1', contractChange(base, { b: 2 }, [], { now: clock.now }));
          const final = (await store.get('k1'))!;
          assert.deepStrictEqual(pick(final.data, ['a', 'b']), { a: 2, b: 2 });
          assert.equal(final.version, 2);
        },
        limits.wholeSessionWrites ? 'the store replaces whole sessions' : undefined,
      );
    });

    describe('destroy wins', () => {
      test('after destroy, update is null, touch false and get null: nothing brings it back', async ({
        store,
        clock,
      }) => {
        const base = contractRecord(clock.now, { userId: 1 }, { userId: '1' });
        await store.create('k1', base);
        await store.destroy('k1');
        assert.equal(await store.update('k1', contractChange(base, { n: 1 }, [], { now: clock.now })), null);
        assert.equal(await store.touch('k1', clock.now + HOUR, clock.now), false);
        assert.equal(await store.get('k1'), null);
      });

      test('destroying a missing session is not an error', async ({ store }) => {
        await store.destroy('never-there');
        await store.destroy('never-there', { id: 'never-there', alreadyGone: true });
      });
    });

    describe('touch', () => {
      test('moves the expiry and the last activity, never the data or the version', async ({
        store,
        clock,
      }) => {
        const base = contractRecord(clock.now, { n: 1 });
        await store.create('k1', base);
        // Another request changed the data after this one loaded the session.
        const changed = (await store.update('k1', contractChange(base, { n: 2 }, [], { now: clock.now })))!;
        clock.now += 10_000;
        const expiresAt = clock.now + 2 * HOUR;
        const seen = contractChange(changed, {}, [], { now: clock.now, expiresAt }).data;
        assert.equal(
          await store.touch('k1', expiresAt, clock.now, {
            data: seen,
            createdAt: changed.createdAt,
            version: changed.version,
          }),
          true,
        );
        const r = (await store.get('k1'))!;
        assert.equal(r.data.n, 2);
        assert.equal(r.version, changed.version);
        assert.equal(r.expiresAt, expiresAt);
        if (store.tracksActivity !== false) assert.equal(r.lastActiveAt, clock.now);
      });

      test('of an unknown key is false and creates nothing', async ({ store, clock }) => {
        assert.equal(await store.touch('nope', clock.now + HOUR, clock.now), false);
        assert.equal(await store.get('nope'), null);
      });
    });

    describe('expiry', () => {
      test(
        'a session is live until expiresAt, by the store’s clock, and gone after: get null, touch false, update null',
        async ({ store, clock }) => {
          const base = contractRecord(clock.now, {}, { expiresAt: clock.now + 1000, userId: 'u1' });
          await store.create('k1', base);
          clock.now = base.expiresAt - 1;
          assert.notEqual(await store.get('k1'), null);
          clock.now = base.expiresAt + 1;
          assert.equal(await store.get('k1'), null);
          assert.equal(await store.touch('k1', clock.now + HOUR, clock.now), false);
          assert.equal(
            await store.update('k1', contractChange(base, { a: 1 }, [], { now: clock.now })),
            null,
          );
          if (store.listByUser) assert.deepStrictEqual(await store.listByUser('u1'), []);
        },
        clockSkip,
      );

      test(
        '(stores with prune) prune deletes expired sessions only, and says how many',
        async ({ store, clock }) => {
          if (!store.prune) return;
          await store.create('a', contractRecord(clock.now, {}, { expiresAt: clock.now + 10 }));
          await store.create('b', contractRecord(clock.now, {}, { expiresAt: clock.now + HOUR }));
          clock.now += 100;
          assert.equal(await store.prune(), 1);
          assert.equal(await store.prune(), 0);
          assert.notEqual(await store.get('b'), null);
        },
        clockSkip,
      );
    });

    describe('sessions by user', () => {
      test('(stores with listByUser) listByUser gives a user’s live sessions, most recent activity first; destroyByUser keeps `exceptKey`', async ({
        store,
        clock,
      }) => {
        if (!store.listByUser || !store.destroyByUser) return;
        const t = clock.now;
        await store.create('old', contractRecord(t, {}, { userId: 'alice', lastActiveAt: t - 3000 }));
        await store.create('new', contractRecord(t, {}, { userId: 'alice', lastActiveAt: t - 1000 }));
        await store.create('mid', contractRecord(t, {}, { userId: 'alice', lastActiveAt: t - 2000 }));
        await store.create('bob', contractRecord(t, {}, { userId: 'bob' }));
        if (!limits.ownClock) {
          await store.create('gone', contractRecord(t, {}, { userId: 'alice', expiresAt: t + 10 }));
          clock.now += 20;
        }
        const listed = await store.listByUser('alice');
        assert.deepStrictEqual(
          listed.map((l) => l.key),
          ['new', 'mid', 'old'],
        );
        assert.equal(listed[0]!.record.userId, 'alice');
        assert.equal(await store.destroyByUser('alice', 'new'), 2);
        assert.deepStrictEqual(
          (await store.listByUser('alice')).map((l) => l.key),
          ['new'],
        );
        assert.equal(await store.get('old'), null);
        assert.equal(await store.destroyByUser('alice'), 1);
        assert.deepStrictEqual(await store.listByUser('alice'), []);
        assert.notEqual(await store.get('bob'), null);
        assert.equal(await store.destroyByUser('nobody'), 0);
      });

      test('the owner is the userId given, else derived from the data (`userId`, Passport’s `passport.user`)', async ({
        store,
        clock,
      }) => {
        await store.create('k1', contractRecord(clock.now, { passport: { user: 5 } }, { userId: '5' }));
        assert.equal((await store.get('k1'))?.userId, '5');
      });
    });

    describe('device binding (DBSC)', () => {
      const binding = (challengeAt: number, x = 'x1'): DeviceBinding => ({
        jwk: { kty: 'EC', crv: 'P-256', x, y: 'y1' },
        alg: 'ES256',
        id: 'binding-id',
        boundAt: CONTRACT_T0,
        challengeAt,
      });
      test('(stores with bindDevice) a session starts unbound; the binding is stored apart from the data, kept by update and touch, and returned as the caller’s copy', async ({
        store,
        clock,
      }) => {
        if (!store.bindDevice) return;
        const t = clock.now;
        await store.create('k', contractRecord(t, { n: 1 }));
        assert.equal((await store.get('k'))?.device ?? null, null);
        const before = (await store.get('k'))!.version;
        assert.equal(await store.bindDevice('k', binding(t)), true);
        const bound = (await store.get('k'))!;
        assert.deepStrictEqual(bound.device, binding(t));
        assert.deepStrictEqual(bound.data, contractRecord(t, { n: 1 }).data);
        // A cache must be able to tell the bound copy from the unbound one.
        assert.ok(bound.version > before);
        bound.device!.id = 'changed';
        assert.equal((await store.get('k'))?.device?.id, 'binding-id');
        const updated = await store.update('k', contractChange(bound, { n: 2 }));
        assert.deepStrictEqual(updated?.device, binding(t));
        assert.equal(await store.touch('k', t + 2 * HOUR, t + 1), true);
        const after = (await store.get('k'))!;
        assert.equal(after.data.n, 2);
        assert.deepStrictEqual(after.device, binding(t));
        // Listing carries it too (a "your sessions" page shows which sessions are bound).
        if (store.listByUser) {
          await store.create('u', contractRecord(t, {}, { userId: 'dev' }));
          await store.bindDevice('u', binding(t));
          assert.deepStrictEqual((await store.listByUser('dev'))[0]?.record.device, binding(t));
        }
      });

      test('(stores with bindDevice) a new binding replaces only one with an earlier challenge; null unbinds; a missing session is false', async ({
        store,
        clock,
      }) => {
        if (!store.bindDevice) return;
        const t = clock.now;
        await store.create('k', contractRecord(t));
        assert.equal(await store.bindDevice('k', binding(t)), true);
        // The same challenge (or an older one) again: refused, the stored binding unchanged.
        assert.equal(await store.bindDevice('k', binding(t, 'x2')), false);
        assert.equal(await store.bindDevice('k', binding(t - 1, 'x2')), false);
        assert.deepStrictEqual((await store.get('k'))?.device, binding(t));
        assert.equal(await store.bindDevice('k', binding(t + 1)), true);
        assert.equal((await store.get('k'))?.device?.challengeAt, t + 1);
        assert.equal(await store.bindDevice('k', null), true);
        assert.equal((await store.get('k'))?.device ?? null, null);
        assert.equal(await store.bindDevice('missing', binding(t)), false);
        await store.destroy('k');
        assert.equal(await store.bindDevice('k', binding(t + 5)), false);
        assert.equal(await store.get('k'), null);
      });
    });

    describe('legacy keys (rows stored under the raw session id)', () => {
      const skip = options.seedLegacy ? undefined : 'the store has no legacy rows';
      test(
        'get with `legacyKey` finds the row; afterwards the storage key alone finds it too',
        async ({ store, clock }) => {
          await options.seedLegacy!(store, 'raw-id', contractRecord(clock.now, { n: 5 }));
          assert.equal((await store.get('hashed', { legacyKey: 'raw-id' }))?.data.n, 5);
          assert.equal((await store.get('hashed'))?.data.n, 5);
          assert.equal(await store.touch('hashed', clock.now + HOUR, clock.now), true);
        },
        skip,
      );

      test(
        'destroy with `legacyKey` deletes the row under the raw id',
        async ({ store, clock }) => {
          await options.seedLegacy!(store, 'raw-id', contractRecord(clock.now, { n: 5 }));
          await store.destroy('hashed', { legacyKey: 'raw-id' });
          assert.equal(await store.get('hashed', { legacyKey: 'raw-id' }), null);
        },
        skip,
      );
    });
  });
}

/** `record` without the optional `json` text a store may attach for the engine (not part of equality). */
function withoutText(record: SessionRecord | null): SessionRecord | null {
  if (!record) return record;
  const { json: _json, stored: _stored, readOnly: _readOnly, device, ...rest } = record;
  // An unbound session may say so (`device: null`) or leave the field out.
  return device == null ? rest : { ...rest, device };
}

function pick(data: SessionJSON, keys: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of keys) if (key in data) out[key] = data[key];
  return out;
}
