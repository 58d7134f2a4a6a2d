/**
 * `npm start`: the demo app. Opens the database (DATABASE_URL, or the embedded PostgreSQL in
 * .data/postgres), migrates it, seeds demo accounts on first start, listens, and shuts down
 * gracefully on SIGINT/SIGTERM. See docs/demo-app.md.
 */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { describeTarget } from '../cli/errors.js';
import { createPool, describeError, isDatabaseUnavailable } from '../src/db/index.js';
import { type Database, openDatabase } from '../src/dev/index.js';
import { ConfigError } from '../src/index.js';
import { startBanner } from './banner.js';
import { type AppConfig, loadConfig } from './config.js';
import { createApp } from './create-app.js';
import { demoAccountsPresent, migrateApp, type SeededAccount, seedDemoData } from './migrate.js';
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

  let db: Database;
  try {
    db = await openDatabase({ onLog: (line) => logger.info({ component: 'embedded-postgres' }, line) });
  } catch (err) {
    fail(`cannot start the embedded PostgreSQL in .data/postgres: ${describeError(err)}`);
  }
  const target = describeTarget(db.url);
  const database = config.database ?? { poolMax: 10 };
  const pool = createPool(db.url, {
    max: database.poolMax,
    preparedStatements: database.preparedStatements,
    statementTimeout: database.statementTimeout,
    // One line: node-postgres attaches the whole pg.Client to a pool error.
    onError: (err) => logger.warn(`idle PostgreSQL client error (${target}): ${describeError(err)}`),
  });

  // The database may be down, or refuse this role, at start-up: say so in one line and serve
  // 503 + Retry-After until it can be migrated, retrying in the background (docs/demo-app.md).
  let prepared: Promise<SeededAccount[]> | undefined;
  let ready = false;
  const prepare = async (): Promise<SeededAccount[]> => {
    const applied = await migrateApp(pool);
    if (applied.length > 0) logger.info({ applied }, 'migrations applied');
    await app.auth.ready();
    const seeded = await seedDemoData(pool, app.auth.users);
    ready = true;
    return seeded;
  };
  const app = createApp({ pool, config, logger });
  let seeded: SeededAccount[] = [];
  try {
    seeded = await prepare();
  } catch (err) {
    if (!isDatabaseUnavailable(err)) {
      await pool.end().catch(() => {});
      await db.close().catch(() => {});
      fail(`cannot prepare the database ${target}: ${describeError(err)}`);
    }
    logger.error(`database unavailable at ${target}: ${describeError(err)}; answering 503 until it is back`);
    const retry = (): void => {
      prepared = prepare().then(
        (accounts) => {
          logger.info(`database available at ${target}`);
          if (accounts.length > 0) process.stdout.write(startBanner(url, accounts, []));
          return accounts;
        },
        (again: unknown) => {
          if (!isDatabaseUnavailable(again))
            logger.error(`cannot prepare the database ${target}: ${describeError(again)}`);
          const timer = setTimeout(retry, 2_000);
          timer.unref();
          return [];
        },
      );
    };
    const timer = setTimeout(retry, 2_000);
    timer.unref();
  }
  let url = '';
  // Until the database is prepared every request is a 503 with Retry-After (probes included).
  const handler: typeof app = ((req, res, next) => {
    if (ready) return app(req, res, next);
    res.statusCode = 503;
    res.setHeader('Retry-After', '5');
    res.setHeader('Content-Type', 'text/plain; charset=utf-8');
    res.end(
      'The service is temporarily unavailable: its database cannot be reached. Please try again in a moment.\n',
    );
  }) as typeof app;
  Object.setPrototypeOf(handler, app);

  // Timeouts and a per-client connection cap against slow clients (app/server.ts).
  const server = createDemoServer(handler, config.server ?? DEFAULT_SERVER_LIMITS, app.get('trust proxy fn'));
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
      await prepared?.catch(() => {});
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
  url = `http://${host}:${port}`;
  logger.info(
    { port, host: config.host, embeddedDatabase: db.embedded, database: target, ready },
    'listening',
  );
  const existing =
    !ready || seeded.length > 0 ? [] : await demoAccountsPresent(app.auth.users).catch(() => []);
  process.stdout.write(startBanner(url, seeded, existing));
}

main().catch((err: unknown) => {
  process.stderr.write(`pgsession demo: failed to start: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
