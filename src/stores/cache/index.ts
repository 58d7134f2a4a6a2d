export { isConnectionError } from '../../db/errors.js';
export {
  CachedSessionStore,
  type CachedSessionStoreOptions,
  type CacheStats,
  DEFAULT_CACHE_MAX,
  DEFAULT_CACHE_MAX_SIZE,
  DEFAULT_LAST_KNOWN_GOOD_MAX_AGE,
  ENTRY_OVERHEAD,
  entrySize,
} from './cached-store.js';
export {
  clientConfigOf,
  type ListenerStats,
  PgInvalidationListener,
  type PgInvalidationListenerOptions,
} from './pg-listener.js';
export {
  CachedPostgresSessionStore,
  type CachedPostgresSessionStoreOptions,
  type PostgresCacheOptions,
  type PostgresCacheStats,
} from './postgres.js';
export {
  ALL_KEYS,
  checkChannel,
  DEFAULT_CHANNEL,
  decodePayload,
  encodePayloads,
  generateNodeId,
  type Invalidation,
  KEYS_PER_PAYLOAD,
  MAX_PAYLOAD_BYTES,
  type NotifyTarget,
  notifyKeysSql,
  quoteLiteral,
} from './protocol.js';
export type { InvalidationHandlers, InvalidationSource } from './types.js';
