/**
 * Database outage under load (issue 5, point 1). A private embedded PostgreSQL (temp data dir,
 * own port) is stopped with a fast shutdown while the demo app serves a light, bounded load:
 *
 * - clients whose sessions this process has cached keep getting 200 on the dashboard (a
 *   read-only page, served from the last-known-good copy);
 * - requests that need the database get 503 + Retry-After (HTML or JSON by Accept); /healthz 503;
 * - no response clears or replaces anyone's session cookie; nothing crashes;
 * - PostgreSQL restarted on the same port: service resumes within 2 s, without restarting the
 *   app, and every user is still logged in with the same cookie.
 *
 * Prints the figures recorded in docs/reliability.md.
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateApp } from '../../app/migrate.js';
import { createPool } from '../../src/db/pool.js';
import { type EmbeddedPostgresHandle, startEmbeddedPostgres } from '../../src/dev/index.js';
import type { CachedPostgresSessionStore } from '../../src/stores/cache/index.js';
import { csrfFrom, loginForm, type RunningApp, startApp } from '../app/harness.js';
import type { TestDatabase } from '../helpers/db.js';
import type { Client } from '../helpers/http.js';
import { sessionSetCookies, sleep } from './support.js';

let root: string;
let dataDir: string;
let server: EmbeddedPostgresHandle | undefined;
let pool: pg.Pool;
let app: RunningApp | undefined;
const poolErrors: Error[] = [];
const crashes: unknown[] = [];
const onCrash = (err: unknown) => crashes.push(err);

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'pgsession-outage-'));
  // As root the server runs as `postgres`, which must be able to enter the folder.
  await chmod(root, 0o755);
  dataDir = path.join(root, 'pg');
  server = await startEmbeddedPostgres({ dataDir, database: 'outage' });
  pool = createPool(server.url, { max: 10, onError: (err) => poolErrors.push(err) });
  await migrateApp(pool);
  process.on('unhandledRejection', onCrash);
  process.on('uncaughtException', onCrash);
}, 120_000);

afterAll(async () => {
  process.off('unhandledRejection', onCrash);
  process.off('uncaughtException', onCrash);
  await app?.close().catch(() => {});
  await pool?.end().catch(() => {});
  await server?.stop().catch(() => {});
  if (root) await rm(root, { recursive: true, force: true });
}, 60_000);

type Kind = 'cached' | 'uncached' | 'anonymous';

interface Observation {
  at: number;
  kind: Kind;
  client: number;
  what: string;
  status: number;
  retryAfter: string | null;
  contentType: string;
  body: string;
  sessionCookies: string[];
  /** The client's session cookie when the request left. */
  sent: string | undefined;
}

interface VirtualClient {
  kind: Kind;
  index: number;
  client: Client;
  cookie?: string;
  csrf?: string;
}

describe('database outage under load', () => {
  it('cached sessions keep working read-only, the rest is 503, nobody is logged out, and it recovers by itself', async () => {
    const db: TestDatabase = { url: server!.url, name: 'outage', pool, drop: async () => {} };
    app = await startApp({ db });
    const store = app.app.sessionMiddleware.store as unknown as CachedPostgresSessionStore;
    store.listener.start();
    expect(await store.listener.waitUntilListening(20_000)).toBe(true);

    // Four users with sessions cached in this process, three logged in on another server
    // (another app instance on the same database) that this one has never seen.
    const clients: VirtualClient[] = [];
    for (let i = 0; i < 4; i++) {
      const user = await app.createUser(`cached${i}@example.com`);
      const client = app.client();
      expect((await loginForm(client, user.email)).status).toBe(303);
      const page = await client.get('/dashboard');
      expect(page.status).toBe(200);
      clients.push({
        kind: 'cached',
        index: i,
        client,
        cookie: client.jar.get('sessionId'),
        csrf: csrfFrom(await page.text()),
      });
    }
    const other = await startApp({ db });
    for (let i = 0; i < 3; i++) {
      const user = await other.createUser(`uncached${i}@example.com`);
      const client = other.client();
      expect((await loginForm(client, user.email)).status).toBe(303);
      const moved = app.client();
      moved.jar.set('sessionId', client.jar.get('sessionId')!);
      clients.push({ kind: 'uncached', index: i, client: moved, cookie: client.jar.get('sessionId') });
    }
    await other.close();
    for (let i = 0; i < 2; i++) clients.push({ kind: 'anonymous', index: i, client: app.client() });
    const cachedBefore = store.stats().entries;
    expect(cachedBefore).toBeGreaterThanOrEqual(4);

    // The load: each client in turn, ~25 requests/s each, bounded in time and count.
    const observations: Observation[] = [];
    let stopLoad = false;
    let uncachedActive = false;
    const deadline = Date.now() + 45_000;
    const loop = async (vc: VirtualClient) => {
      for (let n = 0; n < 2000 && !stopLoad && Date.now() < deadline; n++) {
        let what: string;
        let init: RequestInit & { form?: Record<string, string> } = {};
        if (vc.kind === 'cached') {
          const pick = n % 6;
          if (pick === 4) {
            what = 'GET /api/me';
          } else if (pick === 5) {
            what = 'POST /delete-server';
            init = { form: { serverId: '999999', _csrf: vc.csrf! } };
          } else {
            what = 'GET /dashboard';
          }
        } else if (vc.kind === 'uncached') {
          if (!uncachedActive) {
            await sleep(40);
            continue;
          }
          what = n % 2 ? 'GET /dashboard' : 'GET /api/me';
          if (n % 3 === 0) init = { headers: { accept: 'application/json' } };
        } else {
          what = ['GET /healthz', 'GET /', 'POST /login'][n % 3]!;
          if (what === 'POST /login')
            init = { form: { email: 'cached0@example.com', password: 'wrong password' } };
        }
        const [method, p] = what.split(' ') as [string, string];
        const sent = vc.client.jar.get('sessionId');
        const at = Date.now();
        try {
          const res = await vc.client.request(p, { ...init, method });
          const body = await res.text();
          observations.push({
            at,
            kind: vc.kind,
            client: vc.index,
            what: init.headers ? `${what} (json)` : what,
            status: res.status,
            retryAfter: res.headers.get('retry-after'),
            contentType: res.headers.get('content-type') ?? '',
            body,
            sessionCookies: sessionSetCookies(res),
            sent,
          });
        } catch (err) {
          observations.push({
            at,
            kind: vc.kind,
            client: vc.index,
            what,
            status: 0,
            retryAfter: null,
            contentType: '',
            body: String(err),
            sessionCookies: [],
            sent,
          });
        }
        await sleep(40);
      }
    };
    const load = Promise.all(clients.map(loop));

    await sleep(1500);
    const tStop = Date.now();
    await server!.stop(); // fast shutdown (SIGINT to the postmaster), waits until it has exited
    const tStopped = Date.now();
    uncachedActive = true;
    await sleep(4000);
    const stats = store.stats();
    const tRestart = Date.now();
    server = await startEmbeddedPostgres({ dataDir, database: 'outage', port: server!.port });
    const tRestarted = Date.now();
    await sleep(3000);
    stopLoad = true;
    await load;

    // ---- during the outage (database stopped) ----
    const during = observations.filter((o) => o.at >= tStopped && o.at + 50 < tRestart);
    const inWindow = (o: Observation) => o.at >= tStop && o.at < tRestarted;
    expect(during.length).toBeGreaterThan(50);
    const cachedDashboards = observations.filter(
      (o) => o.kind === 'cached' && o.what === 'GET /dashboard' && inWindow(o),
    );
    expect(cachedDashboards.length).toBeGreaterThan(20);
    for (const o of cachedDashboards) {
      expect(o.status, `${o.what} by cached client ${o.client} at +${o.at - tStop} ms`).toBe(200);
    }
    const degraded = during.filter((o) => o.kind === 'cached' && o.what === 'GET /dashboard');
    expect(degraded.length).toBeGreaterThan(10);
    for (const o of degraded) expect(o.body).toContain('database is temporarily unavailable');

    const needDb = during.filter(
      (o) =>
        o.kind === 'uncached' ||
        o.what === 'GET /api/me' ||
        o.what === 'POST /delete-server' ||
        o.what === 'POST /login' ||
        o.what === 'GET /healthz',
    );
    expect(needDb.length).toBeGreaterThan(20);
    for (const o of needDb) {
      const label = `${o.kind} ${o.what} at +${o.at - tStop} ms`;
      expect(o.status, label).toBe(503);
      expect(o.retryAfter, label).toMatch(/^\d+$/);
      const json = o.what.includes('/api/') || o.what.endsWith('(json)') || o.what === 'GET /healthz';
      if (json) {
        expect(o.contentType, label).toMatch(/application\/json/);
        expect(JSON.parse(o.body), label).toMatchObject(
          o.what === 'GET /healthz' ? { status: 'unavailable' } : { error: 'unavailable' },
        );
      } else {
        expect(o.contentType, label).toMatch(/text\/html/);
        expect(o.body, label).toContain('temporarily unavailable');
      }
      expect(o.body, label).not.toMatch(/ECONN|57P0|\bat \S+ \(|node_modules|stack/i);
    }
    // The landing page needs no database.
    for (const o of during.filter((x) => x.what === 'GET /')) expect(o.status).toBe(200);

    // ---- cookies: never cleared, never replaced, by any response ----
    for (const o of observations) {
      for (const line of o.sessionCookies) {
        const value = line.split(';')[0]!.slice('sessionId='.length);
        const label = `${o.kind} ${o.what} at ${o.at - tStop} ms: ${line}`;
        // While the database is down, nothing is re-sent at all (read-only: nothing was stored).
        expect(during.includes(o), `no Set-Cookie while the database is down: ${label}`).toBe(false);
        expect(value, label).toBe(o.sent);
        expect(line, label).not.toMatch(/expires=thu, 01 jan 1970|max-age=0/i);
      }
    }

    // ---- recovery: without restarting the app ----
    const after = observations.filter((o) => o.at >= tRestarted);
    const firstOk = (pred: (o: Observation) => boolean) =>
      after.filter((o) => pred(o) && o.status === 200).sort((a, b) => a.at - b.at)[0];
    const firstDbOk = firstOk((o) => o.what.startsWith('GET /api/me') || o.what === 'GET /healthz');
    expect(firstDbOk, 'a request that needs the database succeeded after the restart').toBeDefined();
    const recoveryMs = firstDbOk!.at - tRestarted;
    expect(recoveryMs).toBeLessThan(2000);
    // Every kind of request that needs the database works again within 2 s.
    for (const what of ['GET /api/me', 'GET /healthz']) {
      const late = after.filter((o) => o.what.startsWith(what) && o.at - tRestarted >= 2000);
      expect(late.length, what).toBeGreaterThan(0);
      for (const o of late)
        expect(o.status, `${o.kind} ${what} at +${o.at - tRestarted} ms after restart`).toBe(200);
    }
    for (const o of after.filter((x) => x.at - tRestarted >= 2000 && x.kind !== 'anonymous')) {
      if (o.what === 'POST /delete-server') expect(o.status).toBe(303);
      else expect(o.status, `${o.kind} ${o.what}`).toBe(200);
    }

    // ---- nobody was logged out: same cookie, same user ----
    for (const vc of clients.filter((c) => c.kind !== 'anonymous')) {
      expect(vc.client.jar.get('sessionId')).toBe(vc.cookie);
      const me = await vc.client.get('/api/me');
      expect(me.status).toBe(200);
      expect(((await me.json()) as { email: string }).email).toMatch(
        vc.kind === 'cached' ? /^cached/ : /^uncached/,
      );
    }
    // The listener is back and the cache serves again (the copies were dropped).
    expect(await store.listener.waitUntilListening(10_000)).toBe(true);
    expect(store.stats()).toMatchObject({ listening: true, lastKnownGood: 0 });

    expect(crashes).toEqual([]);
    const figures = {
      outageMs: tRestart - tStopped,
      stopMs: tStopped - tStop,
      requestsDuringOutage: during.length,
      servedDuringOutage: during.filter((o) => o.status === 200).length,
      readOnlyDashboards: degraded.length,
      answered503: during.filter((o) => o.status === 503).length,
      otherStatuses: during.filter((o) => o.status !== 200 && o.status !== 503).length,
      staleServed: stats.staleServed,
      restartMs: tRestarted - tRestart,
      recoveryMs,
      poolErrorEvents: poolErrors.length,
    };
    console.log(`outage figures: ${JSON.stringify(figures)}`);
    expect(figures.otherStatuses).toBe(0);
  }, 90_000);
});
