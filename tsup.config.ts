import { defineConfig } from 'tsup';

// Entry points: the library, the connect-pg-simple compatibility factory and the Fastify,
// Hono, Koa, Fetch-API (web), metrics, auth and testing (the store contract) subpaths,
// each built as ESM and CommonJS with declarations for both.
const entry = {
  index: 'src/index.ts',
  'connect-pg-simple': 'src/stores/postgres/connect-pg-simple.ts',
  fastify: 'src/adapters/fastify/index.ts',
  hono: 'src/adapters/hono/index.ts',
  koa: 'src/adapters/koa/index.ts',
  web: 'src/adapters/web/index.ts',
  metrics: 'src/metrics/index.ts',
  auth: 'src/auth/index.ts',
  testing: 'src/testing/index.ts',
};

export default defineConfig({
  // The operator CLI (the package's `pgsession` bin) is built too; it has no types to publish.
  entry: { ...entry, cli: 'cli/main.ts' },
  format: ['esm', 'cjs'],
  dts: { entry },
  target: 'node20',
  platform: 'node',
  sourcemap: true,
  clean: true,
  // Shared chunks: one copy of the core, so errors and sessions from `pgsession/hono` pass
  // `instanceof` against those from `pgsession`.
  splitting: true,
  shims: true,
});
