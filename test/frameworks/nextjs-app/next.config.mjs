import path from 'node:path';
import { fileURLToPath } from 'node:url';

// The repository's root: node_modules (next, react, pg) and pgsession itself (its built dist/,
// by the package's own name) are there.
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/** @type {import('next').NextConfig} */
export default {
  // pgsession and pg are loaded by Node at run time, not bundled.
  serverExternalPackages: ['pgsession', 'pg'],
  outputFileTracingRoot: root,
  turbopack: { root },
};
