import { defineConfig } from 'vitest/config';

/**
 * Two projects. `unit`: specs that need no database (beside the code they test in src/, and the
 * pure ones under test/), so `npx vitest run src/core` starts no PostgreSQL. `db`: everything
 * else, with the global set-up that provides a PostgreSQL server (vitest runs a project's global
 * set-up only when one of its files is selected).
 */
const unit = [
  'src/**/*.test.ts',
  'test/architecture.test.ts',
  'test/auth/address.test.ts',
  'test/auth/helpers.test.ts',
  'test/cli/usage.test.ts',
  'test/stores/memory-store.test.ts',
];

const shared = { testTimeout: 30_000, hookTimeout: 60_000, pool: 'forks' as const };

export default defineConfig({
  test: {
    ...shared,
    // Two cores: more workers only add contention with PostgreSQL and child processes.
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    projects: [
      { test: { ...shared, name: 'unit', include: unit } },
      {
        test: {
          ...shared,
          name: 'db',
          include: ['test/**/*.test.ts'],
          exclude: unit,
          globalSetup: ['test/global-setup.ts'],
        },
      },
    ],
  },
});
