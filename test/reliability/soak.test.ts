/**
 * Soak (issue 5, point 7): a bounded mixed load — logins, dashboards, API reads, logouts and
 * "log out everywhere else" revocations — on two app processes sharing one database, for 60 s
 * (30 s when `CI` is set; `PGSESSION_SOAK_SECONDS` overrides). Each virtual user owns one
 * account and two devices, so every answer is predictable:
 *
 * - zero errors: no network error, no 5xx, no answer that contradicts the model (a live
 *   session refused, or a revoked one still accepted 500 ms after its revocation);
 * - memory flat: each process's RSS at the end is within 10% of its RSS after the warm-up;
 * - no leaked connections: at most pool size + listener per process while it runs, none after.
 *
 * Prints the figures recorded in docs/reliability.md.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { csrfFrom, migratedDatabase } from '../app/harness.js';
import type { TestDatabase } from '../helpers/db.js';
import { Client } from '../helpers/http.js';
import {
  type AppProcess,
  appConnections,
  createUsers,
  killAll,
  PASSWORD,
  rssOf,
  sleep,
  startAppProcess,
  waitUntil,
} from './support.js';

const SECONDS = Number(process.env.PGSESSION_SOAK_SECONDS) || (process.env.CI ? 30 : 60);
/** RSS is compared with its value after this much of the run (allocator arenas, JIT, caches warm). */
const WARMUP_SECONDS = Math.max(10, Math.round(SECONDS / 4));
const USERS = 6;
/** Pause between two requests of one virtual user: ~20 requests/s each at most. */
const THINK_MS = 50;
/** Pool size (app/main.ts) + the listener, per process. */
const CONNECTIONS_PER_APP = 10 + 1;

let db: TestDatabase;
let apps: AppProcess[] = [];

beforeAll(async () => {
  db = await migratedDatabase();
  await createUsers(
    db.pool,
    Array.from({ length: USERS }, (_, i) => `soak${i}@example.com`),
  );
  apps = await Promise.all([0, 1].map(() => startAppProcess({ DATABASE_URL: db.url })));
}, 120_000);

afterAll(async () => {
  await killAll();
  await db?.drop();
}, 60_000);

interface Device {
  client: Client | null;
  csrf: string;
}

describe(`soak: ${SECONDS} s of mixed load on two processes`, () => {
  it(
    'zero errors, flat memory, no leaked connections',
    async () => {
      const errors: string[] = [];
      const counts: Record<string, number> = {};
      let requests = 0;
      const count = (what: string) => {
        counts[what] = (counts[what] ?? 0) + 1;
        requests++;
      };
      const anyApp = () => apps[Math.floor(Math.random() * apps.length)]!;
      const start = Date.now();
      const end = start + SECONDS * 1000;
      const maxRequests = SECONDS * 400;

      /** One request on a random process; records and judges it. */
      const request = async (
        device: Device,
        what: string,
        init: RequestInit & { form?: Record<string, string> },
        expected: number[],
      ): Promise<Response | null> => {
        count(what);
        const app = anyApp();
        const client = device.client!;
        const [method, path] = what.split(' ') as [string, string];
        const onApp = new Client(app.url);
        for (const [k, v] of client.jar) onApp.jar.set(k, v);
        try {
          const res = await onApp.request(path, { ...init, method });
          // The device keeps whatever cookies the answer set or cleared.
          client.jar.clear();
          for (const [k, v] of onApp.jar) client.jar.set(k, v);
          if (!expected.includes(res.status)) {
            errors.push(`${what} on app ${apps.indexOf(app)}: ${res.status}, expected ${expected.join('/')}`);
          }
          return res;
        } catch (err) {
          errors.push(`${what} on app ${apps.indexOf(app)}: ${(err as Error).message}`);
          return null;
        }
      };

      const login = async (device: Device, email: string) => {
        device.client = new Client(apps[0]!.url);
        const res = await request(device, 'POST /login', { form: { email, password: PASSWORD } }, [303]);
        if (res?.status !== 303) {
          device.client = null;
          return;
        }
        const page = await request(device, 'GET /dashboard', {}, [200]);
        device.csrf = page?.status === 200 ? csrfFrom(await page.text()) : '';
      };

      /** A session that was just ended must be refused on every process within 500 ms. */
      const mustBeRefused = async (cookie: string, what: string) => {
        const since = Date.now();
        for (const app of apps) {
          const probe = new Client(app.url);
          probe.jar.set('sessionId', cookie);
          let refused = false;
          while (!refused && Date.now() - since < 500) {
            count('GET /api/me (ended)');
            const res = await probe.get('/api/me').catch(() => null);
            if (res) await res.arrayBuffer();
            refused = res?.status === 401;
            if (!refused) await sleep(10);
          }
          if (!refused) errors.push(`${what}: still accepted on app ${apps.indexOf(app)} after 500 ms`);
        }
      };

      const virtualUser = async (i: number) => {
        const email = `soak${i}@example.com`;
        const devices: [Device, Device] = [
          { client: null, csrf: '' },
          { client: null, csrf: '' },
        ];
        // Both devices log in at once: a burst of concurrent logins (argon2id) at the start.
        await Promise.all(devices.map((device) => login(device, email)));
        while (Date.now() < end && requests < maxRequests) {
          const d = Math.random() < 0.5 ? 0 : 1;
          const device = devices[d]!;
          const other = devices[1 - d]!;
          if (!device.client) {
            await login(device, email);
          } else {
            const roll = Math.random();
            if (roll < 0.6) {
              const res = await request(device, 'GET /dashboard', {}, [200]);
              if (res) await res.arrayBuffer();
            } else if (roll < 0.9) {
              const res = await request(device, 'GET /api/me', {}, [200]);
              if (res) await res.arrayBuffer();
            } else if (roll < 0.95) {
              const cookie = device.client.jar.get('sessionId')!;
              const res = await request(device, 'POST /logout', { form: { _csrf: device.csrf } }, [303]);
              if (res) await res.arrayBuffer();
              device.client = null;
              await mustBeRefused(cookie, 'logout');
            } else if (other.client) {
              const cookie = other.client.jar.get('sessionId')!;
              const res = await request(
                device,
                'POST /account/sessions/revoke-others',
                { form: { _csrf: device.csrf } },
                [303],
              );
              if (res) await res.arrayBuffer();
              other.client = null;
              await mustBeRefused(cookie, 'revoke-others');
            }
          }
          await sleep(THINK_MS);
        }
      };

      // Samples every second while the load runs: RSS of each process, connection counts.
      // RSS swings with the garbage collector and argon2id's 19 MiB buffers (mapped and unmapped
      // per hash, as `npm start` runs the demo), so each figure is the mean over 5 s: right after
      // the warm-up, and the last 5 s of the run.
      const samples: Array<{ at: number; rss: number[] }> = [];
      let maxConnections = 0;
      const sampler = (async () => {
        while (Date.now() < end) {
          await sleep(1000);
          samples.push({ at: Date.now() - start, rss: apps.map((a) => rssOf(a.pid)) });
          maxConnections = Math.max(maxConnections, await appConnections(db));
        }
      })();
      await Promise.all([...Array.from({ length: USERS }, (_, i) => virtualUser(i)), sampler]);
      const elapsed = (Date.now() - start) / 1000;
      const meanRss = (from: number, to: number) =>
        apps.map((_, i) => {
          const window = samples.filter((x) => x.at >= from && x.at < to).map((x) => x.rss[i]!);
          return window.reduce((a, b) => a + b, 0) / window.length;
        });
      const warmRss = meanRss(WARMUP_SECONDS * 1000, (WARMUP_SECONDS + 5) * 1000);
      const endRss = meanRss(elapsed * 1000 - 5500, Number.POSITIVE_INFINITY);
      const rssSeries = apps.map((_, i) =>
        samples.filter((_x, n) => n % 5 === 4).map((x) => +(x.rss[i]! / 2 ** 20).toFixed(1)),
      );
      const afterLoad = await appConnections(db);

      const stops = await Promise.all(apps.map((a) => a.stop()));
      const leftAfterStop = (await waitUntil(async () => (await appConnections(db)) === 0, 5000, 100))
        ? 0
        : await appConnections(db);

      const figures = {
        seconds: Math.round(elapsed),
        requests,
        requestsPerSecond: Math.round(requests / elapsed),
        errors: errors.length,
        counts,
        rssMiB: {
          afterWarmup: warmRss.map((r) => +(r / 2 ** 20).toFixed(1)),
          atEnd: endRss.map((r) => +(r / 2 ** 20).toFixed(1)),
          change: endRss.map((r, i) => `${(((r - warmRss[i]!) / warmRss[i]!) * 100).toFixed(1)}%`),
          every5s: rssSeries,
        },
        connections: {
          max: maxConnections,
          afterLoad,
          afterStop: leftAfterStop,
          limit: CONNECTIONS_PER_APP * apps.length,
        },
      };
      console.log(`soak figures: ${JSON.stringify(figures)}`);
      if (errors.length > 0) console.log(`soak errors (first 10): ${JSON.stringify(errors.slice(0, 10))}`);

      expect(errors.slice(0, 20)).toEqual([]);
      expect(requests).toBeGreaterThan(SECONDS * 20);
      expect(counts['POST /logout'] ?? 0).toBeGreaterThan(0);
      expect(counts['POST /account/sessions/revoke-others'] ?? 0).toBeGreaterThan(0);
      for (let i = 0; i < apps.length; i++) expect(endRss[i]!).toBeLessThanOrEqual(warmRss[i]! * 1.1);
      expect(maxConnections).toBeLessThanOrEqual(CONNECTIONS_PER_APP * apps.length);
      expect(afterLoad).toBeLessThanOrEqual(CONNECTIONS_PER_APP * apps.length);
      expect(leftAfterStop).toBe(0);
      for (const s of stops) expect(s).toEqual({ code: 0, signal: null });
    },
    (SECONDS + 120) * 1000,
  );
});
