import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { hashId } from '../../src/core/id.js';
import { kSessionStore } from '../../src/core/store.js';
import { CachedPostgresSessionStore } from '../../src/stores/cache/postgres.js';
import connectPgSimple from '../../src/stores/postgres/connect-pg-simple.js';
import { PostgresSessionStore } from '../../src/stores/postgres/session-store.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { Client, listen } from '../helpers/http.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const require = createRequire(import.meta.url);
// express-session and connect-pg-simple ship no types here: the little typing these tests need.
interface ExpressSession {
  (options: Record<string, unknown>): express.RequestHandler;
  Store: new () => object;
}
const session = require('express-session') as ExpressSession;
const realConnectPgSimple = require('connect-pg-simple') as (
  s: ExpressSession,
) => new (
  options: Record<string, unknown>,
) => { close(): Promise<void> };

type Req = express.Request & {
  session: Record<string, unknown> & { destroy(cb: (err?: unknown) => void): void };
};

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(async () => {
  await db?.drop();
});

function rawSid(cookieValue: string): string {
  const decoded = decodeURIComponent(cookieValue);
  return decoded.slice(2, decoded.lastIndexOf('.'));
}

async function startApp(store: object): Promise<{ url: string; close(): Promise<void> }> {
  const app = express();
  app.use(session({ store, secret: 'shared secret', resave: false, saveUninitialized: false }));
  app.post('/login', (req, res) => {
    (req as Req).session.userId = 42;
    res.send('ok');
  });
  app.get('/me', (req, res) => {
    res.json({ userId: (req as Req).session.userId ?? null });
  });
  app.post('/logout', (req, res, next) => {
    (req as Req).session.destroy((err) => (err ? next(err) : res.send('bye')));
  });
  app.use((err: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    res.status(500).send(`error: ${err.message}`);
  });
  const server: Server = app.listen(0, '127.0.0.1');
  return listen(server);
}

describe('pgsession/connect-pg-simple', () => {
  it("returns a subclass of the given express-session's Store, like connect-pg-simple", async () => {
    const PGStore = connectPgSimple(session);
    expect(PGStore.name).toBe('PGStore');
    const store = new PGStore({ pool: db.pool, pruneSessionInterval: false });
    expect(store).toBeInstanceOf(session.Store);
    // The engine face: the table, behind the session cache (which wraps it, see cache-pg.test.ts).
    expect(store[kSessionStore]).toBeInstanceOf(CachedPostgresSessionStore);
    expect((store[kSessionStore] as CachedPostgresSessionStore).table).toBeInstanceOf(PostgresSessionStore);
    expect(store[kSessionStore].pruning).toBe(false);
    expect(typeof store.regenerate).toBe('function'); // inherited from express-session's Store
    await store.close();
  });

  it('works as the store of the real express-session', async () => {
    const PGStore = connectPgSimple(session);
    const store = new PGStore({ pool: db.pool, tableName: 'compat', createTableIfMissing: true });
    const app = await startApp(store);
    try {
      const alice = new Client(app.url);
      expect(await (await alice.post('/login')).text()).toBe('ok');
      const sid = rawSid(alice.jar.get('connect.sid')!);
      const { rows } = await db.pool.query('SELECT sid, id_hashed FROM compat');
      expect(rows).toEqual([{ sid: hashId(sid), id_hashed: true }]);
      expect(await (await alice.get('/me')).json()).toEqual({ userId: 42 });
      expect(await (await alice.post('/logout')).text()).toBe('bye');
      expect((await db.pool.query('SELECT count(*)::int AS n FROM compat')).rows[0].n).toBe(0);
    } finally {
      await app.close();
      await store.close();
    }
  });

  it('does not create the table unless asked to (connect-pg-simple’s default)', async () => {
    const PGStore = connectPgSimple(session);
    const store = new PGStore({ pool: db.pool, tableName: 'not_created', pruneSessionInterval: false });
    const app = await startApp(store);
    try {
      const res = await new Client(app.url).post('/login');
      // express-session sends the headers before the save fails; the failure reaches next(err).
      await res.text();
      expect((await db.pool.query(`SELECT to_regclass('not_created') AS t`)).rows[0].t).toBeNull();
      await expect(store.get('x')).rejects.toThrow(/does not exist/);
    } finally {
      await app.close();
      await store.close();
    }
  });

  it('takes over from the real connect-pg-simple without logging anyone out', async () => {
    const Legacy = realConnectPgSimple(session);
    const legacy = new Legacy({
      pool: db.pool,
      tableName: 'takeover',
      createTableIfMissing: true,
      pruneSessionInterval: false,
    });
    const before = await startApp(legacy);
    const alice = new Client(before.url);
    try {
      expect(await (await alice.post('/login')).text()).toBe('ok');
    } finally {
      await before.close();
      await legacy.close();
    }
    const sid = rawSid(alice.jar.get('connect.sid')!);
    expect((await db.pool.query('SELECT sid FROM takeover')).rows).toEqual([{ sid }]);

    // Deploy: the same app with pgsession's factory in place of connect-pg-simple.
    const PGStore = connectPgSimple(session);
    const store = new PGStore({ pool: db.pool, tableName: 'takeover', pruneSessionInterval: false });
    const after = await startApp(store);
    try {
      const next = new Client(after.url);
      for (const [k, v] of alice.jar) next.jar.set(k, v);
      expect(await (await next.get('/me')).json()).toEqual({ userId: 42 });
      // The row stays under the raw id, so switching back to connect-pg-simple keeps alice.
      expect((await db.pool.query('SELECT sid, id_hashed, key_hash FROM takeover')).rows).toEqual([
        { sid, id_hashed: false, key_hash: hashId(sid) },
      ]);
      expect(await (await next.get('/me')).json()).toEqual({ userId: 42 });
    } finally {
      await after.close();
      await store.close();
    }
  });

  it("accepts connect-pg-simple's options", async () => {
    await db.pool.query('CREATE SCHEMA IF NOT EXISTS opts');
    const PGStore = connectPgSimple(session);
    const randomizer = vi.fn((delay: number) => delay * 2);
    const errorLog = vi.fn();
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    const store = new PGStore({
      conObject: { connectionString: db.url },
      tableName: 'opts"."sessions', // connect-pg-simple's deprecated schema spelling
      createTableIfMissing: true,
      ttl: 120,
      disableTouch: true,
      pruneSessionInterval: 60,
      pruneSessionRandomizedInterval: randomizer,
      errorLog,
    });
    try {
      expect(warn).toHaveBeenCalledWith(expect.stringMatching(/DEPRECATION WARNING/));
      // As connect-pg-simple: the prune timer starts on first use, not in the constructor.
      expect(randomizer).not.toHaveBeenCalled();
      expect(store.ttl).toBe(120);
      const started = Date.now();
      await store.set('a', { cookie: { originalMaxAge: null } });
      expect(randomizer).toHaveBeenCalledWith(60_000);
      expect(store[kSessionStore].pruning).toBe(true);
      const { rows } = await db.pool.query(
        `SELECT round(extract(epoch FROM expire::timestamptz) * 1000)::float8 AS ms FROM opts.sessions`,
      );
      expect(rows[0].ms).toBeGreaterThanOrEqual(started + 120_000);
      expect(rows[0].ms).toBeLessThan(started + 125_000);
      await store.pruneSessions();
      expect(errorLog).not.toHaveBeenCalled();
    } finally {
      warn.mockRestore();
      await store.close();
    }
    expect(store[kSessionStore].pool.ended).toBe(true);
  });

  it('builds to a CommonJS module that is the factory itself', { timeout: 60_000 }, async () => {
    // Inside the project (git-ignored) so the build's dependencies resolve from node_modules.
    await mkdir(path.join(root, 'node_modules/.cache'), { recursive: true });
    const out = await mkdtemp(path.join(root, 'node_modules/.cache/pgsession-cjs-'));
    const run = promisify(execFile);
    try {
      await run(
        path.join(root, 'node_modules/.bin/tsup'),
        [
          '--no-config',
          'src/stores/postgres/connect-pg-simple.ts',
          '--format',
          'cjs',
          '--dts',
          '--target',
          'node20',
          '--platform',
          'node',
          '--out-dir',
          out,
        ],
        { cwd: root },
      );
      await run(process.execPath, ['scripts/fix-cjs.mjs', out], { cwd: root });
      await run(process.execPath, ['scripts/fix-cjs.mjs', out], { cwd: root }); // idempotent
      const { stdout } = await run(
        process.execPath,
        [
          '-e',
          `const f = require(${JSON.stringify(path.join(out, 'connect-pg-simple.cjs'))});
           const session = require('express-session');
           const S = f(session);
           const s = new S({ conString: 'postgres://127.0.0.1:1/none', pruneSessionInterval: false });
           console.log(typeof f, f.default === f, s instanceof session.Store, S.name);
           s.close();`,
        ],
        { cwd: root },
      );
      expect(stdout.trim()).toBe('function true true PGStore');
      const dts = await readFile(path.join(out, 'connect-pg-simple.d.cts'), 'utf8');
      expect(dts).toMatch(/^export = connectPgSimple;$/m);
      expect(dts).not.toMatch(/as default/);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
});
