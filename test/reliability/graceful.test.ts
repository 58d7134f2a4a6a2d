/**
 * Graceful shutdown (issue 5, point 3): SIGTERM to `app/main.ts` while requests are in flight.
 * It stops accepting connections, the requests in flight complete (and their sessions are
 * committed), the activity that touch throttling deferred is written (`last_active_at` is the
 * last request's), the listener and the pool are closed, and it exits 0 in bounded time.
 *
 * Requests are held "in flight" deterministically: their headers and half their body are sent
 * before the signal, the rest after it.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { csrfFrom, migratedDatabase } from '../app/harness.js';
import type { TestDatabase } from '../helpers/db.js';
import { Client } from '../helpers/http.js';
import {
  appConnections,
  createUsers,
  killAll,
  PASSWORD,
  parseRaw,
  type RawResponse,
  sleep,
  startAppProcess,
  waitUntil,
} from './support.js';

let db: TestDatabase;

beforeAll(async () => {
  db = await migratedDatabase();
  await createUsers(db.pool, ['active@example.com', 'late1@example.com', 'late2@example.com']);
}, 60_000);

afterAll(async () => {
  await killAll();
  await db?.drop();
});

/** A POST whose body arrives in two halves: `finish()` sends the second. */
function slowPost(port: number, path: string, body: string, headers: Record<string, string> = {}) {
  const socket = net.connect(port, '127.0.0.1');
  const chunks: Buffer[] = [];
  const response = new Promise<RawResponse>((resolve) => {
    socket.on('data', (d) => chunks.push(d));
    socket.on('error', () => {});
    socket.on('close', () => resolve(parseRaw(Buffer.concat(chunks).toString('latin1'))));
  });
  const head = [
    `POST ${path} HTTP/1.1`,
    'Host: 127.0.0.1',
    'Content-Type: application/x-www-form-urlencoded',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Connection: close',
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    '',
    '',
  ].join('\r\n');
  const half = Math.floor(body.length / 2);
  const sent = new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.write(head + body.slice(0, half), () => resolve());
  });
  return { sent, response, finish: () => socket.write(body.slice(half)) };
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

async function activeMs(userEmail: string): Promise<number[]> {
  const { rows } = await db.pool.query<{ ms: number }>(
    `SELECT extract(epoch from s.last_active_at) * 1000 AS ms
       FROM session s JOIN users u ON u.id::text = s.user_id WHERE u.email = $1`,
    [userEmail],
  );
  return rows.map((r) => Number(r.ms));
}

describe('SIGTERM with requests in flight', () => {
  it('stops accepting, finishes what is in flight, writes deferred activity, closes everything, exits 0', async () => {
    const app = await startAppProcess({ DATABASE_URL: db.url, LOG_LEVEL: 'info' });
    const client = new Client(app.url);
    expect(
      (await client.post('/login', { form: { email: 'active@example.com', password: PASSWORD } })).status,
    ).toBe(303);
    const [loginActive] = await activeMs('active@example.com');
    // A later request: touch throttling (1 minute with the default 7-day idle timeout) defers it.
    await sleep(1200);
    const beforeDashboard = Date.now();
    const page = await client.get('/dashboard');
    expect(page.status).toBe(200);
    const csrf = csrfFrom(await page.text());
    expect(await activeMs('active@example.com')).toEqual([loginActive]);

    // In flight at the signal: two logins and a state change by the active user.
    const cookie = `sessionId=${client.jar.get('sessionId')}`;
    const inFlight = [
      slowPost(
        app.port,
        '/login',
        new URLSearchParams({ email: 'late1@example.com', password: PASSWORD }).toString(),
      ),
      slowPost(
        app.port,
        '/login',
        new URLSearchParams({ email: 'late2@example.com', password: PASSWORD }).toString(),
      ),
      slowPost(
        app.port,
        '/delete-server',
        new URLSearchParams({ serverId: '12345', _csrf: csrf }).toString(),
        {
          Cookie: cookie,
        },
      ),
    ];
    await Promise.all(inFlight.map((r) => r.sent));
    await sleep(500); // the server has read their headers
    const tTerm = Date.now();
    app.child.kill('SIGTERM');

    // No new connections (the listening socket is closed at once).
    expect(await waitUntil(() => refused(app.port), 3000, 50)).toBe(true);
    expect(app.child.exitCode).toBeNull(); // still finishing the requests in flight
    await sleep(200);
    const beforeLast = Date.now();
    for (const r of inFlight) r.finish();
    const responses = await Promise.all(inFlight.map((r) => r.response));
    for (const res of responses.slice(0, 2)) {
      expect(res.status).toBe(303);
      expect(res.headers.find(([k]) => k === 'location')?.[1]).toBe('/dashboard');
      expect(res.headers.some(([k, v]) => k === 'set-cookie' && v.startsWith('sessionId=s%3A'))).toBe(true);
    }
    expect(responses[2]!.status).toBe(303);

    const { code, signal } = await app.exited;
    const shutdownMs = Date.now() - tTerm;
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(shutdownMs).toBeLessThan(10_000);
    expect(app.output()).toMatch(/"msg":"stopped"/);

    // The logins that were in flight were committed before their answer.
    expect(await activeMs('late1@example.com')).toHaveLength(1);
    expect(await activeMs('late2@example.com')).toHaveLength(1);
    // Deferred activity was written on the way out: the row shows the last request.
    const [lastActive] = await activeMs('active@example.com');
    expect(lastActive).toBeGreaterThanOrEqual(beforeLast - 5);
    expect(lastActive).toBeGreaterThan(beforeDashboard);

    // Pool and listener closed: the app left no connection behind (the test's own pool has
    // the same application_name; it is idle now, so its size is stable).
    expect(await waitUntil(async () => (await appConnections(db)) === 0, 5000, 100)).toBe(true);
    console.log(`graceful figures: ${JSON.stringify({ shutdownMs, inFlight: inFlight.length })}`);
  }, 90_000);
});
