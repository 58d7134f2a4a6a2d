/**
 * A lookup by session key reads that session's rows, not every live session's: on a table filled
 * since its last ANALYZE (a fresh table after a login storm) and with generic plans (prepared
 * statements after their fifth run), the statements of a request never scan the expire index.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildQueries } from '../../src/stores/postgres/queries.js';
import { tableNames } from '../../src/stores/postgres/schema.js';
import { PostgresSessionStore } from '../../src/stores/postgres/session-store.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';

let db: TestDatabase;
const NOW = Date.UTC(2031, 5, 1);

beforeAll(async () => {
  db = await createTestDatabase();
  const store = new PostgresSessionStore({ pool: db.pool, tableName: 'sessions', now: () => NOW });
  await store.ready();
  await store.close();
  // Statistics stay those of the empty table: no autovacuum, no ANALYZE.
  await db.pool.query('ALTER TABLE sessions SET (autovacuum_enabled = false)');
  await db.pool.query(
    `INSERT INTO sessions (sid, sess, expire, id_hashed, user_id)
     SELECT 'key' || g, '{"cookie":{}}', to_timestamp($1::float8 / 1000), true, 'u' || g
     FROM generate_series(1, 20000) g`,
    [NOW + 7 * 86_400_000],
  );
});

afterAll(async () => {
  await db?.drop();
});

const key = 'key123';
const later = NOW + 7 * 86_400_000;
const q = buildQueries(
  tableNames({ tableName: 'sessions' }),
  true,
  { channel: 'pgsession', nodeId: 'n1' },
  true,
);
const lookups: Array<[string, string, unknown[]]> = [
  ['get', q.get.text, [key, NOW, null]],
  ['update', q.update.text, [key, [], '{"n":1}', later, NOW, 'u123', NOW, null]],
  ['replace', q.replace.text, [key, '{"n":1}', later, NOW, 'u123', NOW, null]],
  [
    'updateMany',
    q.updateMany.text,
    [
      JSON.stringify(
        [1, 2, 3, 4, 5].map((i) => ({
          bi: i - 1,
          bh: `key${i}`,
          bk: null,
          bunset: [],
          bset: { n: i },
          bexp: later,
          bact: NOW,
          buid: `u${i}`,
        })),
      ),
      NOW,
    ],
  ],
  ['touch', q.touch.text, [key, later, NOW, NOW, null]],
  ['listByUser', q.listByUser.text, ['u123', NOW]],
];

describe('query plans of per-request statements', () => {
  for (const mode of ['auto', 'force_generic_plan'] as const) {
    it.each(lookups)(
      `%s (plan_cache_mode ${mode}): no scan of the expire index`,
      async (_name, text, values) => {
        const client = await db.pool.connect();
        try {
          await client.query(`SET plan_cache_mode = ${mode}`);
          const { rows } = await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${text}`, values);
          const plan = rows.map((r) => r['QUERY PLAN']).join('\n');
          expect(plan).toMatch(/sessions_pkey|IDX_sessions_key_hash|IDX_sessions_user_id/);
          expect(plan).not.toMatch(/IDX_sessions_expire/);
          expect(plan).not.toMatch(/Seq Scan/);
        } finally {
          await client.query('RESET plan_cache_mode');
          client.release();
        }
      },
    );
  }
});
