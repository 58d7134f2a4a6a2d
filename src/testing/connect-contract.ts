import assert from 'node:assert/strict';
import type { SessionJSON } from '../core/store.js';
import { CONTRACT_T0, type ContractRunner } from './store-contract.js';

type Callback<T> = (err?: unknown, value?: T) => void;

/** The express-session store API the contract exercises (`touch`, `all`, `length`, `ids`, `clear` are optional). */
export interface ConnectStoreLike {
  get(sid: string, callback: Callback<SessionJSON | null>): unknown;
  set(sid: string, session: SessionJSON, callback: Callback<void>): unknown;
  destroy(sid: string, callback: Callback<void>): unknown;
  touch?(sid: string, session: SessionJSON, callback: Callback<void>): unknown;
  all?(callback: Callback<Record<string, SessionJSON> | SessionJSON[] | null>): unknown;
  length?(callback: Callback<number>): unknown;
  ids?(callback: Callback<string[]>): unknown;
  clear?(callback: Callback<void>): unknown;
}

/** Options of {@link connectStoreContract}. */
export interface ConnectStoreContractOptions extends ContractRunner {
  name: string;
  /** A store with no sessions in it, reading the time from `now` (epoch ms). Called once per test. */
  makeStore(now: () => number): ConnectStoreLike | Promise<ConnectStoreLike>;
  /** Release a store made by `makeStore`. Default: its `close()`, if any. */
  closeStore?: ((store: ConnectStoreLike) => Promise<void> | void) | undefined;
  /** The store keeps its own clock (it ignores `now`): the expiry tests are skipped. */
  ownClock?: boolean | undefined;
  /**
   * `all()` and `ids()` list storage keys (hashes of the ids), which `get` and `destroy` do not
   * take: the test that listed keys work in them is skipped.
   */
  listsStorageKeys?: boolean | undefined;
}

const call = <T>(fn: (cb: Callback<T>) => unknown): Promise<T | undefined> =>
  new Promise((resolve, reject) => {
    fn((err, value) => (err ? reject(err) : resolve(value)));
  });

/** A session as express-session hands it to `set`, expiring at `expires` (or a browser-session cookie). */
function sess(expires: number | null, extra: Record<string, unknown> = {}): SessionJSON {
  return {
    cookie: {
      originalMaxAge: expires === null ? null : 1000,
      expires: expires === null ? null : new Date(expires).toISOString(),
    },
    ...extra,
  };
}

/**
 * The store contract for express-session's callback API (the face `express-session` and
 * pgsession's middleware call when the app instruments a store): set/get/destroy/touch and
 * the listing methods `all`, `length`, `ids`, `clear` where the store has them.
 */
export function connectStoreContract(options: ConnectStoreContractOptions): void {
  const { describe, it } = options;
  const close =
    options.closeStore ?? ((store: ConnectStoreLike) => (store as { close?: () => unknown }).close?.());
  const test = (
    name: string,
    body: (store: ConnectStoreLike, clock: { now: number }) => Promise<void>,
    skip?: string,
  ) => {
    it(skip ? `${name} (not kept: ${skip})` : name, async () => {
      if (skip) return;
      const clock = { now: CONTRACT_T0 };
      const store = await options.makeStore(() => clock.now);
      try {
        await body(store, clock);
      } finally {
        await close(store);
      }
    });
  };
  const clockSkip = options.ownClock ? 'the store keeps its own clock' : undefined;

  describe(`${options.name}: the express-session store contract`, () => {
    test('set / get / destroy, each answering asynchronously', async (store, clock) => {
      let sync = true;
      const got = call<SessionJSON | null>((cb) => store.get('nope', cb)).then((v) => ({ v, sync }));
      sync = false;
      const first = await got;
      assert.equal(first.v ?? null, null);
      assert.equal(first.sync, false);
      await call((cb) => store.set('a', sess(clock.now + 60_000, { n: 1 }), cb));
      assert.equal((await call<SessionJSON | null>((cb) => store.get('a', cb)))?.n, 1);
      await call((cb) => store.destroy('a', cb));
      assert.equal((await call((cb) => store.get('a', cb))) ?? null, null);
      await call((cb) => store.destroy('a', cb)); // a missing session is fine
    });

    test('set overwrites; get returns copies the caller may mutate', async (store, clock) => {
      await call((cb) => store.set('a', sess(clock.now + 60_000, { list: [1] }), cb));
      await call((cb) => store.set('a', sess(clock.now + 60_000, { list: [1], n: 2 }), cb));
      const first = (await call<SessionJSON | null>((cb) => store.get('a', cb)))!;
      assert.equal(first.n, 2);
      (first.list as number[]).push(2);
      assert.deepStrictEqual((await call<SessionJSON | null>((cb) => store.get('a', cb)))!.list, [1]);
    });

    test(
      'expires sessions by cookie.expires, by the store’s clock',
      async (store, clock) => {
        const t0 = clock.now;
        await call((cb) => store.set('short', sess(t0 + 1000), cb));
        clock.now = t0 + 999;
        assert.notEqual((await call((cb) => store.get('short', cb))) ?? null, null);
        clock.now = t0 + 1001;
        assert.equal((await call((cb) => store.get('short', cb))) ?? null, null);
      },
      clockSkip,
    );

    test(
      'touch extends the expiry from the session it is given, and keeps the data',
      async (store, clock) => {
        if (!store.touch) return;
        const touch = store.touch.bind(store);
        const t0 = clock.now;
        await call((cb) => store.set('a', sess(t0 + 1000, { n: 1 }), cb));
        await call((cb) => touch('a', sess(t0 + 5000, { n: 1 }), cb));
        clock.now = t0 + 4000;
        assert.equal((await call<SessionJSON | null>((cb) => store.get('a', cb)))?.n, 1);
      },
      clockSkip,
    );

    test(`all / length / ids agree and list only live sessions${options.listsStorageKeys ? '' : '; every listed key works in get and destroy'}`, async (store, clock) => {
      const t0 = clock.now;
      await call((cb) => store.set('a', sess(t0 + 1000, { n: 1 }), cb));
      await call((cb) => store.set('b', sess(t0 + 9000, { n: 2 }), cb));
      await call((cb) => store.set('c', sess(t0 + 9000, { n: 3 }), cb));
      let live = 3;
      if (!options.ownClock) {
        clock.now = t0 + 2000;
        live = 2;
      }
      const all = store.all ? await call((cb) => store.all!(cb)) : undefined;
      const listed = all ? Object.values(all).map((s) => s.n) : undefined;
      if (listed) assert.deepStrictEqual([...listed].sort(), [1, 2, 3].slice(3 - live));
      if (store.length) assert.equal(await call<number>((cb) => store.length!(cb)), live);
      if (store.ids) {
        const ids = (await call<string[]>((cb) => store.ids!(cb)))!;
        assert.equal(ids.length, live);
        if (all && !Array.isArray(all)) assert.deepStrictEqual([...ids].sort(), Object.keys(all).sort());
        if (!options.listsStorageKeys) {
          const byId = await Promise.all(
            ids.map((id) => call<SessionJSON | null>((cb) => store.get(id, cb))),
          );
          assert.deepStrictEqual(byId.map((s) => s?.n).sort(), [1, 2, 3].slice(3 - live));
          await call((cb) => store.destroy(ids[0]!, cb));
          assert.equal((await call<SessionJSON | null>((cb) => store.get(ids[0]!, cb))) ?? null, null);
          assert.equal((await call<string[]>((cb) => store.ids!(cb)))!.length, live - 1);
        }
      }
      if (store.clear) {
        await call((cb) => store.clear!(cb));
        assert.equal((await call((cb) => store.get('b', cb))) ?? null, null);
        if (store.length) assert.equal(await call<number>((cb) => store.length!(cb)), 0);
      }
    });
  });
}
