import { defineConfig } from 'tsup';

// Two entry points (the library and the connect-pg-simple compatibility factory),
// each built as ESM and CommonJS with declarations for both.
export default defineConfig({
  entry: {
    index: 'src/index.ts',
    'connect-pg-simple': 'src/stores/postgres/connect-pg-simple.ts',
  },
  format: ['esm', 'cjs'],
  dts: { entry: { index: 'src/index.ts', 'connect-pg-simple': 'src/stores/postgres/connect-pg-simple.ts' } },
  target: 'node20',
  platform: 'node',
  sourcemap: true,
  clean: true,
  splitting: false,
  shims: true,
});
