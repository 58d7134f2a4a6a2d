/**
 * The throughput section (issue 15's method): the same app with four session layers —
 * express-session + connect-pg-simple (the incumbent), pgsession with only the two imports
 * swapped, the floor (`lib/floor.ts`) and the ceiling (no session layer) — measured in
 * alternating rounds in one run, each server pinned to one core and wrk on the other. Express is
 * measured with one logged-in cookie and with many distinct sessions in rotation (the cache at
 * scale); raw node:http, Fastify and Hono with one cookie, pgsession against a floor and a
 * ceiling built the same way for that server.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { type Framework, type Layer, withoutSessions } from '../apps/common.js';
import { type ServerProcess, startServer } from './child.js';
import { concurrently } from './concurrently.js';
import { COOKIE_NAME, configName, SECRET } from './config.js';
import type { Admin } from './db.js';
import { login, request } from './http.js';
import { median } from './stats.js';
import { runWrk } from './wrk.js';

export interface ThroughputPlan {
  rounds: number;
  warmupSec: number;
  durationSec: number;
  connections: number;
  /** Distinct sessions of the rotating variant. */
  rotatingSessions: number;
}

/** One measured configuration: a server and the cookies it is driven with. */
interface Case {
  framework: Framework;
  layer: Layer;
  /** 'one': one logged-in cookie; 'many': `rotatingSessions` cookies in turn. */
  sessions: 'one' | 'many';
}

const FRAMEWORK_LABEL: Record<Framework, string> = {
  express: 'Express 5',
  http: 'node:http',
  fastify: 'Fastify 5',
  hono: 'Hono 4',
  web: 'Fetch (pgsession/web, node:http)',
};

export const LAYER_LABEL: Record<Layer, string> = {
  incumbent: 'express-session + connect-pg-simple',
  pgsession: 'pgsession',
  floor: 'floor (minimal session layer)',
  ceiling: 'ceiling (no session layer)',
  ceilingDict: 'ceiling + dictionary-mode req/res (no session layer)',
};

const SERVERS: Array<{ framework: Framework; layer: Layer }> = [
  { framework: 'express', layer: 'incumbent' },
  { framework: 'express', layer: 'pgsession' },
  { framework: 'express', layer: 'floor' },
  { framework: 'express', layer: 'ceiling' },
  { framework: 'express', layer: 'ceilingDict' },
  ...(['http', 'fastify', 'hono', 'web'] as const).flatMap((framework) =>
    (['pgsession', 'floor', 'ceiling'] as const).map((layer) => ({ framework, layer })),
  ),
];

export const caseName = (c: Case): string => `${configName(c)}${c.sessions === 'many' ? '/rotating' : ''}`;

export interface Run {
  case: string;
  round: number;
  rps: number;
  p50: number;
  p99: number;
  /** Server CPU (user + system) per request, µs. */
  cpuPerRequest: number;
  /** Statements the server sent per request received (pool: the request path; all: plus the cache listener). */
  sqlPerRequest: number | null;
  poolSqlPerRequest: number | null;
  /** Statements that read (SELECT) and that write (throttled touches, saves), per request. */
  readsPerRequest: number | null;
  writesPerRequest: number | null;
  /** Load average (1 min) when the measurement started. */
  load: number;
}

export interface Row {
  framework: Framework;
  frameworkLabel: string;
  layer: Layer;
  label: string;
  sessions: 'one' | 'many';
  case: string;
  rps: number;
  p50: number;
  p99: number;
  cpuPerRequest: number;
  sqlPerRequest: number | null;
  poolSqlPerRequest: number | null;
  readsPerRequest: number | null;
  writesPerRequest: number | null;
  /** Per-round ratios, then the median (NaN where the group has no such layer). */
  vsIncumbent: number;
  vsFloor: number;
  vsCeiling: number;
  /** 1e6/rps − 1e6/ceiling's rps, per round, median: what the session layer costs per request. */
  layerMicros: number;
  /** p99 / the floor's p99, per round, median. */
  p99VsFloor: number;
}

/** pgsession's default `touchAfter` (express-session's stores have none: they touch every request). */
const TOUCH_AFTER_MS = 60_000;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function loginMany(server: ServerProcess, count: number): Promise<string[]> {
  return concurrently(count, 32, () => login(server.url));
}

async function visitAll(server: ServerProcess, cookies: readonly string[]): Promise<void> {
  await concurrently(cookies.length, 32, async (i) => {
    const res = await request(`${server.url}/dashboard`, { headers: { cookie: cookies[i]! } });
    if (res.status !== 200)
      throw new Error(`bench: ${configName(server.config)}: a logged-in cookie got ${res.status}`);
  });
}

/** Wait until the server has sent no write for a second: the touches a visit pass started have landed. */
async function writesSettled(server: ServerProcess, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = (await server.stats()).writeStatements;
  while (Date.now() < deadline) {
    await sleep(1_000);
    const now = (await server.stats()).writeStatements;
    if (now === last) return;
    last = now;
  }
}

export async function throughput(
  plan: ThroughputPlan,
  admin: Admin,
  loadAverage: () => number,
  log: (line: string) => void,
) {
  const servers = new Map<
    string,
    { server: ServerProcess; one: string[]; many: string[]; loggedInAt: number }
  >();
  const databases: string[] = [];
  const runs: Run[] = [];
  try {
    // Every server starts once and is logged into (one cookie, and the rotating set) before any
    // measurement; the rounds then only drive load.
    const dbs = new Map<string, { name: string; url: string }>();
    for (const s of SERVERS) {
      if (s.layer !== 'incumbent' && s.layer !== 'pgsession') continue;
      const db = await admin.createDatabase(`${s.framework}_${s.layer}`);
      databases.push(db.name);
      dbs.set(configName(s), db);
    }
    const prepare = async (s: (typeof SERVERS)[number]) => {
      const db = dbs.get(configName(s));
      const server = await startServer({ ...s, databaseUrl: db?.url });
      const name = configName(s);
      if (server.cacheActive) {
        // The cache starts with its listener (on the first read) and forgets what came before:
        // start it first (a signed cookie of no session is a read), so the logins below are
        // cached as they are written.
        const nobody = randomBytes(24).toString('base64url');
        const mac = createHmac('sha256', SECRET).update(nobody).digest('base64').replace(/=+$/, '');
        await request(`${server.url}/dashboard`, {
          headers: { cookie: `${COOKIE_NAME}=${encodeURIComponent(`s:${nobody}.${mac}`)}` },
        });
        const deadline = Date.now() + 60_000;
        while ((await server.stats()).cache?.listening !== true) {
          if (Date.now() > deadline) throw new Error(`bench: the cache of ${name} never listened`);
          await sleep(50);
        }
      }
      const one = withoutSessions(s.layer) ? ['connect.sid=none'] : [await login(server.url)];
      let many: string[] = [];
      if (s.framework === 'express') {
        const started = performance.now();
        many = withoutSessions(s.layer)
          ? Array.from({ length: plan.rotatingSessions }, (_, i) => `connect.sid=none${i}`)
          : await loginMany(server, plan.rotatingSessions);
        // Every session is requested once before any measurement (and must be logged in).
        await visitAll(server, many);
        log(
          `  ${name}: ${many.length} sessions logged in and visited in ${Math.round(performance.now() - started)} ms`,
        );
      }
      servers.set(configName(s), { server, one, many, loggedInAt: performance.now() });
    };
    // Two at a time (start-up is not measured, but a busy machine makes it slow).
    const queue = [...SERVERS];
    const starter = async () => {
      for (let s = queue.shift(); s; s = queue.shift()) await prepare(s);
    };
    await Promise.all([starter(), starter()]);

    // The layers compared with each other (one framework, one kind of load) are measured back to
    // back, so the machine's drift between their windows is as small as it can be: Express with
    // one cookie, Express rotating, then each other framework.
    const cases: Case[] = [
      ...SERVERS.filter((s) => s.framework === 'express').map((s) => ({ ...s, sessions: 'one' as const })),
      ...SERVERS.filter((s) => s.framework === 'express').map((s) => ({ ...s, sessions: 'many' as const })),
      ...SERVERS.filter((s) => s.framework !== 'express').map((s) => ({ ...s, sessions: 'one' as const })),
    ];
    for (let round = 0; round < plan.rounds; round++) {
      // Interleaved, alternating direction, so drift on a shared machine hits every configuration alike.
      const order = round % 2 === 0 ? cases : [...cases].reverse();
      for (const c of order) {
        const { server, one, many, loggedInAt } = servers.get(configName(c))!;
        const cookies = c.sessions === 'one' ? one : many;
        const target = `${server.url}/dashboard`;
        // With sessions in rotation, every session is requested once right before the window:
        // each is then measured as a user active more than once per touchAfter (60 s), whose
        // throttled touch is not due. Without it, a session last seen minutes ago (in the previous
        // round) writes its touch on its first request, and the window measures touches. The
        // touches this pass causes are written in the background: the window starts once they have.
        if (c.sessions === 'many') {
          // A session logged in less than touchAfter ago would come due for its touch inside the
          // window instead of in this pass: the first pass waits until every login is that old.
          const wait = loggedInAt + TOUCH_AFTER_MS + 1_000 - performance.now();
          if (wait > 0) await sleep(wait);
          await visitAll(server, cookies);
          await writesSettled(server);
        }
        const warm = await runWrk({
          url: target,
          cookies,
          connections: plan.connections,
          durationSec: plan.warmupSec,
        });
        if (warm.non2xx || warm.errors)
          throw new Error(`bench: ${caseName(c)} warm-up: ${warm.non2xx} non-2xx, ${warm.errors} errors`);
        const load = loadAverage();
        const before = await server.stats();
        const r = await runWrk({
          url: target,
          cookies,
          connections: plan.connections,
          durationSec: plan.durationSec,
        });
        const after = await server.stats();
        if (r.non2xx || r.errors)
          throw new Error(`bench: ${caseName(c)}: ${r.non2xx} non-2xx, ${r.errors} errors`);
        const served = after.dashboardRequests - before.dashboardRequests;
        const db = c.layer === 'incumbent' || c.layer === 'pgsession';
        const run: Run = {
          case: caseName(c),
          round,
          rps: r.rps,
          p50: r.p50,
          p99: r.p99,
          cpuPerRequest: (after.cpuMicros - before.cpuMicros) / served,
          sqlPerRequest: db ? (after.allStatements - before.allStatements) / served : null,
          poolSqlPerRequest: db ? (after.poolStatements - before.poolStatements) / served : null,
          readsPerRequest: db
            ? (after.allStatements -
                after.writeStatements -
                (before.allStatements - before.writeStatements)) /
              served
            : null,
          writesPerRequest: db ? (after.writeStatements - before.writeStatements) / served : null,
          load,
        };
        runs.push(run);
        log(
          `  round ${round + 1}/${plan.rounds} ${run.case.padEnd(28)} ${Math.round(run.rps).toLocaleString('en-US').padStart(7)} req/s  p99 ${run.p99.toFixed(2)} ms  CPU ${Math.round(run.cpuPerRequest)} µs/req` +
            (run.sqlPerRequest === null
              ? ''
              : `  SQL/req ${run.readsPerRequest!.toFixed(4)} reads + ${run.writesPerRequest!.toFixed(4)} writes`) +
            `  (load ${load.toFixed(1)})`,
        );
      }
    }
    return { rows: rows(plan, cases, runs), runs, rotatingSessions: plan.rotatingSessions };
  } finally {
    for (const { server } of servers.values()) await server.stop();
    for (const name of databases) await admin.dropDatabase(name);
  }
}

function rows(plan: ThroughputPlan, cases: Case[], runs: Run[]): Row[] {
  const at = (name: string, round: number) => runs.find((r) => r.case === name && r.round === round);
  return cases.map((c) => {
    const mine = runs.filter((r) => r.case === caseName(c));
    const sibling = (layer: Layer) => caseName({ ...c, layer });
    const perRound = (f: (x: Run, round: number) => number | undefined) =>
      median(
        Array.from({ length: plan.rounds }, (_, round) => {
          const x = at(caseName(c), round);
          return x ? (f(x, round) ?? Number.NaN) : Number.NaN;
        }).filter((v) => !Number.isNaN(v)),
      );
    const ratio = (layer: Layer) =>
      perRound((x, round) =>
        at(sibling(layer), round) ? x.rps / at(sibling(layer), round)!.rps : undefined,
      );
    const nullable = (v: (r: Run) => number | null) =>
      mine.every((r) => v(r) === null) ? null : median(mine.map((r) => v(r) ?? Number.NaN));
    return {
      framework: c.framework,
      frameworkLabel: FRAMEWORK_LABEL[c.framework],
      layer: c.layer,
      label: LAYER_LABEL[c.layer],
      sessions: c.sessions,
      case: caseName(c),
      rps: median(mine.map((r) => r.rps)),
      p50: median(mine.map((r) => r.p50)),
      p99: median(mine.map((r) => r.p99)),
      cpuPerRequest: median(mine.map((r) => r.cpuPerRequest)),
      sqlPerRequest: nullable((r) => r.sqlPerRequest),
      poolSqlPerRequest: nullable((r) => r.poolSqlPerRequest),
      readsPerRequest: nullable((r) => r.readsPerRequest),
      writesPerRequest: nullable((r) => r.writesPerRequest),
      vsIncumbent: ratio('incumbent'),
      vsFloor: ratio('floor'),
      vsCeiling: ratio('ceiling'),
      layerMicros: perRound((x, round) => {
        const ceiling = at(sibling('ceiling'), round);
        return ceiling ? 1e6 / x.rps - 1e6 / ceiling.rps : undefined;
      }),
      p99VsFloor: perRound((x, round) =>
        at(sibling('floor'), round) ? x.p99 / at(sibling('floor'), round)!.p99 : undefined,
      ),
    };
  });
}
