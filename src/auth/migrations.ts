import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { loadSqlMigrations, type Migration, runMigrations } from '../db/migrate.js';

/** Prefix of the auth migrations' ids in the migrations table (other modules use their own). */
export const AUTH_MIGRATION_PREFIX = 'auth/';

/**
 * The folder holding the auth layer's SQL migrations (`migrations/auth` in the package): found
 * relative to this file, from the sources (`src/auth`) and from the build (`dist`).
 */
export function authMigrationsDir(): string {
  const candidates = ['../../migrations/auth/', '../migrations/auth/'];
  for (const rel of candidates) {
    const dir = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(dir)) return dir;
  }
  throw new Error('pgsession: cannot find the migrations/auth folder next to the package');
}

/** The auth migrations (users table, login rate-limit counters, security notices and known devices, TOTP secrets and recovery codes), ids prefixed with `auth/`. */
export async function authMigrations(dir: string = authMigrationsDir()): Promise<Migration[]> {
  const list = await loadSqlMigrations(dir);
  return list.map((m) => ({ id: AUTH_MIGRATION_PREFIX + m.id, sql: m.sql }));
}

/** Apply the pending auth migrations; returns the ids applied. Safe from several processes at once. */
export async function runAuthMigrations(pool: pg.Pool): Promise<string[]> {
  return runMigrations(pool, await authMigrations());
}
