/**
 * The demo app behind a real PgBouncer (Debian's 1.18), in session and in transaction mode:
 * one app server as its own process configured only through the environment
 * (`DATABASE_URL` = the pooler, `DATABASE_DIRECT_URL` = the server for the cache's LISTEN,
 * `DATABASE_PREPARED_STATEMENTS=off` in transaction mode, `METRICS=on`), one in this process.
 * Login, steady requests from the cache, logout and revocation seen by the other server, the
 * login rate limit, and pruning all go through the pooler.
 */
import http from 'node:http';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp, type DemoApp } from '../../app/create-app.js';
import { createPool } from '../../src/db/index.js';
import { kSessionStore } from '../../src/index.js';
import { DEFAULT_CHANNEL } from '../../src/stores/cache/protocol.js';
import { PgStore, type PostgresSessionStore } from '../../src/stores/postgres/index.js';
import { migratedDatabase, PASSWORD, TEST_SECRET, testConfig } from '../app/harness.js';
import type { TestDatabase } from '../helpers/db.js';
import { Client, listen } from '../helpers/http.js';
import { waitUntil } from '../reliability/support.js';
import { type ChildApp, runCli, spawnApp } from '../security/support.js';
import { type PgBouncer, startPgBouncer } from './support.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (const mode of ['session', 'transaction'] as const) {
  describe(`behind PgBouncer, pool_mode = ${mode}`, () => {
    let db: TestDatabase;
    let bouncer: PgBouncer;
    let child: ChildApp;
    let local: { url: string; app: DemoApp; close(): Promise<void> };
    const prepared = mode === 'session';
    let pgStore: PgStore;

    beforeAll(async () => {
      db = await migratedDatabase();
      bouncer = await startPgBouncer(db.url, mode);
      const pooled = bouncer.through(db.url);
      // Server 1: the demo app as `npm start` runs it, configured by the environment only.
      child = await spawnApp({
        DATABASE_URL: pooled,
        DATABASE_DIRECT_URL: db.url,
        DATABASE_POOL_MAX: '4',
        DATABASE_STATEMENT_TIMEOUT: '5s',
        ...(prepared ? {} : { DATABASE_PREPARED_STATEMENTS: 'off' }),
        METRICS: 'on',
        SESSION_SECRET: TEST_SECRET,
        LOG_LEVEL: 'warn',
      });
      // Server 2: the same app in this process, so its cache and store can be inspected.
      const pool = createPool(pooled, { max: 4, preparedStatements: prepared, statementTimeout: 5_000 });
      pgStore = new PgStore({ pool, tableName: 'session', listenConnectionString: db.url });
      const app = createApp({
        pool,
        store: pgStore,
        logger: pino({ level: 'silent' }),
        config: testConfig({ database: { poolMax: 4, directUrl: db.url } }),
        argon2: { memoryCost: 4096, timeCost: 2, parallelism: 1 },
      });
      await app.auth.ready();
      await app.auth.users.create({ email: 'pooled@example.com', password: PASSWORD });
      const server = await listen(http.createServer(app));
      local = {
        url: server.url,
        app,
        close: async () => {
          await server.close();
          await app.close();
          await pgStore.close();
          await pool.end();
        },
      };
    }, 90_000);

    afterAll(async () => {
      await child?.stop().catch(() => {});
      await local?.close().catch(() => {});
      await bouncer?.stop();
      await db?.drop();
    });

    const store = () =>
      pgStore[kSessionStore] as PostgresSessionStore & {
        stats(): { hits: number; notifications: number; listening: boolean };
      };

    /** Log in on `url`; the client (cookie jar) it logged in. */
    const login = async (url: string) => {
      const c = new Client(url);
      const res = await c.post('/login', { form: { email: 'pooled@example.com', password: PASSWORD } });
      expect(res.status).toBe(303);
      expect(res.headers.get('location')).toBe('/dashboard');
      return c;
    };
    /** The same cookie, presented to another server. */
    const on = (url: string, c: Client) => {
      const other = new Client(url);
      other.jar.set('sessionId', c.jar.get('sessionId')!);
      return other;
    };
    const waitForStatus = async (c: Client, status: number) => {
      const started = Date.now();
      for (;;) {
        const res = await c.get('/api/me');
        await res.arrayBuffer();
        if (res.status === status) return Date.now() - started;
        if (Date.now() - started > 5_000) throw new Error(`still ${res.status} after 5 s`);
        await sleep(5);
      }
    };

    /**
     * Wait until this process's listener (started by its first read) is listening and has heard
     * every notification committed so far: one notification with no keys, sent after them,
     * arrives after them (PostgreSQL delivers in commit order). Until then reads bypass the
     * cache, or a late announcement can land in the middle of a read and keep it out.
     */
    const notificationsSettled = async () => {
      expect(await waitUntil(() => store().stats().listening, 10_000, 5), 'listening').toBe(true);
      const heard = store().stats().notifications;
      await db.pool.query('SELECT pg_notify($1, $2)', [DEFAULT_CHANNEL, '']);
      expect(await waitUntil(() => store().stats().notifications > heard, 10_000, 5), 'heard').toBe(true);
    };

    it('logs in and serves steady requests on both servers, the cache listening on the direct connection', async () => {
      const statuses: number[] = [];
      const clients: Client[] = [];
      for (let i = 0; i < 10; i++) clients.push(await login(i % 2 ? local.url : child.url));
      let hitsBefore = 0;
      for (let round = 0; round < 4; round++) {
        // Round 0 starts this server's listener; until it listens reads go to the database, so
        // round 1 loads what round 0 could not cache. From then on they are cached.
        if (round === 1) await notificationsSettled();
        if (round === 2) hitsBefore = store().stats().hits;
        for (const c of clients) {
          for (const url of [child.url, local.url]) {
            const res = await on(url, c).get('/api/me');
            statuses.push(res.status);
            await res.arrayBuffer();
          }
        }
      }
      expect(statuses.filter((s) => s !== 200)).toEqual([]);
      expect(statuses).toHaveLength(80);
      expect(store().stats().listening).toBe(true);
      // The steady requests on this server (10 sessions × 2 rounds) came from the cache (a
      // bypassed cache, as with a listener on the transaction pooler, would count 0 here).
      expect(store().stats().hits - hitsBefore, JSON.stringify(store().stats())).toBe(20);
      const metrics = await (await fetch(`${child.url}/metrics`)).text();
      expect(metrics).toMatch(/^pgsession_cache_listening 1$/m);
      expect(Number(/^pgsession_cache_hits_total (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThan(0);
      expect(Number(/^pgsession_logins_total\{outcome="succeeded"\} (\d+)$/m.exec(metrics)?.[1])).toBe(5);
      expect(bouncer.log()).not.toMatch(/unsupported startup parameter/);
    }, 60_000);

    it('a logout on one server is refused by the other at once; a revocation on every server', async () => {
      const c = await login(child.url);
      const elsewhere = on(local.url, c);
      expect((await elsewhere.get('/api/me')).status).toBe(200); // cached there now
      const page = await (await c.get('/dashboard')).text();
      const csrf = /name="_csrf" value="([^"]+)"/.exec(page)![1]!;
      expect((await c.post('/logout', { form: { _csrf: csrf } })).status).toBe(303);
      const ms = await waitForStatus(elsewhere, 401);
      console.log(`pgbouncer ${mode}: logout refused by the other server ${ms} ms after its response`);
      expect(ms).toBeLessThan(1_000);

      const a = await login(local.url);
      const b = await login(child.url);
      for (const x of [a, b])
        for (const url of [child.url, local.url]) {
          expect((await on(url, x).get('/api/me')).status).toBe(200);
        }
      const user = await local.app.auth.users.findByEmail('pooled@example.com');
      expect(await local.app.auth.sessions.revokeAll(user!.id)).toBeGreaterThanOrEqual(2);
      for (const x of [a, b]) {
        await waitForStatus(on(child.url, x), 401);
        expect((await on(local.url, x).get('/api/me')).status).toBe(401);
      }
    }, 60_000);

    it('counts failed logins through the pooler: the 6th is refused with 429', async () => {
      const c = new Client(child.url);
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) {
        const res = await c.post('/login', {
          form: { email: 'limited@example.com', password: 'wrong password!' },
        });
        statuses.push(res.status);
        await res.arrayBuffer();
      }
      expect(statuses).toEqual([303, 303, 303, 303, 303, 429]);
      // The other server shares the counters.
      const res = await new Client(local.url).post('/login', {
        form: { email: 'limited@example.com', password: 'wrong password!' },
      });
      expect(res.status).toBe(429);
    }, 60_000);

    // The CLI costs a process start per command: checked in the mode that needs the switch.
    if (mode === 'transaction')
      it("the CLI through the pooler: lists and revokes a user's sessions; a bad setting is exit 2", async () => {
        await login(local.url);
        const env = {
          DATABASE_URL: bouncer.through(db.url),
          ...(prepared ? {} : { DATABASE_PREPARED_STATEMENTS: 'off' }),
          DATABASE_STATEMENT_TIMEOUT: '5s',
        };
        const list = await runCli(['sessions', 'list', '--user', 'pooled@example.com'], env);
        expect(list.code, list.stderr).toBe(0);
        expect(list.stdout).toMatch(/pooled@example\.com/);
        const revoke = await runCli(['sessions', 'revoke', '--user', 'pooled@example.com'], env);
        expect(revoke.code, revoke.stderr).toBe(0);
        const bad = await runCli(['prune'], { ...env, DATABASE_STATEMENT_TIMEOUT: 'soon' });
        expect(bad.code).toBe(2);
        expect(bad.stderr).toContain('DATABASE_STATEMENT_TIMEOUT');
      }, 60_000);

    it('prunes expired sessions through the pooler, and again on the next run', async () => {
      const insert = (prefix: string) =>
        db.pool.query(
          `INSERT INTO session (sid, sess, expire)
           SELECT $1 || g, '{"cookie":{}}', now() - interval '1 minute' FROM generate_series(1, 30) g`,
          [prefix],
        );
      await insert('dead-a-');
      expect(await store().prune({ batchSize: 10 })).toBe(30);
      await insert('dead-b-');
      // The lock of the first run was released (a session lock taken through a transaction
      // pooler could stay on a backend nobody holds).
      expect(await store().prune({ batchSize: 10 })).toBe(30);
      // Only this test's database: pg_locks covers the whole server, where other tests' stores
      // prune their own databases at the same time.
      const { rows } = await db.pool.query(
        `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_database d ON d.oid = l.database
          WHERE l.locktype = 'advisory' AND d.datname = current_database()`,
      );
      expect(rows[0].n).toBe(0);
    }, 60_000);
  });
}
