/**
 * Coalesced announcements (issue 19): data-only saves commit without a pending notification and
 * are announced in batches; deletes, revocations and changes of owner are announced by the
 * write's own statement. Covers a crash between a save and its announcement, listener loss and
 * many servers.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { hashId } from '../../src/core/id.js';
import { createPool } from '../../src/db/pool.js';
import { CoalescingAnnouncer, MAX_PENDING_KEYS } from '../../src/stores/cache/announcer.js';
import { CachedPostgresSessionStore, type PostgresCacheOptions } from '../../src/stores/cache/index.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { sessionChange as change, sessionRecord as record } from '../helpers/records.js';

const TABLE = 'sessions';
const CHANNEL = 'pgsession_coalesced';
let db: TestDatabase;
const closers: Array<() => Promise<void>> = [];

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(async () => {
  for (const close of closers.splice(0).reverse()) await close().catch(() => {});
  await db?.drop();
});

let seq = 0;
const newKey = () => hashId(`coalesced-${process.pid}-${seq++}-${Math.random()}`);

/** A server: its own pool, a cache with coalesced announcements, listening. */
async function server(options: { intervalMs?: number; cache?: PostgresCacheOptions } = {}) {
  const pool = createPool(db.url, { max: 4 });
  const store = new CachedPostgresSessionStore({
    pool,
    tableName: TABLE,
    notify: { channel: CHANNEL, nodeId: `n${seq++}` },
    announceData: 'coalesced',
    announceIntervalMs: options.intervalMs,
    cache: { healthCheckIntervalMs: 200, healthCheckTimeoutMs: 500, ...options.cache },
  });
  closers.push(async () => {
    await store.close();
    await pool.end();
  });
  await store.ready();
  await store.get('warm-up');
  expect(await store.listener.waitUntilListening(5000)).toBe(true);
  return store;
}

/** A plain LISTEN connection collecting payloads. */
async function tap() {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  const payloads: string[] = [];
  client.on('notification', (m) => payloads.push(m.payload ?? ''));
  await client.query(`LISTEN ${CHANNEL}`);
  closers.push(() => client.end());
  return {
    payloads,
    /** What arrived so far (a round trip on the listening connection delivers what was sent before it). */
    async drain(): Promise<string[]> {
      await client.query('SELECT 1');
      return payloads.splice(0);
    },
  };
}

async function until(fn: () => Promise<boolean>, timeoutMs = 5000): Promise<number> {
  const started = performance.now();
  while (!(await fn())) {
    if (performance.now() - started > timeoutMs) throw new Error(`not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 1));
  }
  return performance.now() - started;
}

describe('CoalescingAnnouncer', () => {
  it('sends every key saved within the interval in one statement', async () => {
    const sent: unknown[][] = [];
    const a = new CoalescingAnnouncer({
      send: async (_text, values) => {
        sent.push(values);
      },
      target: { channel: CHANNEL, nodeId: 'a' },
      intervalMs: 20,
    });
    for (const key of ['k1', 'k2', 'k1', 'k3']) a.add(key);
    expect(sent).toEqual([]);
    await vi.waitFor(() => expect(sent).toHaveLength(1));
    expect(sent[0]).toEqual([CHANNEL, ['a:k1,k2,k3']]);
    await a.close();
  });

  it('keeps the keys of a failed send and sends them later; past its bound it says "everything"', async () => {
    let fail = true;
    const sent: unknown[][] = [];
    const errors: unknown[] = [];
    const a = new CoalescingAnnouncer({
      send: async (_text, values) => {
        if (fail) throw new Error('database down');
        sent.push(values);
      },
      target: { channel: CHANNEL, nodeId: 'a' },
      intervalMs: 1,
      onError: (err) => errors.push(err),
    });
    a.add('k1');
    await vi.waitFor(() => expect(errors).toHaveLength(1));
    expect(a.pending).toBe(1);
    fail = false;
    await a.flush();
    expect(sent).toEqual([[CHANNEL, ['a:k1']]]);
    for (let i = 0; i <= MAX_PENDING_KEYS; i++) a.add(`key${i}`);
    expect(a.pending).toBe(1);
    await a.close();
    expect(sent[1]).toEqual([CHANNEL, ['a:*']]);
  });
});

describe('coalesced announcements on PostgreSQL', () => {
  it('a data-only save commits with no notification; its key comes in the next batch', async () => {
    const listen = await tap();
    // An interval long enough to look at the save's own transaction alone.
    const a = await server({ intervalMs: 60_000 });
    const key = newKey();
    const rec = record('u1');
    await a.create(key, rec);
    await a.update(key, change({ n: 1 }, 'u1'));
    expect(await listen.drain()).toEqual([]);
    expect(a.table.announcer?.pending).toBe(1);
    await a.table.announcer!.flush();
    await until(async () => listen.payloads.length > 0);
    const payloads = listen.payloads.splice(0);
    expect(payloads).toHaveLength(1);
    expect(payloads[0]).toMatch(new RegExp(`^n\\d+:${key.replace(/[-]/g, '\\-')}$`));
  });

  it('deletes, revocations and changes of owner are announced by the write itself, at once', async () => {
    const listen = await tap();
    const a = await server({ intervalMs: 60_000 });
    const k1 = newKey();
    const k2 = newKey();
    await a.create(k1, record('u1'));
    await a.create(k2, record('u2'));
    await a.update(k1, change({ userId: 'u9' }, 'u9'));
    expect((await listen.drain()).join()).toContain(k1);
    await a.destroy(k1);
    expect((await listen.drain()).join()).toContain(k1);
    expect(await a.destroyByUser('u2')).toBe(1);
    expect((await listen.drain()).join()).toContain(k2);
    expect(a.table.announcer?.pending).toBe(0);
  });

  it('many servers: a save on one is seen by the others within milliseconds; a logout at once', async () => {
    const servers = [await server(), await server(), await server()];
    const [a, b, c] = servers as [
      CachedPostgresSessionStore,
      CachedPostgresSessionStore,
      CachedPostgresSessionStore,
    ];
    const key = newKey();
    await a.create(key, record('u1'));
    await b.get(key);
    await c.get(key);
    await a.update(key, change({ n: 7 }, 'u1'));
    const seen = await until(
      async () => (await b.get(key))?.data.n === 7 && (await c.get(key))?.data.n === 7,
    );
    expect(seen).toBeLessThan(1000);
    await a.destroy(key);
    await until(async () => (await b.get(key)) === null && (await c.get(key)) === null, 1000);
  });

  it('a crash between a save and its announcement: logouts are still seen at once; the older data is served at most entryMaxAge', async () => {
    // The writer "dies" after committing: its batch is never sent.
    const writer = await server({ intervalMs: 60_000 });
    const reader = await server({ cache: { entryMaxAge: 500 } });
    const key = newKey();
    const other = newKey();
    await writer.create(key, record('u1'));
    await writer.create(other, record('u1'));
    expect((await reader.get(key))?.data.n).toBeUndefined();
    await reader.get(other);
    await writer.update(key, change({ n: 1 }, 'u1'));
    // A logout committed by the same process right before it dies is announced by its own statement.
    await writer.destroy(other);
    await until(async () => (await reader.get(other)) === null, 1000);
    // The data-only save is unannounced: served from memory until the entry is older than entryMaxAge.
    expect((await reader.get(key))?.data.n).toBeUndefined();
    const waited = await until(async () => (await reader.get(key))?.data.n === 1, 5000);
    expect(waited).toBeLessThan(2000);
  });

  it('listener loss: a server whose listener dropped forgets what it held and never serves an unannounced save', async () => {
    const writer = await server({ intervalMs: 60_000 });
    const reader = await server();
    const key = newKey();
    await writer.create(key, record('u1'));
    await reader.get(key);
    const flushes = reader.stats().flushes;
    await db.pool.query('SELECT pg_terminate_backend($1)', [reader.listener.backendPid]);
    await vi.waitFor(() => expect(reader.stats().flushes).toBeGreaterThan(flushes), { timeout: 3000 });
    // Announcements sent while it was down are lost to it: whether or not it is back yet, it
    // dropped what it held, so it reads the row again instead of serving its older copy.
    await writer.update(key, change({ n: 2 }, 'u1'));
    expect((await reader.get(key))?.data.n).toBe(2);
  });
});
