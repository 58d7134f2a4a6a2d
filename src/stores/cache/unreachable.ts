// The classification lives in src/db/errors.ts, shared by the store, the cache, the CLI and apps.
export { isConnectionError } from '../../db/errors.js';
