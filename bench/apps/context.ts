import type { RequestListener } from 'node:http';
import type pg from 'pg';
import type { Floor } from '../lib/floor.js';

/** What `bench/server.ts` gives an app, and learns from it. */
export interface AppContext {
  /** The configuration's pool (throws for a configuration without a database). */
  pool(): pg.Pool;
  /** Extra store options (the cache bounds, `cache: false`). */
  storeOptions: Record<string, unknown>;
  /** Extra options of pgsession's session middleware (`deviceBound`). */
  sessionOptions: Record<string, unknown>;
  /** The session store and middleware in use, for the instrumentation routes. */
  exposeStore(store: object, middleware: unknown): void;
  exposeFloor(floor: Floor): void;
  /** Set for the login-storm server: called with pgsession's auth once it is ready. */
  auth?:
    | ((auth: Awaited<ReturnType<typeof import('../../src/auth/index.js').createAuth>>) => Promise<void>)
    | undefined;
}

export interface App {
  listener: RequestListener;
  close(): Promise<void>;
}
