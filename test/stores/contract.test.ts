/**
 * The store contract (`pgsession/testing`) on every store pgsession ships: the engine face of
 * the memory store, the PostgreSQL table, the session cache over each of them, the adapter for
 * stores written for express-session, and the express-session face of `MemoryStore`, `PgStore`
 * and the connect-pg-simple factory. Store-specific rules stay in each store's own tests.
 */
import expressSession from 'express-session';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { kSessionStore, type SessionStore } from '../../src/core/store.js';
import { CachedSessionStore } from '../../src/stores/cache/cached-store.js';
import { CachedPostgresSessionStore } from '../../src/stores/cache/postgres.js';
import type { InvalidationSource } from '../../src/stores/cache/types.js';
import { callStore, fromConnectStore, toConnectSession } from '../../src/stores/connect-adapter.js';
import type { ConnectStore } from '../../src/stores/connect-store.js';
import { MemoryStore } from '../../src/stores/memory/memory-store.js';
import connectPgSimple from '../../src/stores/postgres/connect-pg-simple.js';
import { PgStore } from '../../src/stores/postgres/pg-store.js';
import { PostgresSessionStore } from '../../src/stores/postgres/session-store.js';
import { connectStoreContract, type SessionRecord, storeContract } from '../../src/testing/index.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';

const TABLE = 'contract_sessions';
let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
  await new PostgresSessionStore({ pool: db.pool, tableName: TABLE }).ready();
});

afterAll(async () => {
  await db?.drop();
});

/** A source that is always listening: the cache serves from memory throughout. */
const alwaysListening: InvalidationSource = {
  listening: true,
  subscribe: () => () => {},
  close: async () => {},
};

const emptyTable = () => db.pool.query(`TRUNCATE ${TABLE}`);

/** A row as connect-pg-simple writes it: under the raw id, without pgsession's columns. */
const insertLegacyRow = async (rawId: string, record: SessionRecord) => {
  await db.pool.query(
    `INSERT INTO ${TABLE} (sid, sess, expire, id_hashed) VALUES ($1, $2, to_timestamp($3::float8 / 1000), false)`,
    [rawId, JSON.stringify(record.data), record.expiresAt],
  );
};

// ---- the engine face ----

storeContract({
  name: 'MemoryStore',
  describe,
  it,
  makeStore: (now) => new MemoryStore({ now })[kSessionStore],
  // The face of a MemoryStore closes nothing; its sweep timer is unref()ed.
  // A row under the raw id: what a MemoryStore with `hashIds: false` stores.
  seedLegacy: (store, rawId, record) => store.create(rawId, record),
});

storeContract({
  name: 'CachedSessionStore over MemoryStore',
  describe,
  it,
  makeStore: (now) =>
    new CachedSessionStore(new MemoryStore({ now })[kSessionStore], alwaysListening, { now }),
  seedLegacy: (store, rawId, record) => (store as CachedSessionStore).inner.create(rawId, record),
});

storeContract({
  name: 'PostgresSessionStore',
  describe,
  it,
  makeStore: async (now) => {
    await emptyTable();
    return new PostgresSessionStore({ pool: db.pool, tableName: TABLE, now });
  },
  seedLegacy: (_store, rawId, record) => insertLegacyRow(rawId, record),
});

storeContract({
  name: 'CachedPostgresSessionStore',
  describe,
  it,
  makeStore: async (now) => {
    await emptyTable();
    const store = new CachedPostgresSessionStore({
      pool: db.pool,
      tableName: TABLE,
      now,
      notify: { channel: 'pgsession_contract', nodeId: 'contract' },
      cache: { healthCheckIntervalMs: 60_000 },
    });
    store.listener.start();
    if (!(await store.listener.waitUntilListening(10_000))) throw new Error('the listener did not start');
    return store;
  },
  seedLegacy: (_store, rawId, record) => insertLegacyRow(rawId, record),
});

/** The store written for express-session behind each adapter, to seed rows in it directly. */
const innerOf = new WeakMap<SessionStore, ConnectStore>();

storeContract({
  name: 'fromConnectStore(express-session’s MemoryStore)',
  describe,
  it,
  makeStore: (now) => {
    const inner = new expressSession.MemoryStore() as unknown as ConnectStore;
    const store = fromConnectStore(inner, now);
    innerOf.set(store, inner);
    return store;
  },
  seedLegacy: async (store, rawId, record) => {
    const inner = innerOf.get(store)!;
    await callStore((cb) => inner.set(rawId, toConnectSession(record.data), cb));
  },
  // What stores written for express-session cannot do (see fromConnectStore), and their own
  // clock (express-session's MemoryStore compares `cookie.expires` against Date.now()).
  limits: { wholeSessionWrites: true, createOverwrites: true, ownClock: true },
});

// ---- express-session's face ----

connectStoreContract({
  name: 'MemoryStore',
  describe,
  it,
  makeStore: (now) => new MemoryStore({ now }),
  closeStore: (store) => (store as MemoryStore).close(),
  // It lists storage keys (memory-store.test.ts), not ids.
  listsStorageKeys: true,
});

connectStoreContract({
  name: 'PgStore',
  describe,
  it,
  makeStore: async (now) => {
    await emptyTable();
    return new PgStore({ pool: db.pool, tableName: TABLE, now, pruneSessionInterval: false });
  },
  closeStore: (store) => (store as PgStore).close(),
});

const ConnectPgSimple = connectPgSimple(expressSession);
connectStoreContract({
  name: 'connect-pg-simple factory',
  describe,
  it,
  makeStore: async (now) => {
    await emptyTable();
    return new ConnectPgSimple({ pool: db.pool, tableName: TABLE, now, pruneSessionInterval: false });
  },
  closeStore: (store) => (store as InstanceType<typeof ConnectPgSimple>).close(),
});
