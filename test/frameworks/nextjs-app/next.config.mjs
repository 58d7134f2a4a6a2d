import path from 'node:path';
import { fileURLToPath } from 'node:url';

// Only for this app living inside the repository: Next's root is the repository's, where
// node_modules (next, react, pg) and pgsession itself (its dist/, by the package's own name) are.
// An app of its own needs no next.config for pgsession (see docs/nextjs.md).
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/** @type {import('next').NextConfig} */
export default {
  outputFileTracingRoot: root,
  turbopack: { root },
};
