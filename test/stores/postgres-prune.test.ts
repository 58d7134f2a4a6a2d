import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { buildQueries } from '../../src/stores/postgres/queries.js';
import { tableNames } from '../../src/stores/postgres/schema.js';
import { PostgresSessionStore } from '../../src/stores/postgres/session-store.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
let db: TestDatabase;
let store: PostgresSessionStore;
const NOW = Date.UTC(2031, 5, 1);

beforeAll(async () => {
  db = await createTestDatabase();
  store = new PostgresSessionStore({ pool: db.pool, tableName: 'sessions', now: () => NOW });
  await store.ready();
});

afterAll(async () => {
  await store?.close();
  await db?.drop();
});

beforeEach(async () => {
  await db.pool.query('TRUNCATE sessions');
});

/** Insert `count` rows expiring at `expiresAt` (ms), keyed `<prefix><n>`. */
async function seed(prefix: string, count: number, expiresAt: number): Promise<void> {
  await db.pool.query(
    `INSERT INTO sessions (sid, sess, expire)
     SELECT $1 || g, '{"cookie":{}}', to_timestamp($2::float8 / 1000) FROM generate_series(1, $3::int) g`,
    [prefix, expiresAt, count],
  );
}

/** A promise and the function that settles it. */
function latch(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

async function keys(): Promise<string[]> {
  const { rows } = await db.pool.query<{ sid: string }>('SELECT sid FROM sessions ORDER BY sid');
  return rows.map((r) => r.sid);
}

describe('prune', () => {
  it('deletes exactly the expired rows, in batches, reporting progress', async () => {
    await seed('dead', 25, NOW - 1);
    await seed('live', 10, NOW + 1);
    await seed('edge', 1, NOW); // expire == now is still live (get uses expire >= now)
    const progress: number[] = [];
    const deleted = await store.prune({ batchSize: 10, onProgress: (n) => void progress.push(n) });
    expect(deleted).toBe(25);
    expect(progress).toEqual([10, 20, 25]);
    expect(await keys()).toEqual(['edge1', ...Array.from({ length: 10 }, (_, i) => `live${i + 1}`).sort()]);
    expect(await store.prune()).toBe(0);
  });

  it('returns 0 at once while another process prunes, and releases its lock afterwards', async () => {
    await seed('dead', 30, NOW - 1);
    const { promise: gate, open: release } = latch();
    const { promise: holding, open: firstBatchDone } = latch();
    // A second store instance stands for another server on the same table.
    const other = new PostgresSessionStore({ pool: db.pool, tableName: 'sessions', now: () => NOW });
    const first = store.prune({
      batchSize: 10,
      onProgress: async (n) => {
        if (n === 10) {
          firstBatchDone();
          await gate;
        }
      },
    });
    await holding;
    expect(await other.prune()).toBe(0);
    expect(await store.prune()).toBe(0); // same process, another connection: also refused
    release();
    expect(await first).toBe(30);
    await seed('later', 3, NOW - 1);
    expect(await other.prune()).toBe(3);
    const { rows } = await db.pool.query(
      `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory'`,
    );
    expect(rows[0].n).toBe(0);
  });

  it('stops between batches when aborted', async () => {
    await seed('dead', 30, NOW - 1);
    const controller = new AbortController();
    const deleted = await store.prune({
      batchSize: 10,
      signal: controller.signal,
      onProgress: () => controller.abort(),
    });
    expect(deleted).toBe(10);
    expect(await keys()).toHaveLength(20);
  });

  it('releases the lock when a progress callback throws', async () => {
    await seed('dead', 20, NOW - 1);
    await expect(
      store.prune({
        batchSize: 10,
        onProgress: () => {
          throw new Error('boom');
        },
      }),
    ).rejects.toThrow('boom');
    expect(await store.prune()).toBe(10);
  });

  it('finds the batch through the expire index', async () => {
    await seed('dead', 2000, NOW - 1);
    await seed('live', 50_000, NOW + 60_000);
    await db.pool.query('ANALYZE sessions');
    const { pruneBatch } = buildQueries(tableNames({ tableName: 'sessions' }));
    const { rows } = await db.pool.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${pruneBatch.text}`, [NOW, 5000]);
    const plan = rows.map((r) => r['QUERY PLAN']).join('\n');
    expect(plan).toMatch(/Index (Only )?Scan using "?IDX_sessions_expire"?/);
    expect(plan).toMatch(/Tid Scan/);
    expect(plan).not.toMatch(/Seq Scan/);
  });
});

describe('background pruning', () => {
  it('prunes on an unref()ed timer until stopped, reporting failures', async () => {
    await seed('dead', 5, NOW - 1);
    const onError = vi.fn();
    store.startPruning({ intervalMs: 20, jitter: false, onError });
    expect(store.pruning).toBe(true);
    await vi.waitFor(async () => expect(await keys()).toEqual([]), { timeout: 5000 });
    store.stopPruning();
    expect(store.pruning).toBe(false);
    await seed('dead', 5, NOW - 1);
    await new Promise((r) => setTimeout(r, 100));
    expect(await keys()).toHaveLength(5);
    expect(onError).not.toHaveBeenCalled();

    const failing = new PostgresSessionStore({
      pool: db.pool,
      tableName: 'no_such_table',
      createTableIfMissing: false,
    });
    failing.startPruning({ intervalMs: 10, jitter: (d) => d * 2, onError });
    await vi.waitFor(() => expect(onError).toHaveBeenCalled(), { timeout: 5000 });
    await failing.close();
    expect(failing.pruning).toBe(false);
  });

  it('stopPruning() also stops a run the timer started that has not deleted anything yet', async () => {
    await seed('dead', 5, NOW - 1);
    // A pool whose connect() waits for a gate: the timer's run is in flight but has not deleted.
    const { promise: gate, open } = latch();
    const { promise: reached, open: connecting } = latch();
    const slow = {
      query: db.pool.query.bind(db.pool),
      connect: async () => {
        connecting();
        await gate;
        return db.pool.connect();
      },
    };
    const s = new PostgresSessionStore({ pool: slow, tableName: 'sessions', now: () => NOW });
    s.startPruning({ intervalMs: 10, jitter: false });
    await reached;
    s.stopPruning();
    open();
    await s.close(); // waits for the run
    expect(await keys()).toHaveLength(5);
  });

  it('jitters between 50% and 150% of the interval by default', async () => {
    const delays: number[] = [];
    const spy = vi.spyOn(globalThis, 'setTimeout');
    const s = new PostgresSessionStore({ pool: db.pool, tableName: 'sessions' });
    for (let i = 0; i < 50; i++) {
      s.startPruning({ intervalMs: 1000 });
      delays.push(spy.mock.lastCall![1] as number);
    }
    spy.mockRestore();
    await s.close();
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(500);
    expect(Math.max(...delays)).toBeLessThanOrEqual(1500);
    expect(new Set(delays).size).toBeGreaterThan(1);
  });
});

describe('close', () => {
  it('ends a pool the store created, never one it was given', async () => {
    const given = new PostgresSessionStore({ pool: db.pool, tableName: 'sessions' });
    await given.get('x');
    await given.close();
    expect((await db.pool.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);

    const owning = new PostgresSessionStore({
      poolConfig: { connectionString: db.url },
      tableName: 'sessions',
    });
    await owning.get('x');
    owning.startPruning({ intervalMs: 60_000 });
    await owning.close();
    await owning.close(); // idempotent
    expect(owning.pruning).toBe(false);
    expect(owning.pool.ended).toBe(true);
  });

  it('leaves nothing behind: the process exits on its own after close()', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'pgsession-close-'));
    const script = path.join(dir, 'close.mts');
    const modulePath = path.join(root, 'src/stores/postgres/session-store.ts');
    await writeFile(
      script,
      `import { PostgresSessionStore } from ${JSON.stringify(modulePath)};
const store = new PostgresSessionStore({ poolConfig: { connectionString: process.env.TEST_DB_URL }, tableName: 'sessions' });
await store.get('x');
await store.prune();
store.startPruning({ intervalMs: 3_600_000 });
await store.close();
console.log('closed');
`,
    );
    try {
      const child = spawn(path.join(root, 'node_modules/.bin/tsx'), [script], {
        cwd: root,
        env: { ...process.env, TEST_DB_URL: db.url },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout.on('data', (c) => {
        output += c;
      });
      child.stderr.on('data', (c) => {
        output += c;
      });
      const started = Date.now();
      const code = await new Promise<number | null>((resolve, reject) => {
        const timer = setTimeout(() => {
          child.kill();
          reject(new Error(`process still running 10 s after close(): ${output}`));
        }, 10_000);
        child.on('exit', (c) => {
          clearTimeout(timer);
          resolve(c);
        });
      });
      expect(output.trim()).toBe('closed');
      expect(code).toBe(0);
      // A live pool keeps idle clients for 10 s and an hourly prune timer would be longer still.
      expect(Date.now() - started).toBeLessThan(8000);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
