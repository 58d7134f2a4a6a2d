/**
 * What the announce triggers (src/stores/postgres/announce-trigger.ts) cost on the session
 * table's writes, with pgbench (PostgreSQL's own load generator) on a 10 000-row table:
 *
 * - a touch (`expire`, `last_active_at` only), without and with the triggers;
 * - a pgsession save that announces itself in its own statement (the shipped design: the
 *   triggers recognise it and stay quiet), without and with the triggers;
 * - the alternative: the same save without its own announcement, announced by the trigger.
 *
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npx tsx bench/trigger-cost.ts
 *
 * Statements run with `synchronous_commit = off`, so the figures compare what the statements
 * cost rather than the disk. Needs `pgbench` (Debian: /usr/lib/postgresql/<version>/bin/pgbench, or PGBENCH=…). Creates
 * and drops two databases named pgsession_trigger_cost_*.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { quoteIdent } from '../src/db/sql.js';
import { ensureSchema } from '../src/stores/postgres/schema.js';

const run = promisify(execFile);
const admin = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const seconds = Number(process.env.SECONDS_PER_RUN ?? 5);
const ROUNDS = 5;
const pgbench =
  process.env.PGBENCH ??
  (readdirSync('/usr/lib/postgresql', { withFileTypes: true }) ?? [])
    .map((d) => `/usr/lib/postgresql/${d.name}/bin/pgbench`)
    .find((p) => existsSync(p)) ??
  'pgbench';

const SCRIPTS = {
  touch: `\\set k random(1, 10000)
UPDATE session SET expire = to_timestamp(extract(epoch from now()) + 604800), last_active_at = now()
WHERE sid = 'k' || :k AND expire >= localtimestamp;`,
  // As queries.ts builds pgsession's update with notifications on (mark included).
  'save, announced by itself': `\\set k random(1, 10000)
WITH w AS (UPDATE session SET sess = ((sess::jsonb - '{}'::text[]) || jsonb_build_object('n', :k))::json,
  expire = to_timestamp(extract(epoch from now()) + 604800), last_active_at = now(), version = version + 1
  WHERE sid = 'k' || :k AND expire >= localtimestamp AND set_config('pgsession.announced', 'on', true) IS NOT NULL
  RETURNING sid, id_hashed),
n AS (SELECT pg_notify('pgsession_invalidate', 'node:' || string_agg(sid, ',')) FROM w)
SELECT w.* FROM w CROSS JOIN (SELECT count(*) FROM n) AS notified;`,
  'save, announced by the trigger': `\\set k random(1, 10000)
UPDATE session SET sess = ((sess::jsonb - '{}'::text[]) || jsonb_build_object('n', :k))::json,
  expire = to_timestamp(extract(epoch from now()) + 604800), last_active_at = now(), version = version + 1
WHERE sid = 'k' || :k AND expire >= localtimestamp;`,
};

function urlOf(name: string): string {
  const u = new URL(admin);
  u.pathname = `/${name}`;
  return u.toString();
}

async function prepare(name: string, triggers: boolean): Promise<void> {
  const client = new pg.Client({ connectionString: admin });
  await client.connect();
  await client.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
  await client.query(`CREATE DATABASE ${quoteIdent(name)}`);
  await client.end();
  const pool = new pg.Pool({ connectionString: urlOf(name) });
  await ensureSchema(pool, {
    tableName: 'session',
    announceWrites: triggers ? { channel: 'pgsession_invalidate' } : false,
  });
  await pool.query(`INSERT INTO session (sid, sess, expire, id_hashed, user_id)
SELECT 'k' || i, json_build_object('cookie', json_build_object('originalMaxAge', 604800000), 'userId', i, 'csrfToken', md5(i::text)),
  localtimestamp + interval '7 days', true, i::text FROM generate_series(1, 10000) i`);
  await pool.end();
}

async function tps(name: string, file: string): Promise<number> {
  const { stdout } = await run(pgbench, [
    '-n',
    '-T',
    String(seconds),
    '-c',
    '4',
    '-j',
    '2',
    '-f',
    file,
    urlOf(name),
  ]);
  return Number(/tps = ([\d.]+)/.exec(stdout)?.[1] ?? Number.NaN);
}

const dir = await mkdtemp(path.join(tmpdir(), 'pgsession-trigger-cost-'));
const [off, on] = ['pgsession_trigger_cost_off', 'pgsession_trigger_cost_on'];
try {
  await prepare(off, false);
  await prepare(on, true);
  const files: Record<string, string> = {};
  for (const [label, sql] of Object.entries(SCRIPTS)) {
    files[label] = path.join(dir, `${label.replace(/\W+/g, '-')}.sql`);
    await writeFile(files[label]!, `${sql}\n`);
  }
  const rows: Array<[string, string, number[]]> = [
    ['touch', 'no triggers', []],
    ['touch', 'triggers', []],
    ['save, announced by itself', 'no triggers', []],
    ['save, announced by itself', 'triggers', []],
    ['save, announced by the trigger', 'triggers', []],
  ];
  // Alternating rounds, so drift on a shared machine hits every row alike.
  for (let round = 0; round < ROUNDS; round++) {
    for (const [label, where, results] of rows)
      results.push(await tps(where === 'triggers' ? on : off, files[label]!));
  }
  console.log(`pgbench -c 4 -j 2 -T ${seconds}, synchronous_commit off, ${ROUNDS} rounds, median tps:`);
  for (const [label, where, results] of rows) {
    const median = [...results].sort((a, b) => a - b)[Math.floor(ROUNDS / 2)]!;
    console.log(
      `  ${label.padEnd(32)} ${where.padEnd(12)} ${median.toFixed(0).padStart(7)}  (${results.map((r) => r.toFixed(0)).join(', ')})`,
    );
  }
} finally {
  await rm(dir, { recursive: true, force: true });
  const client = new pg.Client({ connectionString: admin });
  await client.connect();
  for (const name of [off, on])
    await client.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
  await client.end();
}
