/**
 * pgsession as an app installs it: the package's own entries (`pgsession`,
 * `pgsession/connect-pg-simple`, …), which resolve to the build in `dist/` (`bench/run.ts`
 * rebuilds it when a source is newer). Types come from the sources the build is made of.
 * Imported by name at run time so that type-checking does not need a build.
 *
 * `BENCH_SOURCE=src` loads the sources through tsx instead (no build between edits while
 * profiling; tsx's name-keeping wrappers make it slightly slower than the build).
 */
const SOURCES: Record<keyof Entry, string> = {
  pgsession: '../../src/index.js',
  'pgsession/connect-pg-simple': '../../src/stores/postgres/connect-pg-simple.js',
  'pgsession/fastify': '../../src/adapters/fastify/index.js',
  'pgsession/hono': '../../src/adapters/hono/index.js',
  'pgsession/web': '../../src/adapters/web/index.js',
  'pgsession/auth': '../../src/auth/index.js',
};
const fromSource = process.env.BENCH_SOURCE === 'src';
type Entry = {
  pgsession: typeof import('../../src/index.js');
  'pgsession/connect-pg-simple': typeof import('../../src/stores/postgres/connect-pg-simple.js');
  'pgsession/fastify': typeof import('../../src/adapters/fastify/index.js');
  'pgsession/hono': typeof import('../../src/adapters/hono/index.js');
  'pgsession/web': typeof import('../../src/adapters/web/index.js');
  'pgsession/auth': typeof import('../../src/auth/index.js');
};

export function importPackage<K extends keyof Entry>(name: K): Promise<Entry[K]> {
  return import(fromSource ? SOURCES[name] : (name as string)) as Promise<Entry[K]>;
}
