/**
 * Saves of different sessions made in the same turn of the event loop share one statement
 * (src/stores/postgres/batch.ts): on a busy server, one round trip and one commit for many
 * requests. Each caller still gets exactly what a save of its own would have given it.
 */
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { ConfigError } from '../../src/core/errors.js';
import { hashId } from '../../src/core/id.js';
import type { SessionChange, SessionRecord } from '../../src/core/store.js';
import { PostgresSessionStore } from '../../src/stores/postgres/session-store.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';

let db: TestDatabase;
const NOW = Date.UTC(2031, 2, 1, 12);
const CHANNEL = 'pgsession_batch_test';

beforeAll(async () => {
  db = await createTestDatabase();
  const store = new PostgresSessionStore({ pool: db.pool, tableName: 'sessions', now: () => NOW });
  await store.ready();
  await store.close();
});

afterAll(async () => {
  await db?.drop();
});

beforeEach(async () => {
  await db.pool.query('TRUNCATE sessions');
});

/** A store on its own pool, with the statements it sends counted by text. */
function countedStore(options: Partial<ConstructorParameters<typeof PostgresSessionStore>[0]> = {}) {
  const pool = new pg.Pool({ connectionString: db.url, max: 4 });
  pool.on('error', () => {});
  const sent: string[] = [];
  const faults: Error[] = [];
  const query = pool.query.bind(pool) as (...a: unknown[]) => unknown;
  vi.spyOn(pool, 'query').mockImplementation(((...a: unknown[]) => {
    const first = a[0] as string | { text: string };
    sent.push(typeof first === 'string' ? first : first.text);
    const fault = faults.shift();
    return fault ? Promise.reject(fault) : query(...a);
  }) as never);
  const store = new PostgresSessionStore({ pool, tableName: 'sessions', now: () => NOW, ...options });
  return {
    store,
    sent,
    /** The next statement fails with this error instead of being sent. */
    failNext: (err: Error) => faults.push(err),
    /** Statements that wrote session data. */
    saves: () => sent.filter((t) => /sess::jsonb - /.test(t)).length,
    async close() {
      await store.close();
      await pool.end();
    },
  };
}

function record(userId: string | null, data: Record<string, unknown> = {}): SessionRecord {
  return {
    data: { cookie: { originalMaxAge: 3_600_000 }, userId, ...data },
    expiresAt: NOW + 3_600_000,
    createdAt: NOW,
    lastActiveAt: NOW,
    userId,
    version: 0,
  };
}

function change(set: Record<string, unknown>, userId: string | null, unset: string[] = []): SessionChange {
  return {
    set,
    unset,
    data: { cookie: { originalMaxAge: 3_600_000 }, userId, ...set },
    expiresAt: NOW + 7_200_000,
    lastActiveAt: NOW + 1000,
    userId,
    baseVersion: 0,
  };
}

const keys = Array.from({ length: 12 }, (_, i) => hashId(`batch-session-${i}`));

describe('saves of different sessions in one turn of the event loop', () => {
  it('are one statement, and each caller gets its own session as stored', async () => {
    const s = countedStore();
    try {
      for (const [i, key] of keys.entries()) await s.store.create(key, record(`u${i}`, { keep: i, drop: i }));
      const results = await Promise.all(
        keys.map((key, i) => s.store.update(key, change({ n: i * 10 }, `u${i}`, ['drop']))),
      );
      expect(s.saves()).toBe(1);
      for (const [i, result] of results.entries()) {
        expect(result?.data).toEqual({
          cookie: { originalMaxAge: 3_600_000 },
          userId: `u${i}`,
          keep: i,
          n: i * 10,
        });
        expect(result?.version).toBe(1);
        expect(result?.expiresAt).toBe(NOW + 7_200_000);
        expect(result?.lastActiveAt).toBe(NOW + 1000);
        expect(result?.createdAt).toBe(NOW);
        expect(result?.userId).toBe(`u${i}`);
      }
      // What the table holds is what each caller was told.
      for (const [i, key] of keys.entries()) {
        expect((await s.store.get(key))?.data).toEqual(results[i]?.data);
      }
    } finally {
      await s.close();
    }
  });

  it('answers null for a session that is gone, and still writes the others', async () => {
    const s = countedStore();
    try {
      await s.store.create(keys[0]!, record('a'));
      await s.store.create(keys[1]!, record('b'));
      const [gone, kept, never] = await Promise.all([
        (async () => {
          await s.store.destroy(keys[0]!);
          return s.store.update(keys[0]!, change({ n: 1 }, 'a'));
        })(),
        s.store.update(keys[1]!, change({ n: 2 }, 'b')),
        s.store.update(keys[2]!, change({ n: 3 }, 'c')),
      ]);
      expect(gone).toBeNull();
      expect(never).toBeNull();
      expect(kept?.data).toMatchObject({ n: 2 });
      // A logout wins: no row comes back.
      expect(await s.store.get(keys[0]!)).toBeNull();
      expect(await s.store.get(keys[2]!)).toBeNull();
    } finally {
      await s.close();
    }
  });

  it('one session jsonb cannot hold ("\\u0000") is still saved whole, and does not fail the others', async () => {
    const s = countedStore();
    try {
      for (const [i, key] of keys.slice(0, 3).entries()) await s.store.create(key, record(`u${i}`));
      const results = await Promise.all([
        s.store.update(keys[0]!, change({ n: 1 }, 'u0')),
        s.store.update(keys[1]!, change({ note: 'x\u0000y' }, 'u1')),
        s.store.update(keys[2]!, change({ n: 3 }, 'u2')),
      ]);
      expect(results[0]?.data).toMatchObject({ n: 1 });
      expect(results[1]?.data).toMatchObject({ note: 'x\u0000y' });
      expect(results[2]?.data).toMatchObject({ n: 3 });
      expect((await s.store.get(keys[1]!))?.data).toMatchObject({ note: 'x\u0000y' });
    } finally {
      await s.close();
    }
  });

  it('a session that cannot be serialized fails its own save only', async () => {
    const s = countedStore();
    try {
      await s.store.create(keys[0]!, record('a'));
      await s.store.create(keys[1]!, record('b'));
      const [bad, good] = await Promise.allSettled([
        s.store.update(keys[0]!, change({ n: 10n }, 'a')),
        s.store.update(keys[1]!, change({ n: 2 }, 'b')),
      ]);
      expect(bad.status).toBe('rejected');
      expect(good.status === 'fulfilled' && good.value?.data).toMatchObject({ n: 2 });
    } finally {
      await s.close();
    }
  });

  it('finds rows connect-pg-simple stored under the raw id, by the key hash recorded on their first read', async () => {
    const s = countedStore();
    try {
      const raw = 'legacy-raw-id';
      await db.pool.query(
        `INSERT INTO sessions (sid, sess, expire) VALUES ($1, '{"cookie":{},"userId":"old","a":1}', to_timestamp($2::float8 / 1000))`,
        [raw, NOW + 3_600_000],
      );
      await s.store.get(hashId(raw), { legacyKey: raw });
      await s.store.create(keys[0]!, record('x'));
      const [legacy, hashed] = await Promise.all([
        s.store.update(hashId(raw), change({ b: 2 }, 'old')),
        s.store.update(keys[0]!, change({ b: 3 }, 'x')),
      ]);
      expect(s.saves()).toBe(1);
      expect(legacy?.data).toMatchObject({ a: 1, b: 2 });
      expect(hashed?.data).toMatchObject({ b: 3 });
      // Still where connect-pg-simple looks for it.
      const { rows } = await db.pool.query('SELECT sess FROM sessions WHERE sid = $1', [raw]);
      expect(rows[0].sess).toMatchObject({ a: 1, b: 2 });
    } finally {
      await s.close();
    }
  });

  it('with batchSaves: false, each save is its own statement', async () => {
    const s = countedStore({ batchSaves: false });
    try {
      for (const [i, key] of keys.slice(0, 4).entries()) await s.store.create(key, record(`u${i}`));
      await Promise.all(keys.slice(0, 4).map((key, i) => s.store.update(key, change({ n: i }, `u${i}`))));
      expect(s.saves()).toBe(4);
    } finally {
      await s.close();
    }
  });

  it('a batchSaves that is not a boolean is a ConfigError', () => {
    expect(() => new PostgresSessionStore({ pool: db.pool, batchSaves: 'off' as never })).toThrow(
      ConfigError,
    );
  });

  it('close() waits for saves already queued: none is lost', async () => {
    const s = countedStore();
    await s.store.create(keys[0]!, record('a'));
    await s.store.create(keys[1]!, record('b'));
    const saving = Promise.all([
      s.store.update(keys[0]!, change({ n: 1 }, 'a')),
      s.store.update(keys[1]!, change({ n: 2 }, 'b')),
    ]);
    await s.close();
    expect((await saving).map((r) => r?.data.n)).toEqual([1, 2]);
    const { rows } = await db.pool.query<{ n: number }>(
      `SELECT (sess->>'n')::int AS n FROM sessions ORDER BY 1`,
    );
    expect(rows.map((r) => r.n)).toEqual([1, 2]);
  });

  it('a batch the server rolled back (a deadlock with another writer) is sent again one save at a time', async () => {
    const s = countedStore();
    try {
      for (const [i, key] of keys.slice(0, 3).entries()) await s.store.create(key, record(`u${i}`));
      s.failNext(Object.assign(new Error('deadlock detected'), { code: '40P01' }));
      const before = s.saves();
      const results = await Promise.all(
        keys.slice(0, 3).map((key, i) => s.store.update(key, change({ n: i + 1 }, `u${i}`))),
      );
      expect(results.map((r) => r?.data.n)).toEqual([1, 2, 3]);
      // The failed batch, then one statement per save.
      expect(s.saves() - before).toBe(4);
      expect(results.map((r) => r?.version)).toEqual([1, 1, 1]);
    } finally {
      await s.close();
    }
  });

  it('a connection failure fails every save of the batch, and none is sent again', async () => {
    const s = countedStore();
    try {
      await s.store.create(keys[0]!, record('a'));
      await s.store.create(keys[1]!, record('b'));
      // The statement is cut off as a dropped connection would be: it may have committed.
      s.failNext(new Error('Connection terminated unexpectedly'));
      const before = s.saves();
      const results = await Promise.allSettled([
        s.store.update(keys[0]!, change({ n: 1 }, 'a')),
        s.store.update(keys[1]!, change({ n: 2 }, 'b')),
      ]);
      expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
      expect(s.saves() - before).toBe(1);
    } finally {
      await s.close();
    }
  });
});

describe('batched saves and the other processes’ caches', () => {
  it('a change of owner is announced by its own statement, data-only saves by the announcer', async () => {
    const listener = new pg.Client({ connectionString: db.url });
    await listener.connect();
    const heard: string[] = [];
    listener.on('notification', (n) => heard.push(n.payload ?? ''));
    await listener.query(`LISTEN ${CHANNEL}`);
    // Only the save statement announces: a long interval keeps the announcer's batch back.
    const s = countedStore({
      notify: { channel: CHANNEL, nodeId: 'n1' },
      announceData: 'coalesced',
      announceIntervalMs: 60_000,
      announceOtherWriters: false,
    });
    try {
      await s.store.create(keys[0]!, record('alice'));
      await s.store.create(keys[1]!, record('bob'));
      await Promise.all([
        s.store.update(keys[0]!, change({ n: 1 }, 'alice')),
        s.store.update(keys[1]!, change({ n: 2 }, 'mallory')),
      ]);
      expect(s.saves()).toBe(1);
      await new Promise((r) => setTimeout(r, 200));
      expect(heard.join(',')).toContain(keys[1]!);
      expect(heard.join(',')).not.toContain(keys[0]!);
      // The data-only save is the announcer's: sent when it flushes (here, at close).
      await s.store.close();
      await new Promise((r) => setTimeout(r, 200));
      expect(heard.join(',')).toContain(keys[0]!);
    } finally {
      await s.close();
      await listener.end();
    }
  });

  it("with announceData: 'statement', the one statement announces every session it saved", async () => {
    const listener = new pg.Client({ connectionString: db.url });
    await listener.connect();
    const heard: string[] = [];
    listener.on('notification', (n) => heard.push(n.payload ?? ''));
    await listener.query(`LISTEN ${CHANNEL}`);
    // With the triggers that announce other writers installed: they must stay silent for
    // pgsession's own batched save, which announces itself.
    const s = countedStore({
      notify: { channel: CHANNEL, nodeId: 'n1' },
      announceData: 'statement',
    });
    try {
      await s.store.ready();
      const { rows } = await db.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_trigger WHERE tgrelid = 'sessions'::regclass AND NOT tgisinternal`,
      );
      expect(rows[0]!.n).toBeGreaterThan(0);
      for (const [i, key] of keys.slice(0, 5).entries()) await s.store.create(key, record(`u${i}`));
      await Promise.all(keys.slice(0, 5).map((key, i) => s.store.update(key, change({ n: i }, `u${i}`))));
      expect(s.saves()).toBe(1);
      await new Promise((r) => setTimeout(r, 200));
      const all = heard.join(',');
      for (const key of keys.slice(0, 5)) expect(all.split(key).length - 1).toBe(1);
    } finally {
      await s.close();
      await listener.end();
    }
  });
});
