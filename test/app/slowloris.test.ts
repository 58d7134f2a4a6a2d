/**
 * The demo app as `npm start` runs it, under a slowloris attack (issue 12, item 8): 300
 * sockets from one client that send a request line and then trickle header lines. Before,
 * all 300 stayed open for 15 s and more (Node's defaults: 60 s for headers, checked every 30 s,
 * no per-client cap).
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from '../helpers/db.js';
import { type ChildApp, spawnApp } from '../security/support.js';
import { migratedDatabase, TEST_SECRET } from './harness.js';

let db: TestDatabase;
let app: ChildApp | undefined;

beforeAll(async () => {
  db = await migratedDatabase();
  app = await spawnApp({ DATABASE_URL: db.url, SESSION_SECRET: TEST_SECRET, LOG_LEVEL: 'warn' });
});
afterAll(async () => {
  await app?.stop();
  await db?.drop();
});

describe('npm start against slow clients', () => {
  it('300 slowloris sockets do not stay open: capped per client at once, the rest cut at the headers timeout', async () => {
    const { port } = new URL(app!.url);
    const sockets: net.Socket[] = [];
    let closed = 0;
    await Promise.all(
      Array.from(
        { length: 300 },
        () =>
          new Promise<void>((resolve) => {
            const socket = net.connect({ host: '127.0.0.1', port: Number(port) }, () => {
              socket.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n');
              resolve();
            });
            socket.on('error', () => {});
            socket.on('close', () => {
              closed++;
              resolve();
            });
            sockets.push(socket);
          }),
      ),
    );
    // One more header line a second per socket, never the blank line that ends the headers.
    const trickle = setInterval(() => {
      for (const s of sockets) if (!s.destroyed) s.write(`X-Slow-${Date.now()}: 1\r\n`);
    }, 1_000);
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    try {
      await sleep(1_500);
      // Beyond the per-client cap (16 by default), sockets are closed as they arrive.
      expect(closed).toBeGreaterThanOrEqual(300 - 16);
      // The ones within the cap are cut when the headers timeout (10 s) passes, however
      // steadily they trickle.
      const deadline = Date.now() + 12_000;
      while (closed < 300 && Date.now() < deadline) await sleep(200);
      expect(closed).toBe(300);
      // A normal client is still served.
      const res = await fetch(`${app!.url}/healthz`);
      expect(res.status).toBe(200);
    } finally {
      clearInterval(trickle);
      for (const s of sockets) s.destroy();
    }
  }, 30_000);
});
