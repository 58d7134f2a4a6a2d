/**
 * Concurrent requests on one session (issue 5, point 5), at the HTTP level: two test apps
 * ("servers", each with its own session cache) on one database, whose routes change session
 * keys after a delay, so the requests overlap and their commit order is known.
 *
 * - Two requests changing different keys both keep their change (key-level merge).
 * - Two changes to the same key: the later commit wins (docs/reliability.md).
 * - A destroy always wins over a concurrent save: no resurrection, whichever commits first.
 */
import http from 'node:http';
import { isDeepStrictEqual } from 'node:util';
import express from 'express';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashId } from '../../src/core/id.js';
import { unsign } from '../../src/core/signature.js';
import session, { kSessionStore } from '../../src/index.js';
import type { CachedPostgresSessionStore } from '../../src/stores/cache/index.js';
import { PgStore } from '../../src/stores/postgres/index.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { listen } from '../helpers/http.js';
import { sleep } from './support.js';

const SECRET = 'test-secret-0123456789-abcdefghijklmnopqrstuvwxyz';
let db: TestDatabase;
const servers: Array<{ url: string; close(): Promise<void>; store: { close(): Promise<void> } }> = [];

function delayOf(value: unknown): number {
  const n = Number(value);
  return Number.isFinite(n) ? Math.min(Math.max(n, 0), 2000) : 0;
}

/**
 * Every committed update, with the row version it produced: versions are bumped by each data
 * write in the statement that makes it, so they give the commit order exactly (timing does not).
 */
const commits: Array<{ key: string; set: Record<string, unknown>; version: number }> = [];

async function startServer() {
  const store = new PgStore({ pool: db.pool, pruneSessionInterval: false });
  const face = store[kSessionStore];
  const update = face.update.bind(face);
  face.update = async (key, change) => {
    const record = await update(key, change);
    if (record) commits.push({ key, set: change.set, version: record.version });
    return record;
  };
  const app = express();
  app.use(
    session({
      secret: SECRET,
      name: 'sid',
      store,
      resave: false,
      saveUninitialized: false,
      rolling: true,
      idleTimeout: '1h',
    }),
  );
  app.get('/start', (req, res) => {
    req.session.base = 'yes';
    res.send('started');
  });
  app.get('/set', async (req, res) => {
    await sleep(delayOf(req.query.delay));
    req.session[String(req.query.key)] = String(req.query.value);
    res.send('set');
  });
  app.get('/destroy', async (req, res, next) => {
    await sleep(delayOf(req.query.delay));
    req.session.destroy((err) => (err ? next(err) : res.send('destroyed')));
  });
  app.get('/get', (req, res) => {
    const { cookie: _cookie, ...data } = req.session as unknown as Record<string, unknown>;
    res.json(data);
  });
  const server = await listen(http.createServer(app));
  const entry = { url: server.url, close: server.close, store };
  servers.push(entry);
  return entry;
}

beforeAll(async () => {
  db = await createTestDatabase();
  await startServer();
  await startServer();
  // Each store's listener is up before the tests start (they read through until then).
  for (const s of servers) {
    const { listener } = (s.store as unknown as Record<symbol, CachedPostgresSessionStore>)[kSessionStore]!;
    listener.start();
    expect(await listener.waitUntilListening(20_000)).toBe(true);
  }
}, 60_000);

afterAll(async () => {
  for (const s of servers) {
    await s.close();
    await s.store.close();
  }
  await db?.drop();
});

async function login(): Promise<string> {
  const res = await fetch(`${servers[0]!.url}/start`);
  return res.headers.getSetCookie()[0]!.split(';')[0]!;
}

function call(server: number, path: string, cookie: string): Promise<Response> {
  return fetch(`${servers[server]!.url}${path}`, { headers: { cookie } });
}

async function stored(cookie: string): Promise<Record<string, unknown> | null> {
  const raw = decodeURIComponent(cookie.slice('sid='.length));
  const id = unsign(raw.slice(2), [SECRET]);
  if (!id) throw new Error('cookie does not verify');
  const { rows } = await db.pool.query<{ sess: Record<string, unknown> }>(
    'SELECT sess FROM session WHERE sid = $1',
    [hashId(id)],
  );
  if (!rows[0]) return null;
  const { cookie: _c, ...data } = rows[0].sess;
  return data;
}

/**
 * What the servers say once the other server's cache has heard of the last commit: a
 * notification takes milliseconds, so this polls for up to 1 s and returns the last answer.
 */
async function seenSettled(cookie: string, want: unknown): Promise<Array<Record<string, unknown> | null>> {
  const deadline = Date.now() + 1000;
  for (;;) {
    const now = await seen(cookie);
    if (isDeepStrictEqual(now, want) || Date.now() > deadline) return now;
    await sleep(20);
  }
}

/** The updates committed for a cookie's session, in commit order. */
function committed(cookie: string) {
  const raw = decodeURIComponent(cookie.slice('sid='.length));
  const key = hashId(unsign(raw.slice(2), [SECRET]) as string);
  return commits.filter((c) => c.key === key).sort((a, b) => a.version - b.version);
}

/** What each server now says the session holds (null: anonymous). */
async function seen(cookie: string): Promise<Array<Record<string, unknown> | null>> {
  return Promise.all(
    servers.map(async (_s, i) => {
      const data = (await (await call(i, '/get', cookie)).json()) as Record<string, unknown>;
      return Object.keys(data).length === 0 ? null : data;
    }),
  );
}

describe('two requests on one session at the same time', () => {
  it('changing different keys: both changes are kept (same server and across servers)', async () => {
    for (const [first, second] of [
      [0, 0],
      [0, 1],
    ] as const) {
      const cookie = await login();
      const [a, b] = await Promise.all([
        call(first, '/set?key=a&value=1&delay=150', cookie),
        call(second, '/set?key=b&value=2&delay=50', cookie),
      ]);
      expect([a.status, b.status]).toEqual([200, 200]);
      const expected = { base: 'yes', a: '1', b: '2' };
      expect(await stored(cookie)).toEqual(expected);
      expect(await seenSettled(cookie, [expected, expected])).toEqual([expected, expected]);
    }
  });

  it('changing the same key: the later commit wins, whichever request started first', async () => {
    for (const [d1, d2] of [
      [50, 250],
      [250, 50],
    ] as const) {
      const cookie = await login();
      await Promise.all([
        call(0, `/set?key=k&value=first&delay=${d1}`, cookie),
        call(1, `/set?key=k&value=second&delay=${d2}`, cookie),
      ]);
      const order = committed(cookie).filter((c) => 'k' in c.set);
      expect(order).toHaveLength(2);
      const winner = order.at(-1)!.set.k;
      expect((await stored(cookie))?.k).toBe(winner);
      const want = (await stored(cookie))!;
      expect(await seenSettled(cookie, [want, want])).toEqual([want, want]);
    }
  });

  it('a destroy wins over a concurrent save, whichever commits first: no resurrection', async () => {
    for (const [saveDelay, destroyDelay] of [
      [250, 50], // the save commits after the destroy: it must not bring the session back
      [50, 250], // the save commits first, then the destroy
    ]) {
      for (const [saveOn, destroyOn] of [
        [0, 0],
        [1, 0],
      ]) {
        const cookie = await login();
        expect((await call(saveOn!, '/get', cookie)).status).toBe(200); // cached where it saves
        const [saved, destroyed] = await Promise.all([
          call(saveOn!, `/set?key=late&value=x&delay=${saveDelay}`, cookie),
          call(destroyOn!, `/destroy?delay=${destroyDelay}`, cookie),
        ]);
        expect(destroyed.status).toBe(200);
        expect(saved.status).toBe(200);
        // The late save never hands out a new session: it deletes the cookie, or (when it
        // committed before the destroy) re-sends the same one.
        for (const line of saved.headers.getSetCookie()) {
          if (!line.startsWith('sid=')) continue;
          if (line.split(';')[0] !== cookie) expect(line).toMatch(/^sid=;.*expires=thu, 01 jan 1970/i);
        }
        expect(await stored(cookie)).toBeNull();
        expect(await seenSettled(cookie, [null, null])).toEqual([null, null]);
      }
    }
    expect(
      Number(
        (await db.pool.query('SELECT count(*) AS n FROM session WHERE sess::text LIKE $1', ['%"late"%']))
          .rows[0].n,
      ),
    ).toBe(0);
  });

  it('property: any mix of overlapping changes and at most one destroy, on either server, ends as the rules say', async () => {
    const op = fc.record({
      server: fc.integer({ min: 0, max: 1 }),
      key: fc.constantFrom('a', 'b', 'c'),
      slot: fc.integer({ min: 0, max: 5 }),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(op, { minLength: 1, maxLength: 4, selector: (o) => o.slot }),
        fc.option(
          fc.record({ server: fc.integer({ min: 0, max: 1 }), slot: fc.integer({ min: 0, max: 5 }) }),
          {
            nil: undefined,
          },
        ),
        async (sets, destroy) => {
          // Delays make the requests overlap; the commit order is read from the versions.
          const used = new Set(sets.map((s) => s.slot));
          if (destroy && used.has(destroy.slot)) return;
          const cookie = await login();
          await Promise.all([
            ...sets.map((s, i) =>
              call(s.server, `/set?key=${s.key}&value=v${i}&delay=${20 + s.slot * 60}`, cookie),
            ),
            ...(destroy ? [call(destroy.server, `/destroy?delay=${20 + destroy.slot * 60}`, cookie)] : []),
          ]);
          if (destroy) {
            expect(await stored(cookie)).toBeNull();
            expect(await seenSettled(cookie, [null, null])).toEqual([null, null]);
            return;
          }
          // Each key holds the value of the last commit that set it.
          const expected: Record<string, unknown> = { base: 'yes' };
          const order = committed(cookie);
          expect(order).toHaveLength(sets.length);
          for (const c of order) Object.assign(expected, c.set);
          delete expected.cookie;
          expect(await stored(cookie)).toEqual(expected);
          expect(await seenSettled(cookie, [expected, expected])).toEqual([expected, expected]);
        },
      ),
      { numRuns: 12 },
    );
  }, 60_000);
});
