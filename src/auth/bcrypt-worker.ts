import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import bcrypt from 'bcryptjs';

/**
 * bcryptjs is pure JavaScript: even its "async" compare runs in slices of up to 100 ms on the
 * calling thread, which stalls every other request for that long. Legacy bcrypt hashes are
 * therefore compared on a worker thread (started on first use, `unref()`ed so it never keeps
 * the process alive), falling back to bcryptjs's async compare if a worker cannot start.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const bcrypt = require(workerData.bcryptPath);
parentPort.on('message', ({ id, password, hash }) => {
  let ok = false;
  try { ok = bcrypt.compareSync(password, hash); } catch { ok = false; }
  parentPort.postMessage({ id, ok });
});
`;

interface Pending {
  resolve: (ok: boolean) => void;
  reject: (err: unknown) => void;
}

let worker: Worker | null = null;
let unavailable = false;
let nextId = 0;
const pending = new Map<number, Pending>();

function failAll(err: unknown): void {
  for (const p of pending.values()) p.reject(err);
  pending.clear();
}

function getWorker(): Worker | null {
  if (worker) return worker;
  if (unavailable) return null;
  try {
    const bcryptPath = createRequire(import.meta.url).resolve('bcryptjs');
    const w = new Worker(WORKER_SOURCE, { eval: true, workerData: { bcryptPath } });
    w.unref();
    w.on('message', ({ id, ok }: { id: number; ok: boolean }) => {
      const p = pending.get(id);
      pending.delete(id);
      p?.resolve(ok);
      if (pending.size === 0) w.unref();
    });
    w.on('error', (err) => {
      worker = null;
      failAll(err);
    });
    w.on('exit', () => {
      if (worker === w) worker = null;
      failAll(new Error('bcrypt worker exited'));
    });
    worker = w;
    return w;
  } catch {
    unavailable = true;
    return null;
  }
}

/** Compare a password with a bcrypt hash off the event loop. */
export function bcryptCompare(password: string, hash: string): Promise<boolean> {
  const w = getWorker();
  if (!w) return bcrypt.compare(password, hash);
  const id = nextId++;
  return new Promise<boolean>((resolve, reject) => {
    pending.set(id, { resolve, reject });
    // Keep the process alive while a comparison is in flight.
    w.ref();
    w.postMessage({ id, password, hash });
  }).catch(() => bcrypt.compare(password, hash));
}
