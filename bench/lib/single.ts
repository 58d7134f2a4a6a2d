/**
 * One configuration of the throughput section on its own (the A/B, profiling and GC tools): its
 * database when it needs one, its server, a logged-in cookie, the 2 s warm-up, then the caller's
 * measurement; the server is stopped and the database dropped afterwards.
 */
import { type Framework, type Layer, withoutSessions } from '../apps/common.js';
import { type ServerProcess, type StartOptions, startServer } from './child.js';
import type { Admin } from './db.js';
import { login } from './http.js';
import { runWrk } from './wrk.js';

/** `express/pgsession` → its framework and layer. */
export function parseConfig(which: string): { framework: Framework; layer: Layer } {
  const [framework, layer] = which.split('/') as [Framework, Layer];
  return { framework, layer };
}

/** The layers that store sessions in PostgreSQL. */
export const needsDatabase = (layer: Layer): boolean => layer === 'incumbent' || layer === 'pgsession';

export interface WarmServer {
  server: ServerProcess;
  /** `GET /dashboard` of the server. */
  target: string;
  /** The logged-in cookie (a dummy one for the layers without sessions). */
  cookie: string;
}

/** Run `measure` on a fresh, logged-in, warmed-up server of `which`; `admin` when it needs a database. */
export async function withWarmServer<T>(
  which: string,
  admin: Admin | undefined,
  options: StartOptions,
  measure: (warm: WarmServer) => Promise<T>,
): Promise<T> {
  const { framework, layer } = parseConfig(which);
  if (needsDatabase(layer) && !admin) throw new Error(`bench: ${which} needs DATABASE_URL`);
  const db = needsDatabase(layer) ? await admin!.createDatabase(`single_${framework}_${layer}`) : undefined;
  try {
    const server = await startServer({ framework, layer, databaseUrl: db?.url }, options);
    try {
      const cookie = withoutSessions(layer) ? 'connect.sid=none' : await login(server.url);
      const target = `${server.url}/dashboard`;
      await runWrk({ url: target, cookies: [cookie], connections: 50, durationSec: 2 });
      return await measure({ server, target, cookie });
    } finally {
      await server.stop();
    }
  } finally {
    if (db) await admin!.dropDatabase(db.name);
  }
}
