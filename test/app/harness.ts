import http from 'node:http';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { AppConfig } from '../../app/config.js';
import { type CreateAppOptions, createApp, type DemoApp } from '../../app/create-app.js';
import { migrateApp } from '../../app/migrate.js';
import type { Role } from '../../src/auth/index.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { Client, listen } from '../helpers/http.js';

export const TEST_SECRET = 'test-secret-0123456789abcdefghijklmnopqrstuvwxyz';
export const PASSWORD = 'correct horse battery staple';

export function testConfig(overrides: Partial<AppConfig> = {}): AppConfig {
  return {
    databaseUrl: undefined,
    port: 0,
    host: '127.0.0.1',
    sessionSecrets: [TEST_SECRET],
    generatedSecretFile: null,
    idleTimeout: 7 * 86_400_000,
    absoluteTimeout: 30 * 86_400_000,
    production: false,
    cookieName: 'sessionId',
    secureCookies: false,
    trustProxy: 'loopback',
    ...overrides,
  };
}

/** Log lines the app wrote (pino JSON), for audit assertions. */
export class LogCapture {
  readonly lines: string[] = [];
  readonly stream = new Writable({
    write: (chunk: Buffer, _enc, cb) => {
      this.lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      cb();
    },
  });
  get text(): string {
    return this.lines.join('\n');
  }
  events(): Array<Record<string, unknown>> {
    return this.lines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((o) => typeof o.event === 'string');
  }
}

export interface RunningApp {
  url: string;
  app: DemoApp;
  db: TestDatabase;
  logs: LogCapture;
  client(headers?: Record<string, string>): Client;
  createUser(email: string, role?: Role, password?: string): Promise<{ id: number; email: string }>;
  /** Another app instance ("server") on the same database. */
  close(): Promise<void>;
}

/** A migrated test database, shared by the apps of one test file. */
export async function migratedDatabase(): Promise<TestDatabase> {
  const db = await createTestDatabase();
  await migrateApp(db.pool);
  return db;
}

/**
 * Start the demo app in-process on an ephemeral loopback port with a fresh (or the given)
 * migrated database. Cheap argon2 parameters keep the suite fast; the production ones are
 * exercised by test/auth/passwords.test.ts.
 */
export async function startApp(
  options: { db?: TestDatabase; config?: Partial<AppConfig> } & Partial<
    Omit<CreateAppOptions, 'config' | 'logger'>
  > = {},
): Promise<RunningApp> {
  const ownDb = !options.db;
  const db = options.db ?? (await migratedDatabase());
  const logs = new LogCapture();
  const logger = pino({ level: 'debug' }, logs.stream);
  const { db: _db, config, ...rest } = options;
  const app = createApp({
    pool: db.pool,
    logger,
    config: testConfig(config),
    argon2: { memoryCost: 4096, timeCost: 2, parallelism: 1 },
    ...rest,
  });
  await app.auth.ready();
  const server = await listen(http.createServer(app));
  return {
    url: server.url,
    app,
    db,
    logs,
    client: (headers = {}) => {
      const c = new Client(server.url);
      const request = c.request.bind(c);
      c.request = (path, init = {}) => {
        const h = new Headers(init.headers);
        for (const [k, v] of Object.entries(headers)) if (!h.has(k)) h.set(k, v);
        return request(path, { ...init, headers: h });
      };
      return c;
    },
    createUser: async (email, role = 'user', password = PASSWORD) => {
      const user = await app.auth.users.create({ email, password, role });
      return { id: user.id, email: user.email };
    },
    close: async () => {
      await server.close();
      await app.close();
      if (ownDb) await db.drop();
    },
  };
}

/** Log in through the form; returns the response (303 on success). */
export async function loginForm(
  c: Client,
  email: string,
  password = PASSWORD,
  extra: Record<string, string> = {},
) {
  return c.post('/login', { form: { email, password, ...extra } });
}

/** The value of the session cookie in a client's jar. */
export function sessionCookie(c: Client, name = 'sessionId'): string | undefined {
  return c.jar.get(name);
}

/** Pull `name="_csrf" value="…"` out of a page. */
export function csrfFrom(html: string): string {
  const m = /name="_csrf" value="([^"]+)"/.exec(html);
  if (!m) throw new Error('no _csrf field on the page');
  return m[1]!;
}

/** The CSRF token of a logged-in client (read from the dashboard). */
export async function csrfOf(c: Client): Promise<string> {
  const res = await c.get('/dashboard');
  return csrfFrom(await res.text());
}
