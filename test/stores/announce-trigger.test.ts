/**
 * Issue 12, item 6 (with issue 19's constraint): writes not made by pgsession are announced to
 * every cache by triggers on the session table; activity-only updates never are, and
 * pgsession's own writes are announced once (by their own statement), never twice.
 */
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { hashId } from '../../src/core/id.js';
import { dropAnnounceTriggers } from '../../src/stores/postgres/announce-trigger.js';
import { ensureSchema, tableNames } from '../../src/stores/postgres/schema.js';
import { PostgresSessionStore } from '../../src/stores/postgres/session-store.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { sessionChange as change, HOUR, sessionRecord as record } from '../helpers/records.js';

const channel = 'pgsession_trigger_test';
let db: TestDatabase;
let store: PostgresSessionStore;
let listener: pg.Client;
const payloads: string[] = [];

/** What was announced since the last call (a round trip on the listening connection delivers it all). */
async function drain(): Promise<string[]> {
  await listener.query('SELECT 1');
  return payloads.splice(0);
}

beforeAll(async () => {
  db = await createTestDatabase();
  store = new PostgresSessionStore({
    pool: db.pool,
    tableName: 'session',
    notify: { channel, nodeId: 'node-a' },
  });
  await store.ready();
  listener = new pg.Client({ connectionString: db.url });
  await listener.connect();
  listener.on('notification', (msg) => payloads.push(msg.payload ?? ''));
  await listener.query(`LISTEN ${channel}`);
});
afterAll(async () => {
  await listener?.end();
  await store?.close();
  await db?.drop();
});
beforeEach(async () => {
  await db.pool.query('DELETE FROM session');
  await drain();
});

describe('writes not made by pgsession are announced', () => {
  it('a hand-written DELETE announces the storage keys of the live rows it deleted, not expired ones', async () => {
    await store.create('k1', record('u7'));
    await store.create('k2', record('u7'));
    await store.create('old', { ...record('u7'), expiresAt: Date.now() - 1000 });
    await db.pool.query("DELETE FROM session WHERE user_id = 'u7'");
    expect(await drain()).toEqual(['k1,k2']);
  });

  it('a hand-written UPDATE of the data, the owner, or an expiry into the past is announced', async () => {
    await store.create('k1', record());
    await db.pool.query(
      `UPDATE session SET sess = jsonb_set(sess::jsonb, '{role}', '"admin"')::json WHERE sid = 'k1'`,
    );
    expect(await drain()).toEqual(['k1']);
    await db.pool.query("UPDATE session SET user_id = 'u2' WHERE sid = 'k1'");
    expect(await drain()).toEqual(['k1']);
    await db.pool.query("UPDATE session SET expire = localtimestamp - interval '1 minute' WHERE sid = 'k1'");
    expect(await drain()).toEqual(['k1']);
  });

  it('a touch is never announced: pgsession, connect-pg-simple or by hand', async () => {
    await store.create('k1', record());
    expect(await store.touch('k1', Date.now() + 2 * HOUR, Date.now())).toBe(true);
    await db.pool.query(`UPDATE session SET expire = to_timestamp($1::float8 / 1000) WHERE sid = 'k1'`, [
      Date.now() + 3 * HOUR,
    ]);
    await db.pool.query("UPDATE session SET last_active_at = now(), expire = expire + interval '1 hour'");
    expect(await drain()).toEqual([]);
  });

  it("connect-pg-simple's writes of raw-id rows are announced under the storage key, never the raw id", async () => {
    // Its set(): an upsert of sid, sess, expire; its touch(): UPDATE … SET expire.
    const upsert = `INSERT INTO session (sid, sess, expire) VALUES ($1, $2, to_timestamp($3::float8 / 1000))
      ON CONFLICT (sid) DO UPDATE SET sess = $2, expire = to_timestamp($3::float8 / 1000)`;
    await db.pool.query(upsert, ['raw-id', '{"cookie":{},"n":1}', Date.now() + HOUR]);
    expect(await drain()).toEqual([]); // a new row: nobody can have it cached
    await db.pool.query(upsert, ['raw-id', '{"cookie":{},"n":2}', Date.now() + HOUR]);
    await db.pool.query(upsert, ['raw-id', '{"cookie":{},"n":2}', Date.now() + 2 * HOUR]); // same data
    await db.pool.query(`UPDATE session SET expire = to_timestamp($1::float8 / 1000) WHERE sid = 'raw-id'`, [
      Date.now() + 3 * HOUR,
    ]);
    await db.pool.query("DELETE FROM session WHERE sid = 'raw-id'");
    expect(await drain()).toEqual([hashId('raw-id'), hashId('raw-id')]);
    expect(JSON.stringify(await drain())).not.toContain('raw-id');
  });

  it('TRUNCATE and deletes of more than 1000 live rows announce "*"', async () => {
    await db.pool.query(
      `INSERT INTO session (sid, sess, expire, id_hashed)
       SELECT 'k' || i, '{}', localtimestamp + interval '1 hour', true FROM generate_series(1, 1001) i`,
    );
    await db.pool.query('DELETE FROM session');
    expect(await drain()).toEqual(['*']);
    await store.create('k1', record());
    await db.pool.query('TRUNCATE session');
    expect(await drain()).toEqual(['*']);
  });
});

describe("pgsession's own writes are announced once, by their own statement", () => {
  it('a save, a replace, an upsert, a destroy, a destroy-by-user and a clear: one notification each', async () => {
    await store.create('k1', record());
    expect(await drain()).toEqual([]);
    await store.update('k1', change({ n: 2 }));
    expect(await drain()).toEqual(['node-a:k1']);
    await store.replace('k1', record().data, Date.now() + HOUR, Date.now());
    expect(await drain()).toEqual(['node-a:k1']);
    await store.upsert('k1', record());
    expect(await drain()).toEqual(['node-a:k1']);
    await store.create('k2', record('u9'));
    expect(await store.destroyByUser('u9')).toBe(1);
    expect(await drain()).toEqual(['node-a:k2']);
    await store.destroy('k1');
    expect(await drain()).toEqual(['node-a:k1']);
    await store.create('k3', record());
    await store.clear();
    expect(await drain()).toEqual(['node-a:*']);
  });

  it('pruning expired rows and adopting a legacy row announce nothing', async () => {
    await store.create('gone', { ...record(), expiresAt: Date.now() - 1000 });
    expect(await store.prune()).toBe(1);
    await db.pool.query(
      `INSERT INTO session (sid, sess, expire) VALUES ('legacy-raw', '{"cookie":{}}', localtimestamp + interval '1 hour')`,
    );
    expect(await store.get(hashId('legacy-raw'), { legacyKey: 'legacy-raw' })).not.toBeNull();
    expect(await drain()).toEqual([]);
  });

  it('a store that does not announce (no notify) has its writes announced by the triggers', async () => {
    const quiet = new PostgresSessionStore({ pool: db.pool, tableName: 'session' });
    await store.create('k1', record());
    await quiet.destroy('k1');
    expect(await drain()).toEqual(['k1']);
    await quiet.close();
  });
});

describe('installing the triggers', () => {
  it('is idempotent, follows the channel, can be turned off and removed', async () => {
    const triggers = async () =>
      (
        await db.pool.query<{ tgname: string }>(
          "SELECT tgname FROM pg_trigger WHERE tgrelid = 'session'::regclass AND NOT tgisinternal ORDER BY 1",
        )
      ).rows.map((r) => r.tgname);
    expect(await triggers()).toEqual([
      'pgsession_announce_v1_delete',
      'pgsession_announce_v1_truncate',
      'pgsession_announce_v1_update',
    ]);
    await ensureSchema(db.pool, { tableName: 'session', announceWrites: { channel } });
    expect(await triggers()).toHaveLength(3);
    // Another channel: replaced, and what is deleted by hand goes there.
    await ensureSchema(db.pool, { tableName: 'session', announceWrites: { channel: 'other_channel' } });
    await store.create('k1', record());
    await db.pool.query("DELETE FROM session WHERE sid = 'k1'");
    expect(await drain()).toEqual([]);
    await ensureSchema(db.pool, { tableName: 'session', announceWrites: { channel } });
    // Off: nothing installed on a new table; removed on request.
    await ensureSchema(db.pool, { tableName: 'quiet', announceWrites: false });
    expect(
      (await db.pool.query("SELECT 1 FROM pg_trigger WHERE tgrelid = 'quiet'::regclass AND NOT tgisinternal"))
        .rowCount,
    ).toBe(0);
    const client = await db.pool.connect();
    try {
      await dropAnnounceTriggers(client, tableNames({ tableName: 'session' }));
    } finally {
      client.release();
    }
    expect(await triggers()).toEqual([]);
    await store.create('k2', record());
    await db.pool.query("DELETE FROM session WHERE sid = 'k2'");
    expect(await drain()).toEqual([]);
    await ensureSchema(db.pool, { tableName: 'session', announceWrites: { channel } });
    expect(await triggers()).toHaveLength(3);
  });

  it('a role that may not create them keeps working, with a warning saying how to install them', async () => {
    const role = `pgsession_app_${process.pid}_${Date.now()}`;
    await db.pool.query(`CREATE TABLE plain_session (LIKE session INCLUDING ALL)`);
    await db.pool.query(`CREATE ROLE ${role} LOGIN PASSWORD 'app-password'`);
    await db.pool.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON plain_session TO ${role}`);
    const url = new URL(db.url);
    url.username = role;
    url.password = 'app-password';
    const pool = new pg.Pool({ connectionString: url.toString() });
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      await expect(
        ensureSchema(pool, { tableName: 'plain_session', createTable: false, announceWrites: { channel } }),
      ).resolves.toMatchObject({ created: false });
      await new Promise((r) => setImmediate(r));
      expect(warnings.map((w) => w.message).join('\n')).toMatch(
        /not allowed to install the triggers.*pgsession migrate/,
      );
    } finally {
      process.off('warning', onWarning);
      await pool.end();
      await db.pool.query(`DROP TABLE plain_session`);
      await db.pool.query(`DROP OWNED BY ${role}`);
      await db.pool.query(`DROP ROLE ${role}`);
    }
  });
});
