/**
 * The write-heavy benchmark of issue 19 (`npm run bench:writes`): what cache invalidation costs
 * when sessions are written on most requests.
 *
 * 1. **Route**: the seed-shaped Express app with a route that writes the session on every request
 *    (`req.session.n++`), pgsession (`PgStore()`, its defaults) against express-session +
 *    connect-pg-simple, with one hot session and with 10 000 rotating sessions. The server runs
 *    pinned to core 0 (`taskset`), wrk (`-t1 -c64`) on core 1, alternating rounds, median of
 *    three. SQL per request is counted in the server (every `pg.Client#query`).
 * 2. **Store**: session saves/s and logouts/s straight on `PostgresSessionStore` at 1, 8, 32 and 64
 *    concurrent writers, with announcements off, in each save's statement, and coalesced; plus
 *    the p99 of an unrelated `INSERT` into another table running alongside (one every 2 ms on its
 *    own connection), the same with the triggers for other writers doing the announcing, and
 *    touches at 64 writers.
 *
 * 3. **Revocation**: a logout on one server (`CachedPostgresSessionStore`, coalesced), polled on
 *    another that had the session cached, 60 times, with no load and under 64 concurrent savers.
 *
 * Options: `--route-only`, `--store-only`, `--revocation` (only part 3), `--seconds=N` (per cell, default 8 for the route and 3
 * for the store), `--rounds=N` (default 3: alternating route rounds, and whole store passes with
 * medians per cell). Uses `DATABASE_URL`, else the embedded PostgreSQL of `.data/postgres` (a
 * fresh database is created on that server for each configuration and dropped afterwards).
 * Prints a JSON summary and Markdown tables.
 */
import { execFile, fork } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { concurrently } from './lib/concurrently.js';
import { median, percentile, round } from './lib/stats.js';

const run = promisify(execFile);
const require = createRequire(import.meta.url);
const here = fileURLToPath(import.meta.url);
const args = new Map(
  process.argv.slice(2).map((a) => {
    const [k, v] = a.replace(/^--/, '').split('=');
    return [k!, v ?? 'true'] as const;
  }),
);

// ---------------------------------------------------------------------------------------------
// The server child: `tsx bench/writes.ts --serve` with the configuration in WRITES_SERVER.
// ---------------------------------------------------------------------------------------------

interface ServeConfig {
  stack: 'pgsession' | 'cps';
  databaseUrl: string;
  announceData?: 'statement' | 'coalesced';
}

async function serve(): Promise<void> {
  const config = JSON.parse(process.env.WRITES_SERVER ?? '{}') as ServeConfig;
  let statements = 0;
  const original = pg.Client.prototype.query;
  pg.Client.prototype.query = function counted(this: pg.Client, ...a: unknown[]) {
    statements++;
    return (original as (...x: unknown[]) => unknown).apply(this, a);
  } as typeof pg.Client.prototype.query;

  const { default: express } = await import('express');
  const pool = new pg.Pool({ connectionString: config.databaseUrl, max: 10 });
  pool.on('error', (err) => console.error(`bench server pool: ${err.message}`));
  const sessionOptions = {
    name: 'sid',
    secret: 'bench-writes-secret-0123456789abcdef',
    resave: false,
    saveUninitialized: false,
    cookie: { maxAge: 7 * 24 * 3_600_000, httpOnly: true, sameSite: 'lax' as const },
  };
  let middleware: import('express').RequestHandler;
  let close: () => Promise<void>;
  if (config.stack === 'cps') {
    const { default: expressSession } = await import('express-session');
    // connect-pg-simple ships no types.
    const connectPgSimple = require('connect-pg-simple') as (
      s: typeof expressSession,
    ) => new (
      options: Record<string, unknown>,
    ) => { close(): Promise<void> };
    const Store = connectPgSimple(expressSession);
    const store = new Store({ pool, createTableIfMissing: true, pruneSessionInterval: false });
    middleware = expressSession({ ...sessionOptions, store: store as never });
    close = async () => store.close();
  } else {
    const { session } = await import('../src/index.js');
    const { PgStore } = await import('../src/stores/postgres/index.js');
    const store = new PgStore({
      pool,
      createTableIfMissing: true,
      pruneSessionInterval: false,
      ...(config.announceData ? { announceData: config.announceData } : {}),
    });
    middleware = session({ ...sessionOptions, store }) as unknown as import('express').RequestHandler;
    close = () => store.close();
  }
  const app = express();
  app.get('/__sql', (_req, res) => {
    res.json({ statements });
  });
  app.use(middleware);
  type Sess = { userId?: string; n?: number };
  app.post('/login', (req, res, next) => {
    const s = req.session as unknown as Sess & { regenerate(cb: (err?: unknown) => void): void };
    s.regenerate((err) => {
      if (err) return next(err);
      (req.session as unknown as Sess).userId = `u${Math.floor(Math.random() * 1e9)}`;
      (req.session as unknown as Sess).n = 0;
      res.end('ok');
    });
  });
  app.get('/write', (req, res) => {
    const s = req.session as unknown as Sess;
    if (!s.userId) {
      res.status(401).end();
      return;
    }
    s.n = (s.n ?? 0) + 1;
    res.end(String(s.n));
  });
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  process.send?.({ port });
  process.on('message', async (m) => {
    if (m === 'stop') {
      // Let requests in flight finish before the store and pool go.
      server.closeIdleConnections();
      await new Promise((resolve) => server.close(resolve));
      await close();
      await pool.end();
      process.exit(0);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// The runner.
// ---------------------------------------------------------------------------------------------

async function createDatabase(adminUrl: string, name: string): Promise<string> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return u.toString();
}

async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  } finally {
    await admin.end();
  }
}

async function startServer(config: ServeConfig) {
  const child = fork(here, ['--serve'], {
    execArgv: ['--import', 'tsx'],
    env: { ...process.env, WRITES_SERVER: JSON.stringify(config) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const [message] = (await once(child, 'message')) as [{ port: number }];
  // Server on core 0; wrk and PostgreSQL get the other (wrk is pinned to core 1).
  if (cpus().length > 1) await run('taskset', ['-pc', '0', String(child.pid)]).catch(() => {});
  const base = `http://127.0.0.1:${message.port}`;
  return {
    base,
    async sql(): Promise<number> {
      return ((await (await fetch(`${base}/__sql`)).json()) as { statements: number }).statements;
    },
    async stop(): Promise<void> {
      child.send('stop');
      await once(child, 'exit');
    },
  };
}

async function login(base: string): Promise<string> {
  const res = await fetch(`${base}/login`, { method: 'POST' });
  const cookie = res.headers.get('set-cookie');
  if (!res.ok || !cookie) throw new Error(`login failed: ${res.status}`);
  return cookie.split(';')[0]!;
}

function logins(base: string, n: number): Promise<string[]> {
  return concurrently(n, 32, () => login(base));
}

/** One request with each cookie, 64 at a time. */
async function visitAll(base: string, cookies: readonly string[]): Promise<void> {
  await concurrently(cookies.length, 64, async (i) => {
    const res = await fetch(`${base}/write`, { headers: { cookie: cookies[i]! } });
    if (!res.ok) throw new Error(`write failed: ${res.status}`);
    await res.arrayBuffer();
  });
}

async function wrk(
  base: string,
  script: string,
  seconds: number,
): Promise<{ rps: number; requests: number; non2xx: number }> {
  const { stdout } = await run(
    'taskset',
    [
      '-c',
      cpus().length > 1 ? '1' : '0',
      '/usr/bin/wrk',
      '-t1',
      '-c64',
      `-d${seconds}s`,
      '-s',
      script,
      `${base}/write`,
    ],
    { maxBuffer: 16 * 1024 * 1024 },
  );
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1]);
  const requests = Number(/(\d+) requests in/.exec(stdout)?.[1]);
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(stdout)?.[1] ?? 0);
  return { rps, requests, non2xx };
}

async function luaScript(dir: string, name: string, cookies: string[]): Promise<string> {
  const file = path.join(dir, `${name}.lua`);
  const list = cookies.map((c) => `"${c.replaceAll('"', '')}"`).join(',\n');
  await writeFile(
    file,
    `local cookies = {\n${list}\n}\nlocal i = 0\nrequest = function()\n  i = i % #cookies + 1\n  return wrk.format("GET", nil, { ["Cookie"] = cookies[i] })\nend\n`,
  );
  return file;
}

interface RouteRow {
  stack: string;
  sessions: number;
  rps: number[];
  sqlPerRequest: number[];
  non2xx: number;
}

async function routeBench(adminUrl: string, seconds: number, rounds: number): Promise<RouteRow[]> {
  const dir = await mkdtemp(path.join(tmpdir(), 'pgsession-writes-'));
  const rows: RouteRow[] = [];
  try {
    for (const sessions of [1, 10_000]) {
      const stacks: Array<{ label: string; config: Omit<ServeConfig, 'databaseUrl'> }> = [
        { label: 'express-session + connect-pg-simple', config: { stack: 'cps' } },
        { label: 'pgsession (PgStore defaults: coalesced)', config: { stack: 'pgsession' } },
        {
          label: "pgsession (announceData: 'statement')",
          config: { stack: 'pgsession', announceData: 'statement' },
        },
      ];
      const dbs: string[] = [];
      const prepared: Array<{
        label: string;
        url: string;
        config: Omit<ServeConfig, 'databaseUrl'>;
        script: string;
        cookies: string[];
      }> = [];
      for (const [i, s] of stacks.entries()) {
        const name = `pgsession_writes_${process.pid}_${sessions}_${i}`;
        dbs.push(name);
        const url = await createDatabase(adminUrl, name);
        const server = await startServer({ ...s.config, databaseUrl: url });
        const cookies = sessions === 1 ? [await login(server.base)] : await logins(server.base, sessions);
        await server.stop();
        prepared.push({
          label: s.label,
          url,
          config: s.config,
          script: await luaScript(dir, `${i}-${sessions}`, cookies),
          cookies,
        });
        rows.push({ stack: s.label, sessions, rps: [], sqlPerRequest: [], non2xx: 0 });
      }
      for (let round = 0; round < rounds; round++) {
        for (const [i, p] of prepared.entries()) {
          const server = await startServer({ ...p.config, databaseUrl: p.url });
          // Every session is requested once first, as the throughput section does: the window
          // measures users who come back (a write-heavy app's users send many requests), not
          // each session's first request after a restart. Then a warm-up (connections, prepared
          // statements) and the measured run. The pass and the warm-up are the same for both stacks.
          if (p.cookies.length > 1) await visitAll(server.base, p.cookies);
          await wrk(server.base, p.script, 2);
          const before = await server.sql();
          const result = await wrk(server.base, p.script, seconds);
          const after = await server.sql();
          await server.stop();
          const row = rows[rows.length - prepared.length + i]!;
          row.rps.push(result.rps);
          row.sqlPerRequest.push((after - before - 1) / result.requests);
          row.non2xx += result.non2xx;
          console.error(
            `route ${sessions} sessions, ${p.label}: ${round + 1}/${rounds}: ${round0(result.rps)} req/s`,
          );
        }
      }
      for (const name of dbs) await dropDatabase(adminUrl, name);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return rows;
}

const round0 = (v: number) => Math.round(v);

// ---- store level ----

interface StoreRow {
  mode: string;
  op: 'save' | 'logout' | 'touch';
  writers: number;
  opsPerSecond: number;
  unrelatedP99Ms: number;
}

async function storeBench(adminUrl: string, seconds: number): Promise<StoreRow[]> {
  const { PostgresSessionStore } = await import('../src/stores/postgres/session-store.js');
  const name = `pgsession_writes_${process.pid}_store`;
  const url = await createDatabase(adminUrl, name);
  const pool = new pg.Pool({ connectionString: url, max: 66 });
  const other = new pg.Client({ connectionString: url });
  await other.connect();
  await other.query(
    'CREATE TABLE unrelated (id bigserial PRIMARY KEY, at timestamptz DEFAULT now(), v text)',
  );
  const rows: StoreRow[] = [];
  const target = { channel: 'pgsession_invalidate', nodeId: 'bench' };
  // Triggers for other writers: installed by a notifying store's schema set-up.
  const withTriggers = new PostgresSessionStore({ pool, tableName: 'session', notify: target });
  await withTriggers.ready();
  const stores = {
    // No announcements and no triggers: what invalidation costs is measured against this.
    off: async () => {
      await pool.query('DROP TABLE IF EXISTS session_plain');
      const s = new PostgresSessionStore({ pool, tableName: 'session_plain' });
      await s.ready();
      return s;
    },
    statement: async () => new PostgresSessionStore({ pool, tableName: 'session', notify: target }),
    coalesced: async () =>
      new PostgresSessionStore({ pool, tableName: 'session', notify: target, announceData: 'coalesced' }),
    // A store that announces nothing itself, on the table whose triggers announce other writers.
    'triggers only': async () =>
      new PostgresSessionStore({ pool, tableName: 'session', announceOtherWriters: false }),
  } as const;
  const HOUR = 3_600_000;
  const record = (n: number) => {
    const now = Date.now();
    return {
      data: { cookie: { originalMaxAge: HOUR }, userId: `u${n}`, n: 0 },
      expiresAt: now + HOUR,
      createdAt: now,
      lastActiveAt: now,
      userId: `u${n}`,
      version: 0,
    };
  };
  // The unrelated write: one INSERT every 2 ms on its own connection, timed.
  const unrelated = async (stop: { done: boolean }) => {
    const samples: number[] = [];
    while (!stop.done) {
      const t = performance.now();
      await other.query('INSERT INTO unrelated (v) VALUES ($1)', ['x']);
      samples.push(performance.now() - t);
      await new Promise((r) => setTimeout(r, 2));
    }
    return samples.sort((a, b) => a - b);
  };
  const modes = ['off', 'statement', 'coalesced', 'triggers only'] as const;
  for (const writers of [1, 8, 32, 64]) {
    for (const op of ['save', 'logout'] as const) {
      for (const mode of modes) {
        if (mode === 'triggers only' && writers !== 64) continue;
        const store = await stores[mode]();
        const table = store.names.qualified;
        await pool.query(`TRUNCATE ${table}`);
        let key = 0;
        const keys = Array.from({ length: writers }, (_, i) => `w${writers}-${i}`);
        if (op === 'save') for (const k of keys) await store.create(k, record(key++));
        const stop = { done: false };
        const sampling = unrelated(stop);
        let ops = 0;
        const end = performance.now() + seconds * 1000;
        await Promise.all(
          keys.map(async (k, i) => {
            let n = 0;
            while (performance.now() < end) {
              if (op === 'save') {
                const now = Date.now();
                await store.update(k, {
                  set: { n: ++n },
                  unset: [],
                  data: { cookie: { originalMaxAge: HOUR }, userId: `u${i}`, n },
                  expiresAt: now + HOUR,
                  lastActiveAt: now,
                  userId: `u${i}`,
                  baseVersion: 0,
                });
              } else {
                const id = `${k}-${n++}`;
                await store.create(id, record(i));
                await store.destroy(id);
              }
              ops++;
            }
          }),
        );
        const elapsed = seconds;
        stop.done = true;
        const samples = await sampling;
        await store.close();
        rows.push({
          mode,
          op,
          writers,
          opsPerSecond: ops / elapsed,
          unrelatedP99Ms: percentile(samples, 99),
        });
        console.error(
          `store ${op} ×${writers} ${mode}: ${round0(ops / elapsed)}/s, unrelated p99 ${round(percentile(samples, 99))} ms`,
        );
      }
    }
  }
  // Touches at 64 writers (never announced): on vs off.
  for (const mode of ['off', 'coalesced'] as const) {
    const store = await stores[mode]();
    await pool.query(`TRUNCATE ${store.names.qualified}`);
    const keys = Array.from({ length: 64 }, (_, i) => `t-${i}`);
    for (const [i, k] of keys.entries()) await store.create(k, record(i));
    const stop = { done: false };
    const sampling = unrelated(stop);
    let ops = 0;
    const end = performance.now() + seconds * 1000;
    await Promise.all(
      keys.map(async (k) => {
        while (performance.now() < end) {
          const now = Date.now();
          await store.touch(k, now + HOUR, now);
          ops++;
        }
      }),
    );
    stop.done = true;
    const samples = await sampling;
    await store.close();
    rows.push({
      mode,
      op: 'touch',
      writers: 64,
      opsPerSecond: ops / seconds,
      unrelatedP99Ms: percentile(samples, 99),
    });
  }
  await withTriggers.close();
  await other.end();
  await pool.end();
  await dropDatabase(adminUrl, name);
  return rows;
}

// ---- revocation latency: a logout on one server, seen by another ----

interface RevocationRow {
  writers: number;
  samples: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

async function revocationBench(adminUrl: string): Promise<RevocationRow[]> {
  const { CachedPostgresSessionStore } = await import('../src/stores/cache/postgres.js');
  const name = `pgsession_writes_${process.pid}_revoke`;
  const url = await createDatabase(adminUrl, name);
  // Few connections for the two servers compared; the savers' pool carries the 64 writers.
  const pools = [4, 4, 66].map((max) => new pg.Pool({ connectionString: url, max }));
  const make = (pool: pg.Pool, nodeId: string) =>
    new CachedPostgresSessionStore({
      pool,
      tableName: 'session',
      notify: { channel: 'pgsession_invalidate', nodeId },
      announceData: 'coalesced',
    });
  const [a, b, writer] = [make(pools[0]!, 'a'), make(pools[1]!, 'b'), make(pools[2]!, 'w')];
  await a.ready();
  for (const s of [a, b, writer]) {
    s.listener.start();
    if (!(await s.listener.waitUntilListening(20_000))) throw new Error('listener did not start');
  }
  const HOUR = 3_600_000;
  const record = () => {
    const now = Date.now();
    return {
      data: { cookie: { originalMaxAge: HOUR }, userId: 'u' },
      expiresAt: now + HOUR,
      createdAt: now,
      lastActiveAt: now,
      userId: 'u',
      version: 0,
    };
  };
  const rows: RevocationRow[] = [];
  let seq = 0;
  for (const writers of [0, 64]) {
    const stop = { done: false };
    const keys = Array.from({ length: writers }, (_, i) => `load-${writers}-${i}`);
    for (const k of keys) await writer.create(k, record());
    const load = Promise.all(
      keys.map(async (k) => {
        let n = 0;
        while (!stop.done) {
          const now = Date.now();
          await writer.update(k, {
            set: { n: ++n },
            unset: [],
            data: { cookie: { originalMaxAge: HOUR }, userId: 'u', n },
            expiresAt: now + HOUR,
            lastActiveAt: now,
            userId: 'u',
            baseVersion: 0,
          });
        }
      }),
    );
    const samples: number[] = [];
    for (let i = 0; i < 60; i++) {
      const key = `revoke-${seq++}`;
      await a.create(key, record());
      await b.get(key);
      await b.get(key); // cached on b
      // From the moment the logout has committed (its statement answered): how long the other
      // server still serves the session.
      await a.destroy(key);
      const t0 = performance.now();
      while ((await b.get(key)) !== null) await new Promise((r) => setImmediate(r));
      samples.push(performance.now() - t0);
    }
    stop.done = true;
    await load;
    samples.sort((x, y) => x - y);
    rows.push({
      writers,
      samples: samples.length,
      p50Ms: round(percentile(samples, 50)),
      p99Ms: round(percentile(samples, 99)),
      maxMs: round(samples[samples.length - 1]!),
    });
    console.error(
      `revocation seen by another server, ${writers} writers: p99 ${round(percentile(samples, 99))} ms`,
    );
  }
  for (const s of [a, b, writer]) await s.close();
  for (const p of pools) await p.end();
  await dropDatabase(adminUrl, name);
  return rows;
}

async function main(): Promise<void> {
  if (args.has('serve')) return serve();
  // DATABASE_URL (a server where it may create databases), else the embedded PostgreSQL of
  // `.data/postgres`, as the other benchmarks and the tests use.
  const { openDatabase } = await import('../src/dev/index.js');
  const database = await openDatabase({
    dataDir: fileURLToPath(new URL('../.data/postgres', import.meta.url)),
  });
  try {
    await measure(database.url, database.embedded);
  } finally {
    await database.close();
  }
}

async function measure(adminUrl: string, embedded: boolean): Promise<void> {
  const rounds = Number(args.get('rounds') ?? 3);
  const started = new Date().toISOString();
  const load = loadavg().map((v) => round(v));
  const out: Record<string, unknown> = { started, loadBefore: load, cpus: cpus().length, embedded };
  if (args.has('revocation') || !(args.has('route-only') || args.has('store-only'))) {
    const rows = await revocationBench(adminUrl);
    out.revocation = rows;
    console.log('\n| concurrent writers | logouts seen by another server: p50 / p99 / max (ms) |');
    console.log('| --- | --- |');
    for (const r of rows)
      console.log(`| ${r.writers} | ${r.p50Ms} / ${r.p99Ms} / ${r.maxMs} (n=${r.samples}) |`);
    if (args.has('revocation')) {
      console.log(`\n${JSON.stringify(out)}`);
      return;
    }
  }
  if (!args.has('store-only')) {
    const rows = await routeBench(adminUrl, Number(args.get('seconds') ?? 8), rounds);
    out.route = rows.map((r) => ({
      ...r,
      medianRps: round0(median(r.rps)),
      medianSqlPerRequest: round(median(r.sqlPerRequest), 3),
    }));
    console.log('\n| sessions | stack | req/s (median) | rounds | SQL/request |');
    console.log('| --- | --- | --- | --- | --- |');
    for (const r of rows) {
      console.log(
        `| ${r.sessions} | ${r.stack} | ${round0(median(r.rps))} | ${r.rps.map(round0).join(', ')} | ${round(median(r.sqlPerRequest), 3)} |`,
      );
    }
  }
  if (!args.has('route-only')) {
    // The store cells are short and the machine noisy: whole passes, `rounds` times, medians per
    // cell, and each invalidation mode's ratio to "off" per round (then the median).
    const passes: StoreRow[][] = [];
    for (let round = 0; round < rounds; round++) {
      passes.push(await storeBench(adminUrl, Number(args.get('seconds') ?? 3)));
    }
    const rows = passes[0]!.map((first, i) => {
      const cells = passes.map((p) => p[i]!);
      const offs = passes.map(
        (p) => p.find((r) => r.op === first.op && r.writers === first.writers && r.mode === 'off')!,
      );
      return {
        op: first.op,
        writers: first.writers,
        mode: first.mode,
        opsPerSecond: median(cells.map((c) => c.opsPerSecond)),
        rounds: cells.map((c) => round0(c.opsPerSecond)),
        unrelatedP99Ms: median(cells.map((c) => c.unrelatedP99Ms)),
        vsOff: median(cells.map((c, r) => c.opsPerSecond / offs[r]!.opsPerSecond)),
        p99VsOff: median(cells.map((c, r) => c.unrelatedP99Ms / offs[r]!.unrelatedP99Ms)),
      };
    });
    out.store = rows.map((r) => ({
      ...r,
      opsPerSecond: round0(r.opsPerSecond),
      unrelatedP99Ms: round(r.unrelatedP99Ms),
      vsOff: round(r.vsOff, 3),
      p99VsOff: round(r.p99VsOff, 3),
    }));
    console.log(
      `\n| op | writers | mode | ops/s (median of ${rounds}) | rounds | vs off | unrelated INSERT p99 (ms) | p99 vs off |`,
    );
    console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const r of rows) {
      console.log(
        `| ${r.op} | ${r.writers} | ${r.mode} | ${round0(r.opsPerSecond)} | ${r.rounds.join(', ')} | ${round(r.vsOff * 100)}% | ${round(r.unrelatedP99Ms)} | ${round(r.p99VsOff, 2)}× |`,
      );
    }
  }
  out.loadAfter = loadavg().map((v) => round(v));
  console.log(`\n${JSON.stringify(out)}`);
}

await main();
