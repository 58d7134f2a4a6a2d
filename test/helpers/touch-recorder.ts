import { type HasSessionStore, kSessionStore, type SessionStore } from '../../src/core/store.js';
import { MemoryStore } from '../../src/stores/memory/memory-store.js';

/** A touch the engine wrote: which session, and the activity time it recorded. */
export interface RecordedTouch {
  key: string;
  lastActiveAt: number | undefined;
}

/**
 * A memory store that tracks activity and records every touch written to it, for the tests of
 * touch throttling and of flushing deferred touches on shutdown (`flush({ touches: true })`).
 */
export function touchRecorder(): { store: HasSessionStore; touches: RecordedTouch[] } {
  const memory = new MemoryStore()[kSessionStore];
  const touches: RecordedTouch[] = [];
  const store: SessionStore = {
    tracksActivity: true,
    get: (k, o) => memory.get(k, o),
    create: (k, r) => memory.create(k, r),
    update: (k, c) => memory.update(k, c),
    destroy: (k) => memory.destroy(k),
    touch: async (key, expiresAt, lastActiveAt) => {
      touches.push({ key, lastActiveAt });
      return memory.touch(key, expiresAt, lastActiveAt);
    },
  };
  return { store: { [kSessionStore]: store }, touches };
}
