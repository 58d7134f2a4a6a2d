/** `pgsession prune`, `pgsession notices prune` and `pgsession migrate`. */
import { runAuthMigrations, SecurityNotices } from '../../src/auth/index.js';
import { ensureSchema } from '../../src/stores/postgres/index.js';
import type { Context } from '../context.js';
import { Progress, plural } from '../output.js';

export async function prune(
  ctx: Context,
  options: { batchSize: number; signal: AbortSignal },
): Promise<void> {
  const store = await ctx.store();
  const { stdout, stderr } = ctx.io;
  // An estimate for the progress bar (rows expiring while we work are left for the next run).
  const { rows } = await ctx.pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM ${store.names.qualified} WHERE expire < to_timestamp($1::float8 / 1000)`,
    [Date.now()],
  );
  const expired = rows[0]?.n ?? 0;
  if (expired === 0) {
    stdout.write('No expired sessions to delete.\n');
    return;
  }
  const deleted = await withProgress(stderr, expired, 'Deleting expired sessions', (onProgress) =>
    store.prune({ batchSize: options.batchSize, signal: options.signal, onProgress }),
  );
  if (deleted === 0) {
    // prune() gives up at once when another process holds the prune lock.
    stdout.write('Deleted 0 expired sessions: another prune (an app server or a second CLI) is running.\n');
    return;
  }
  const stopped = options.signal.aborted ? ' (interrupted: run prune again for the rest)' : '';
  stdout.write(`Deleted ${plural(deleted, 'expired session')}${stopped}.\n`);
}

/** Old security notices and forgotten devices (`SecurityNotices.prune`). */
export async function pruneNotices(ctx: Context, olderThan: string): Promise<void> {
  await ctx.requireTable('auth_security_notices', 'the security notices table');
  const notices = new SecurityNotices(ctx.pool, { onError: () => {} });
  const { notices: deleted, devices } = await notices.prune({ olderThan });
  ctx.io.stdout.write(
    `Deleted ${plural(deleted, 'security notice')} older than ${olderThan} and ${plural(devices, 'forgotten device')}.\n`,
  );
}

/**
 * `pgsession migrate [--finish]`: the session table and the auth migrations; with `--finish`,
 * then every session still stored under its raw id (connect-pg-simple's rows) is moved under the
 * hash of its id — the step after which a rollback to connect-pg-simple would log those users out.
 */
export async function migrate(
  ctx: Context,
  options: { finish?: boolean; batchSize?: number; signal?: AbortSignal } = {},
): Promise<void> {
  const { stdout } = ctx.io;
  const { table, schema } = ctx.options;
  const qualified = schema ? `${schema}.${table}` : table;
  const changes: string[] = [];
  // The session table: created as connect-pg-simple would, or upgraded in place with the
  // columns and indexes pgsession needs (user_id, created_at, last_active_at, …).
  // With notifications on, also the triggers that announce other writers' changes on that channel.
  const result = await ensureSchema(ctx.pool, {
    tableName: table,
    schemaName: schema,
    createTable: true,
    announceWrites: ctx.options.notify ? { channel: ctx.options.notify } : false,
  });
  if (result.created) changes.push(`session table ${qualified}: created`);
  if (!result.created && result.addedColumns.length > 0) {
    changes.push(`session table ${qualified}: added columns ${result.addedColumns.join(', ')}`);
  }
  if (!result.created && result.addedIndexes.length > 0) {
    changes.push(`session table ${qualified}: added indexes ${result.addedIndexes.join(', ')}`);
  }
  // The auth layer's SQL migrations (users, login rate-limit counters).
  for (const id of await runAuthMigrations(ctx.pool)) changes.push(`applied ${id}`);
  for (const line of changes) stdout.write(`${line}\n`);
  if (!options.finish) {
    stdout.write(
      changes.length === 0
        ? 'Nothing to apply: the database is up to date.\n'
        : `Done: ${plural(changes.length, 'change')}.\n`,
    );
    const store = await ctx.store();
    const raw = await store.countRaw();
    const keeping = await store.keepsRawIds();
    if (raw > 0) {
      stdout.write(
        `${plural(raw, 'session')} still stored under ${raw === 1 ? 'its' : 'their'} raw id, where connect-pg-simple reads ${raw === 1 ? 'it' : 'them'} (a rollback keeps ${raw === 1 ? 'that user' : 'those users'} logged in). ` +
          (keeping ? '' : 'Once you will not switch back: pgsession migrate --finish\n'),
      );
    }
    if (keeping) {
      stdout.write(
        'The switch from connect-pg-simple is not finished: new sessions are stored there too, so a rollback logs nobody out. ' +
          'Once you will not switch back: pgsession migrate --finish\n',
      );
    }
    return;
  }
  await finish(ctx, options);
}

/** Move raw-id rows under the hash of their id, with progress (see {@link migrate}). */
async function finish(ctx: Context, options: { batchSize?: number; signal?: AbortSignal }): Promise<void> {
  const { stdout, stderr } = ctx.io;
  const store = await ctx.store();
  const raw = await store.countRaw();
  if (raw === 0 && !(await store.keepsRawIds())) {
    stdout.write('Every session is stored under the hash of its id: nothing to finish.\n');
    return;
  }
  const moved = await withProgress(stderr, raw, 'Moving sessions under the hash of their id', (onProgress) =>
    store.rekey({ batchSize: options.batchSize, signal: options.signal, onProgress }),
  );
  const left = await store.countRaw();
  stdout.write(
    `Moved ${plural(moved, 'session')} under the hash of ${moved === 1 ? 'its' : 'their'} id: pgsession finds ${moved === 1 ? 'it' : 'them'} as before; connect-pg-simple no longer would.\n`,
  );
  if (left > 0) {
    const why = options.signal?.aborted
      ? 'interrupted: run it again for the rest'
      : 'their hash is already taken by another row, or they were written meanwhile: run it again';
    stdout.write(`${plural(left, 'session')} left under a raw id (${why}).\n`);
  }
}

/** A batched job (prune, re-key) with a progress bar or lines on stderr, cleared when it ends. */
async function withProgress<T>(
  stderr: Context['io']['stderr'],
  total: number,
  label: string,
  run: (onProgress: (done: number) => void) => Promise<T>,
): Promise<T> {
  const progress = new Progress(stderr, total, label);
  try {
    return await run((done) => progress.update(done));
  } finally {
    progress.done();
  }
}
