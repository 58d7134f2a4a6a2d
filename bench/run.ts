/**
 * `npm run bench` — pgsession against the incumbent, the floor and the ceiling, on this machine,
 * in one run (bench/RESULTS.md has the latest record and how to read it).
 *
 *   npm run bench                    full run (~12 minutes)
 *   npm run bench -- --quick         smoke run (~2 minutes)
 *   npm run bench -- --only=throughput,revocation   some sections only
 *
 * Uses DATABASE_URL, or the embedded PostgreSQL of `.data/postgres` (started if needed), and a
 * fresh database per configuration (dropped at the end). Every server runs in a child process
 * (`bench/server.ts`) on 127.0.0.1, pinned to CPU 1; the throughput load comes from wrk on CPU 0
 * (`lib/wrk.ts`), the other sections' from this process. Prints the tables and targets, writes
 * `bench/results/latest.json` and the charts in docs/bench/.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { hashId } from '../src/core/id.js';
import { openDatabase } from '../src/dev/index.js';
import { killAllServers, type ServerProcess, type ServerStats, startServer } from './lib/child.js';
import { configName, USER_PASSWORD, userEmail } from './lib/config.js';
import { Admin } from './lib/db.js';
import { type DeviceBoundResult, deviceBoundCost } from './lib/dbsc.js';
import { login, request } from './lib/http.js';
import { type LoadResult, runLoad } from './lib/load.js';
import { median, round, summarize } from './lib/stats.js';
import { memoryChart, revocationChart, type ThroughputBar, throughputChart } from './lib/svg.js';
import { type Row, throughput } from './lib/throughput.js';

// ---------------------------------------------------------------------------------------------
// Plan

const SECTIONS = ['throughput', 'deviceBound', 'memory', 'revocation', 'storm', 'prune'] as const;
type Section = (typeof SECTIONS)[number];

interface Plan {
  quick: boolean;
  sections: Section[];
  rounds: number;
  warmupSec: number;
  durationSec: number;
  connections: number;
  rotatingSessions: number;
  memorySizes: number[];
  revocationTries: number;
  stormBursts: number;
  stormSize: number;
  pruneRows: number;
  pruneBaselineSec: number;
}

function parsePlan(argv: string[]): Plan {
  const quick = argv.includes('--quick');
  const value = (name: string) => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const num = (name: string, fallback: number) => {
    const v = value(name);
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number`);
    return n;
  };
  const only = value('only');
  const sections = only ? (only.split(',') as Section[]) : [...SECTIONS];
  for (const s of sections)
    if (!SECTIONS.includes(s)) throw new Error(`unknown section ${s} (${SECTIONS.join(', ')})`);
  for (const a of argv) {
    if (a !== '--quick' && !/^--(only|rounds|duration|warmup|prune-rows|sessions)=/.test(a)) {
      throw new Error(`unknown argument ${a}`);
    }
  }
  return {
    quick,
    sections,
    // Five: the framework ratios move by several points between rounds on a shared machine, and
    // the median of five is steadier than that of three.
    rounds: num('rounds', quick ? 1 : 5),
    warmupSec: num('warmup', quick ? 1 : 2),
    durationSec: num('duration', quick ? 3 : 8),
    connections: 50,
    rotatingSessions: num('sessions', quick ? 1_000 : 10_000),
    memorySizes: quick ? [10_000] : [10_000, 100_000],
    revocationTries: quick ? 50 : 200,
    stormBursts: quick ? 1 : 5,
    stormSize: 32,
    pruneRows: num('prune-rows', quick ? 50_000 : 1_000_000),
    pruneBaselineSec: quick ? 2 : 5,
  };
}

// ---------------------------------------------------------------------------------------------
// Helpers

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const log = (line: string) => process.stderr.write(`${line}\n`);
const ROOT = fileURLToPath(new URL('..', import.meta.url));

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await probe();
    if (value !== undefined) return value;
    await sleep(50);
  }
  throw new Error(`bench: timed out waiting for ${what}`);
}

/** Wait until a server's cache is serving (its listener is up), after a first request started it. */
async function cacheListening(server: ServerProcess): Promise<void> {
  await waitFor(`the cache of ${configName(server.config)} to listen`, async () =>
    (await server.stats()).cache?.listening === true ? true : undefined,
  );
}

function assertClean(what: string, r: LoadResult): void {
  if (r.non2xx || r.errors || r.timeouts) {
    throw new Error(`bench: ${what}: ${r.non2xx} non-2xx, ${r.errors} errors, ${r.timeouts} timeouts`);
  }
}

const fmt = (v: number, digits = 2) => (Number.isFinite(v) ? v.toFixed(digits) : '—');
const pct = (v: number) => (Number.isFinite(v) ? `${(v * 100).toFixed(1)}%` : '—');
const fmtInt = (v: number) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : '—');

function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  return [
    line(headers),
    `|${widths.map((w, i) => (i === 0 ? `${'-'.repeat(w + 1)}-` : `${'-'.repeat(w + 1)}:`)).join('|')}|`,
    ...rows.map(line),
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------
// 2. Memory

async function memory(plan: Plan, admin: Admin) {
  const db = await admin.createDatabase('memory');
  const largest = Math.max(...plan.memorySizes);
  // Bounds raised so every session fits: this measures the cost per session, not the default bounds.
  const server = await startServer({
    framework: 'express',
    layer: 'pgsession',
    databaseUrl: db.url,
    cacheMax: largest,
    cacheMaxSize: 1024 * 1024 * 1024,
  });
  const client = new pg.Client({ connectionString: db.url, application_name: 'pgsession-bench-runner' });
  await client.connect();
  try {
    if (!server.cacheActive) throw new Error('PgStore has no cache in this tree');
    // A real login writes the row that every generated session copies (same shape and size).
    const cookie = await login(server.url);
    const { rows } = await client.query<{ sess: Record<string, unknown> }>(
      'SELECT sess FROM session LIMIT 1',
    );
    const template = rows[0]!.sess;
    await client.query('DELETE FROM session');
    const prefix = 'bench-mem-';
    const started = performance.now();
    await client.query(
      `INSERT INTO session (sid, sess, expire, created_at, last_active_at, user_id, version, id_hashed)
       SELECT rtrim(translate(encode(sha256(convert_to($1 || g, 'UTF8')), 'base64'), '+/', '-_'), '='),
              ($2::jsonb || jsonb_build_object(
                'userId', g,
                'csrfToken', rtrim(translate(encode(sha256(convert_to('csrf' || g, 'UTF8')), 'base64'), '+/', '-_'), '=')
              ))::json,
              now() + interval '7 days', now(), now(), g::text, 0, true
       FROM generate_series(0, $3::int - 1) g`,
      [prefix, JSON.stringify(template), largest],
    );
    const insertMs = performance.now() - started;
    const check = await client.query('SELECT 1 FROM session WHERE sid = $1', [hashId(`${prefix}7`)]);
    if (check.rowCount !== 1) throw new Error('bench: SQL and JS storage keys differ');
    void cookie;

    // Start the listener (the first read goes through and starts it), then the baseline.
    await request(`${server.url}/__populate`, { method: 'POST', json: { prefix, from: 0, to: 1 } });
    await cacheListening(server);
    const gc = async () =>
      JSON.parse((await request(`${server.url}/__gc`, { method: 'POST' })).body) as {
        memory: ServerStats['memory'];
        cache: { entries: number; bytes: number };
      };
    const base = await gc();
    const points: Array<{
      sessions: number;
      entries: number;
      rssBytes: number;
      heapUsedBytes: number;
      rssPerSession: number;
      heapPerSession: number;
      estimatedPerSession: number;
      populateMs: number;
    }> = [];
    let loaded = 0;
    for (const size of [...plan.memorySizes].sort((a, b) => a - b)) {
      const res = await request(`${server.url}/__populate`, {
        method: 'POST',
        json: { prefix, from: loaded, to: size },
        // 100k reads through the store: minutes on a busy machine.
        timeoutMs: 1_800_000,
      });
      const populated = JSON.parse(res.body) as { found: number; ms: number };
      if (populated.found !== size - loaded)
        throw new Error(`bench: populate found ${populated.found} of ${size - loaded}`);
      loaded = size;
      const m = await gc();
      const entries = m.cache.entries - base.cache.entries;
      points.push({
        sessions: size,
        entries: m.cache.entries,
        rssBytes: m.memory.rss,
        heapUsedBytes: m.memory.heapUsed,
        rssPerSession: (m.memory.rss - base.memory.rss) / entries,
        heapPerSession: (m.memory.heapUsed - base.memory.heapUsed) / entries,
        estimatedPerSession: m.cache.bytes / m.cache.entries,
        populateMs: populated.ms,
      });
      log(
        `  memory ${fmtInt(size)} sessions: heap ${fmtInt(points.at(-1)!.heapPerSession)} B/session, RSS ${fmtInt(points.at(-1)!.rssPerSession)} B/session`,
      );
    }
    return {
      templateBytes: JSON.stringify(template).length,
      insertMs,
      baseline: { rssBytes: base.memory.rss, heapUsedBytes: base.memory.heapUsed },
      points,
    };
  } finally {
    await client.end();
    await server.stop();
    await admin.dropDatabase(db.name);
  }
}

// ---------------------------------------------------------------------------------------------
// 3. Revocation

async function revocation(plan: Plan, admin: Admin) {
  const db = await admin.createDatabase('revocation');
  const a = await startServer({ framework: 'express', layer: 'pgsession', databaseUrl: db.url });
  const b = await startServer({ framework: 'express', layer: 'pgsession', databaseUrl: db.url });
  const agentA = new http.Agent({ keepAlive: true, maxSockets: 4 });
  const agentB = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    if (!a.cacheActive || !b.cacheActive) throw new Error('PgStore has no cache in this tree');
    // Start both listeners.
    const first = await login(a.url, undefined, agentA);
    await request(`${a.url}/dashboard`, { headers: { cookie: first }, agent: agentA });
    await request(`${b.url}/dashboard`, { headers: { cookie: first }, agent: agentB });
    await cacheListening(a);
    await cacheListening(b);
    const statsB0 = await b.stats();

    const fromDone: number[] = [];
    const fromSent: number[] = [];
    const logoutMs: number[] = [];
    let polls = 0;
    for (let i = 0; i < plan.revocationTries; i++) {
      const cookie = await login(a.url, undefined, agentA);
      const headers = { cookie };
      for (const [url, agent] of [
        [a.url, agentA],
        [b.url, agentB],
        [b.url, agentB],
      ] as const) {
        const r = await request(`${url}/dashboard`, { headers, agent });
        if (r.status !== 200) throw new Error(`bench: warm-up got ${r.status}`);
      }
      const sent = performance.now();
      let done = Number.NaN;
      const logout = request(`${a.url}/logout`, { method: 'POST', headers, agent: agentA }).then((r) => {
        done = performance.now();
        if (r.status !== 204) throw new Error(`bench: logout got ${r.status}`);
      });
      // Poll B about every millisecond until it refuses the cookie.
      let refused = Number.NaN;
      while (performance.now() - sent < 5_000) {
        const pollStart = performance.now();
        const r = await request(`${b.url}/dashboard`, { headers, agent: agentB });
        polls++;
        if (r.status === 401) {
          refused = performance.now();
          break;
        }
        const wait = 1 - (performance.now() - pollStart);
        if (wait > 0) await sleep(wait);
      }
      await logout;
      if (Number.isNaN(refused)) throw new Error('bench: B still accepted the cookie 5 s after logout');
      fromDone.push(Math.max(0, refused - done));
      fromSent.push(refused - sent);
      logoutMs.push(done - sent);
    }
    const statsB1 = await b.stats();
    const cacheB = (s: ServerStats, k: string) => Number(s.cache?.[k] ?? 0);
    const summary = {
      tries: plan.revocationTries,
      afterLogoutResponse: summarize(fromDone),
      /** Every delay measured from the logout response, ms (the chart's histogram). */
      samples: fromDone,
      afterLogoutSent: summarize(fromSent),
      logoutRoundTrip: summarize(logoutMs),
      polls,
      bCacheHits: cacheB(statsB1, 'hits') - cacheB(statsB0, 'hits'),
      bBypasses: cacheB(statsB1, 'bypasses') - cacheB(statsB0, 'bypasses'),
      bInvalidations: cacheB(statsB1, 'invalidations') - cacheB(statsB0, 'invalidations'),
    };
    log(
      `  revocation: p50 ${fmt(summary.afterLogoutResponse.p50)} ms, p99 ${fmt(summary.afterLogoutResponse.p99)} ms after the logout response`,
    );
    return summary;
  } finally {
    agentA.destroy();
    agentB.destroy();
    await a.stop();
    await b.stop();
    await admin.dropDatabase(db.name);
  }
}

// ---------------------------------------------------------------------------------------------
// 4. Login storm

async function storm(plan: Plan, admin: Admin) {
  const db = await admin.createDatabase('auth');
  const server = await startServer(
    { framework: 'express', layer: 'pgsession', databaseUrl: db.url, users: plan.stormSize },
    { timeoutMs: 120_000 },
  );
  try {
    const credentials = (i: number) => ({ email: userEmail(i), password: USER_PASSWORD });
    const burst = async (label: string) => {
      await request(`${server.url}/__eld/reset`, { method: 'POST' });
      const started = performance.now();
      const results = await Promise.allSettled(
        Array.from({ length: plan.stormSize }, (_, i) => login(server.url, credentials(i))),
      );
      const ms = performance.now() - started;
      const eld = JSON.parse((await request(`${server.url}/__eld`)).body) as {
        p50: number;
        p99: number;
        max: number;
        mean: number;
      };
      const ok = results.filter((r) => r.status === 'fulfilled').length;
      log(
        `  login storm ${label}: ${ok}/${plan.stormSize} logins in ${fmtInt(ms)} ms, event-loop delay p99 ${fmt(eld.p99)} ms`,
      );
      if (ok !== plan.stormSize) {
        const failed = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
        throw new Error(`bench: ${plan.stormSize - ok} logins failed: ${String(failed.reason)}`);
      }
      await sleep(300);
      return { ...eld, ms, ok };
    };
    // The first burst after start-up (JIT, argon2's first allocations) is reported apart, as
    // every other section warms up before it measures.
    const cold = await burst('(cold, not counted)');
    const bursts = [];
    for (let i = 0; i < plan.stormBursts; i++) bursts.push(await burst(`${i + 1}/${plan.stormBursts}`));
    return {
      concurrentLogins: plan.stormSize,
      /** libuv's thread pool, where argon2 hashes: 4 unless UV_THREADPOOL_SIZE says otherwise. */
      threadPoolSize: Number(process.env.UV_THREADPOOL_SIZE) || 4,
      cold,
      bursts,
      worstP99: Math.max(...bursts.map((b) => b.p99)),
      medianP99: median(bursts.map((b) => b.p99)),
      maxDelay: Math.max(...bursts.map((b) => b.max)),
      medianBurstMs: median(bursts.map((b) => b.ms)),
    };
  } finally {
    await server.stop();
    await admin.dropDatabase(db.name);
  }
}

// ---------------------------------------------------------------------------------------------
// 5. Pruning

async function prune(plan: Plan, admin: Admin) {
  const db = await admin.createDatabase('prune');
  const server = await startServer({
    framework: 'express',
    layer: 'pgsession',
    databaseUrl: db.url,
    cache: false,
  });
  const client = new pg.Client({ connectionString: db.url, application_name: 'pgsession-bench-runner' });
  await client.connect();
  try {
    const cookie = await login(server.url);
    const headers = { cookie };
    const { rows } = await client.query<{ sess: Record<string, unknown> }>(
      'SELECT sess FROM session LIMIT 1',
    );
    const template = JSON.stringify(rows[0]!.sess);
    let started = performance.now();
    await client.query(
      `INSERT INTO session (sid, sess, expire, created_at, last_active_at, user_id, version, id_hashed)
       SELECT 'expired-' || g, $1::json, now() - interval '1 hour' - g * interval '1 second',
              now() - interval '8 days', now() - interval '7 days', (g % 50000)::text, 0, true
       FROM generate_series(1, $2::int) g`,
      [template, plan.pruneRows],
    );
    const insertMs = performance.now() - started;
    // As in a long-running table: vacuumed and analyzed, so the baseline isn't autovacuum's.
    await client.query('VACUUM ANALYZE session');
    log(`  pruning: ${fmtInt(plan.pruneRows)} expired rows inserted in ${fmtInt(insertMs)} ms`);

    const target = `${server.url}/dashboard`;
    const load = (durationSec: number, until?: Promise<unknown>) =>
      runLoad({ url: target, headers, connections: plan.connections, durationSec, until });
    assertClean('prune warm-up', await load(plan.warmupSec));
    const before = await load(plan.pruneBaselineSec);
    assertClean('before pruning', before);

    started = performance.now();
    const pruning = request(`${server.url}/__prune`, { method: 'POST', timeoutMs: 600_000 }).then(
      (r) => JSON.parse(r.body) as { deleted: number; ms: number },
    );
    const during = await load(600, pruning);
    const pruned = await pruning;
    const left = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM session');
    const result = {
      rows: plan.pruneRows,
      insertMs,
      deleted: pruned.deleted,
      pruneMs: pruned.ms,
      rowsLeft: left.rows[0]?.n ?? -1,
      before: pick(before),
      during: pick(during),
      p99Ratio: during.p99 / before.p99,
      failedDuring: during.non2xx + during.errors + during.timeouts,
    };
    log(
      `  pruning: ${fmtInt(pruned.deleted)} rows in ${fmtInt(pruned.ms)} ms; p99 ${fmt(before.p99)} ms before, ${fmt(during.p99)} ms during`,
    );
    return result;
  } finally {
    await client.end();
    await server.stop();
    await admin.dropDatabase(db.name);
  }
}

function pick(r: LoadResult) {
  return {
    rps: r.rps,
    p50: r.p50,
    p99: r.p99,
    max: r.max,
    maxGapMs: r.maxGapMs,
    responses: r.responses,
    seconds: r.seconds,
    failed: r.non2xx + r.errors + r.timeouts,
  };
}

// ---------------------------------------------------------------------------------------------
// Report

type Results = {
  throughput?: Awaited<ReturnType<typeof throughput>>;
  memory?: Awaited<ReturnType<typeof memory>>;
  revocation?: Awaited<ReturnType<typeof revocation>>;
  storm?: Awaited<ReturnType<typeof storm>>;
  prune?: Awaited<ReturnType<typeof prune>>;
  deviceBound?: DeviceBoundResult;
};

interface Target {
  target: string;
  measured: string;
  met: boolean | null;
}

/** Requests slower than this, or failing, count as blocked while pruning. */
const BLOCKED_MS = 1_000;

function targets(r: Results): Target[] {
  const out: Target[] = [];
  if (r.throughput) {
    const rows = r.throughput.rows;
    const row = (c: string) => rows.find((x) => x.case === c)!;
    for (const variant of ['', '/rotating']) {
      const pg = row(`express/pgsession${variant}`);
      const what = variant
        ? `Express, ${fmtInt(r.throughput.rotatingSessions)} sessions rotating`
        : 'Express, one cookie';
      out.push({
        target: `${what}: pgsession >= 85% of the ceiling`,
        measured: pct(pg.vsCeiling),
        met: pg.vsCeiling >= 0.85,
      });
      out.push({
        target: `${what}: pgsession >= 97% of the floor`,
        measured: pct(pg.vsFloor),
        met: pg.vsFloor >= 0.97,
      });
      out.push({
        target: `${what}: pgsession p99 <= 1.10 x the floor's`,
        measured: `x${fmt(pg.p99VsFloor)} (${fmt(pg.p99)} ms vs ${fmt(row(`express/floor${variant}`).p99)} ms)`,
        met: pg.p99VsFloor <= 1.1,
      });
      out.push({
        target: `${what}: 0 SQL reads per steady request (writes: throttled touches only)`,
        measured: `${fmt(pg.readsPerRequest ?? Number.NaN, 4)} reads, ${fmt(pg.writesPerRequest ?? Number.NaN, 4)} writes per request`,
        // The cache listener's health check is a SELECT every few seconds: below 0.001 per request.
        met: (pg.readsPerRequest ?? 1) < 0.001,
      });
    }
    for (const f of ['http', 'fastify', 'hono', 'web']) {
      const pg = row(`${f}/pgsession`);
      out.push({
        target: `${pg.frameworkLabel}: pgsession >= 90% of its floor`,
        measured: pct(pg.vsFloor),
        met: pg.vsFloor >= 0.9,
      });
    }
  }
  if (r.deviceBound) {
    const d = r.deviceBound;
    out.push({
      target: 'deviceBound on (enforce require): steady request within 10% of off (req/s)',
      measured: `${pct(d.ratio)} of off (${fmtInt(d.onRps)} vs ${fmtInt(d.offRps)} req/s), ${fmt(d.onSqlPerRequest, 4)} SQL/req`,
      met: d.ratio >= 0.9,
    });
    out.push({
      target: 'deviceBound on: server CPU per request within 10% of off',
      measured: `x${fmt(d.cpuRatio)} (${fmtInt(d.onCpu)} vs ${fmtInt(d.offCpu)} µs/req)`,
      met: d.cpuRatio <= 1.1,
    });
  }
  if (r.memory) {
    const at = r.memory.points.find((p) => p.sessions === 100_000);
    out.push({
      target: '<= 1 KB per cached session at 100k sessions',
      measured: at
        ? `${fmtInt(at.heapPerSession)} B heap, ${fmtInt(at.rssPerSession)} B RSS`
        : `not measured (--quick: ${fmtInt(r.memory.points[0]!.heapPerSession)} B heap at ${fmtInt(r.memory.points[0]!.sessions)})`,
      met: at ? Math.max(at.heapPerSession, at.rssPerSession) <= 1024 : null,
    });
  }
  if (r.revocation) {
    out.push({
      target: 'revocation seen by another process: p99 <= 20 ms',
      measured: `p99 ${fmt(r.revocation.afterLogoutResponse.p99)} ms (p50 ${fmt(r.revocation.afterLogoutResponse.p50)} ms)`,
      // Only meaningful if B really served from its cache (a bypassing cache refuses at once).
      met: r.revocation.bBypasses === 0 ? r.revocation.afterLogoutResponse.p99 <= 20 : null,
    });
  }
  if (r.storm) {
    out.push({
      target: `event-loop delay p99 <= 20 ms during ${r.storm.concurrentLogins} logins`,
      measured: `worst burst p99 ${fmt(r.storm.worstP99)} ms (median ${fmt(r.storm.medianP99)} ms)`,
      met: r.storm.worstP99 <= 20,
    });
  }
  if (r.prune) {
    const p = r.prune;
    out.push({
      target: `pruning ${fmtInt(p.rows)} rows: p99 <= 2x, never blocks`,
      measured: `p99 x${fmt(p.p99Ratio)}; slowest ${fmt(p.during.max)} ms, ${p.failedDuring} failed`,
      met: p.p99Ratio <= 2 && p.failedDuring === 0 && p.during.max < BLOCKED_MS,
    });
  }
  return out;
}

function report(plan: Plan, r: Results, tgs: Target[]): string {
  const parts: string[] = [];
  if (r.throughput) {
    const t = r.throughput;
    const groups = [
      {
        title: 'Express 5, one logged-in cookie',
        filter: (x: Row) => x.framework === 'express' && x.sessions === 'one',
      },
      {
        title: `Express 5, ${fmtInt(t.rotatingSessions)} distinct sessions in rotation`,
        filter: (x: Row) => x.framework === 'express' && x.sessions === 'many',
      },
      {
        title: 'node:http, Fastify 5, Hono 4, Fetch (one cookie)',
        filter: (x: Row) => x.framework !== 'express',
      },
    ];
    parts.push(
      `Throughput: authenticated GET /dashboard, wrk -t1 -c${plan.connections}, ${plan.durationSec} s x ${plan.rounds} round(s) (median; ratios per round, then median)`,
    );
    for (const g of groups) {
      parts.push(
        g.title,
        table(
          [
            'configuration',
            'req/s',
            'vs incumbent',
            'vs floor',
            'vs ceiling',
            'layer µs/req',
            'p50 ms',
            'p99 ms',
            'CPU µs/req',
            'SQL/req',
          ],
          t.rows
            .filter(g.filter)
            .map((x) => [
              g.title.startsWith('node') ? `${x.frameworkLabel}: ${x.label}` : x.label,
              fmtInt(x.rps),
              x.layer === 'incumbent' || Number.isNaN(x.vsIncumbent) ? '—' : `${fmt(x.vsIncumbent)}x`,
              x.layer === 'floor' ? '—' : pct(x.vsFloor),
              x.layer === 'ceiling' ? '—' : pct(x.vsCeiling),
              x.layer === 'ceiling' ? '—' : fmt(x.layerMicros, 1),
              fmt(x.p50),
              fmt(x.p99),
              fmtInt(x.cpuPerRequest),
              x.sqlPerRequest === null ? '— (no DB)' : fmt(x.sqlPerRequest, 4),
            ]),
        ),
        '',
      );
    }
    parts.push(
      'layer µs/req: 1e6/req/s − 1e6/req/s of the ceiling, i.e. what the session layer adds to each request on one core.',
      "SQL reads/writes per request: statements the server process sent (its pool, its clients, the cache's listener) per request received, counted inside it (pg_stat_statements is not loaded on this server). pgsession's writes on a steady request are throttled touches: at most one per session per touchAfter (60 s), so with many sessions in rotation they are sessions/60 per second.",
      '',
    );
  }
  if (r.deviceBound) {
    const d = r.deviceBound;
    parts.push(
      `Device-bound sessions (DBSC): Express 5 + pgsession, one bound session (its bound cookie checked on every request) vs deviceBound off, wrk -t1 -c${plan.connections}, ${plan.durationSec} s x ${plan.rounds} round(s)`,
      table(
        ['deviceBound', 'req/s', 'vs off', 'CPU µs/req', 'vs off', 'p99 ms'],
        [
          ['off', fmtInt(d.offRps), '—', fmtInt(d.offCpu), '—', fmt(d.offP99)],
          [
            "on (enforce: 'require')",
            fmtInt(d.onRps),
            pct(d.ratio),
            fmtInt(d.onCpu),
            `x${fmt(d.cpuRatio)}`,
            fmt(d.onP99),
          ],
        ],
      ),
      `per round (off / on): ${d.rounds.map((x) => `${fmtInt(x.off)} / ${fmtInt(x.on)} req/s, ${fmtInt(x.offCpu)} / ${fmtInt(x.onCpu)} µs`).join('; ')}; SQL per request with it on: ${fmt(d.onSqlPerRequest, 4)}`,
      '',
    );
  }
  if (r.memory) {
    parts.push(
      'Memory: one pgsession process, sessions loaded into its cache (after global.gc())',
      table(
        ['cached sessions', 'heap/session', 'RSS/session', 'cache estimate/session', 'heap used', 'RSS'],
        r.memory.points.map((p) => [
          fmtInt(p.sessions),
          `${fmtInt(p.heapPerSession)} B`,
          `${fmtInt(p.rssPerSession)} B`,
          `${fmtInt(p.estimatedPerSession)} B`,
          `${fmt(p.heapUsedBytes / 2 ** 20, 1)} MiB`,
          `${fmt(p.rssBytes / 2 ** 20, 1)} MiB`,
        ]),
      ),
      `session JSON: ${r.memory.templateBytes} bytes; baseline heap ${fmt(r.memory.baseline.heapUsedBytes / 2 ** 20, 1)} MiB, RSS ${fmt(r.memory.baseline.rssBytes / 2 ** 20, 1)} MiB`,
      '',
    );
  }
  if (r.revocation) {
    const v = r.revocation;
    parts.push(
      `Revocation: logout on process A, time until process B refuses the cookie (${v.tries} tries, B polled every ~1 ms)`,
      table(
        ['measured from', 'p50 ms', 'p99 ms', 'max ms'],
        [
          [
            'logout response received',
            fmt(v.afterLogoutResponse.p50),
            fmt(v.afterLogoutResponse.p99),
            fmt(v.afterLogoutResponse.max),
          ],
          [
            'logout request sent',
            fmt(v.afterLogoutSent.p50),
            fmt(v.afterLogoutSent.p99),
            fmt(v.afterLogoutSent.max),
          ],
        ],
      ),
      `B served ${fmtInt(v.bCacheHits)} requests from its cache, ${v.bBypasses} bypasses, ${v.bInvalidations} invalidations received`,
      '',
    );
  }
  if (r.storm) {
    const s = r.storm;
    parts.push(
      `Login storm: ${s.concurrentLogins} concurrent logins (argon2id, default cost; libuv thread pool: ${s.threadPoolSize} threads), event-loop delay inside the server`,
      table(
        ['burst', 'logins', 'burst ms', 'ELD p50 ms', 'ELD p99 ms', 'ELD max ms'],
        [
          { ...s.cold, label: 'cold (not counted)' },
          ...s.bursts.map((b, i) => ({ ...b, label: String(i + 1) })),
        ].map((b) => [b.label, String(b.ok), fmtInt(b.ms), fmt(b.p50), fmt(b.p99), fmt(b.max)]),
      ),
      '',
    );
  }
  if (r.prune) {
    const p = r.prune;
    parts.push(
      `Pruning: ${fmtInt(p.deleted)} expired rows deleted by prune() in ${fmt(p.pruneMs / 1000)} s (${fmtInt(p.deleted / (p.pruneMs / 1000))} rows/s), cache off`,
      table(
        ['authenticated GET /dashboard', 'req/s', 'p50 ms', 'p99 ms', 'max ms', 'longest stall ms', 'failed'],
        [
          [
            'before pruning',
            fmtInt(p.before.rps),
            fmt(p.before.p50),
            fmt(p.before.p99),
            fmt(p.before.max),
            fmt(p.before.maxGapMs),
            String(p.before.failed),
          ],
          [
            'while pruning',
            fmtInt(p.during.rps),
            fmt(p.during.p50),
            fmt(p.during.p99),
            fmt(p.during.max),
            fmt(p.during.maxGapMs),
            String(p.during.failed),
          ],
        ],
      ),
      '',
    );
  }
  parts.push(
    'Targets',
    table(
      ['target', 'measured', 'met'],
      tgs.map((t) => [t.target, t.measured, t.met === null ? 'n/a' : t.met ? 'yes' : 'NO']),
    ),
  );
  return parts.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Main

/** The SVG charts of the sections that ran, into docs/bench/ (see lib/svg.ts). */
function writeCharts(r: Results, date: string, command: string, loads: Record<string, number>): string[] {
  const dir = path.join(ROOT, 'docs', 'bench');
  mkdirSync(dir, { recursive: true });
  const caption = (section: string) => ({
    date: `${date.slice(0, 16).replace('T', ' ')} UTC`,
    command,
    load: `load average ${fmt(loads[section] ?? Number.NaN, 1)} on ${os.cpus().length} CPUs (shared machine)`,
  });
  const written: string[] = [];
  const write = (name: string, content: string) => {
    writeFileSync(path.join(dir, name), content);
    written.push(`docs/bench/${name}`);
  };
  if (r.throughput) {
    const group = (x: Row) =>
      x.framework === 'express'
        ? `Express 5, ${x.sessions === 'one' ? 'one session' : `${fmtInt(r.throughput!.rotatingSessions)} sessions rotating`}`
        : x.frameworkLabel;
    const bars: ThroughputBar[] = r.throughput.rows.map((x) => ({
      group: group(x),
      layer: x.layer,
      label: x.label,
      rps: x.rps,
      ofCeiling: x.layer === 'ceiling' ? 1 : x.vsCeiling,
    }));
    write('throughput.svg', throughputChart(bars, caption('throughput')));
  }
  if (r.revocation) {
    const v = r.revocation;
    write(
      'revocation.svg',
      revocationChart(v.samples, v.afterLogoutResponse.p50, v.afterLogoutResponse.p99, caption('revocation')),
    );
  }
  if (r.memory) write('memory.svg', memoryChart(r.memory.points, caption('memory')));
  return written;
}

/** The newest modification time of any file under `dir`, ms. */
function newest(dir: string): number {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) latest = Math.max(latest, statSync(path.join(entry.parentPath, entry.name)).mtimeMs);
  }
  return latest;
}

/** The servers load pgsession from its build (see apps/package.ts): rebuild it if a source is newer. */
function ensureBuild(): string {
  if (process.env.BENCH_SOURCE === 'src') return 'sources through tsx (BENCH_SOURCE=src)';
  const built = path.join(ROOT, 'dist', 'index.js');
  if (!existsSync(built) || statSync(built).mtimeMs < newest(path.join(ROOT, 'src'))) {
    log('dist/ is older than src/: npm run build');
    const r = spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
    if (r.status !== 0) throw new Error('bench: npm run build failed');
  }
  return 'the build in dist/ (npm run build)';
}

async function main(): Promise<void> {
  const plan = parsePlan(process.argv.slice(2));
  const started = Date.now();
  const build = ensureBuild();
  const database = await openDatabase({ dataDir: `${ROOT}.data/postgres` });
  const admin = await Admin.connect(database.url);
  const interrupted = () => {
    killAllServers();
    void admin.close().finally(() => database.close().finally(() => process.exit(130)));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);

  const results: Results = {};
  /** 1-minute load average as each section started: other work on a shared machine shows here. */
  const loadAverages: Record<string, number> = {};
  const sectionSeconds: Record<string, number> = {};
  try {
    const version = (await admin.client.query<{ v: string }>("SELECT current_setting('server_version') AS v"))
      .rows[0]?.v;
    log(
      `pgsession bench${plan.quick ? ' (--quick)' : ''}: PostgreSQL ${version}${database.embedded ? ' (embedded)' : ''}, Node ${process.version}, ${os.cpus().length} CPUs; pgsession from ${build}`,
    );
    for (const section of plan.sections) {
      const load = os.loadavg()[0]!;
      loadAverages[section] = load;
      const sectionStart = performance.now();
      log(`${section}… (load average ${fmt(load)} on ${os.cpus().length} CPUs)`);
      if (section === 'throughput')
        results.throughput = await throughput(plan, admin, () => os.loadavg()[0]!, log);
      if (section === 'deviceBound') results.deviceBound = await deviceBoundCost(plan, admin, log);
      if (section === 'memory') results.memory = await memory(plan, admin);
      if (section === 'revocation') results.revocation = await revocation(plan, admin);
      if (section === 'storm') results.storm = await storm(plan, admin);
      if (section === 'prune') results.prune = await prune(plan, admin);
      sectionSeconds[section] = (performance.now() - sectionStart) / 1000;
    }
    const tgs = targets(results);
    const text = report(plan, results, tgs);
    process.stdout.write(`\n${text}\n\nTotal time: ${fmt((Date.now() - started) / 1000, 0)} s\n`);

    const json = {
      date: new Date().toISOString(),
      command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
      machine: {
        cpus: os.cpus().length,
        cpuModel: os.cpus()[0]?.model ?? null,
        memoryBytes: os.totalmem(),
        platform: `${os.type()} ${os.release()}`,
        node: process.version,
        postgres: version,
        embeddedPostgres: database.embedded,
        pgsession: build,
      },
      plan,
      loadAverages,
      sectionSeconds,
      results,
      targets: tgs,
      totalSeconds: (Date.now() - started) / 1000,
    };
    const dir = fileURLToPath(new URL('./results/', import.meta.url));
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      `${dir}latest.json`,
      `${JSON.stringify(json, (_k, v) => (typeof v === 'number' ? round(v, 4) : v), 2)}\n`,
    );
    log(`written bench/results/latest.json`);
    for (const file of writeCharts(results, json.date, json.command, loadAverages)) log(`written ${file}`);
  } finally {
    killAllServers();
    await admin.close();
    await database.close();
  }
}

main().catch((err: unknown) => {
  killAllServers();
  process.stderr.write(`bench failed: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
