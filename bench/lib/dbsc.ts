/**
 * The deviceBound section: what device-bound sessions (DBSC) cost a steady request. Two Express
 * servers with pgsession, the seed's app and options, one with `deviceBound: { enforce:
 * 'require' }` (every request of a bound session checks its bound cookie: one HMAC, no SQL),
 * one without; each logged in once, the bound one registered with an ES256 key as a browser
 * would. Measured like the throughput section: alternating rounds, wrk on the other core.
 */
import { generateKeyPairSync, sign } from 'node:crypto';
import type { ServerProcess } from './child.js';
import { startServer } from './child.js';
import { COOKIE_NAME } from './config.js';
import type { Admin } from './db.js';
import { request, sessionCookie } from './http.js';
import { median } from './stats.js';
import { runWrk } from './wrk.js';

export interface DeviceBoundPlan {
  rounds: number;
  warmupSec: number;
  durationSec: number;
  connections: number;
}

export interface DeviceBoundResult {
  rounds: Array<{
    round: number;
    off: number;
    on: number;
    offP99: number;
    onP99: number;
    /** Server CPU (user + system) per request, µs: less disturbed by other load than req/s. */
    offCpu: number;
    onCpu: number;
  }>;
  /** Medians. */
  offRps: number;
  onRps: number;
  offP99: number;
  onP99: number;
  /** on / off req/s, per round, then the median. */
  ratio: number;
  /** Median server CPU µs per request, and on / off per round, then the median. */
  offCpu: number;
  onCpu: number;
  cpuRatio: number;
  /** SQL statements per request with deviceBound on (the check must add none). */
  onSqlPerRequest: number;
}

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

/** Log in, then register an ES256 device key as a DBSC browser does: the Cookie header of both cookies. */
async function loginBound(url: string): Promise<string> {
  const res = await request(`${url}/login`, { method: 'POST', json: {} });
  const cookie = sessionCookie(res);
  const offer = String(res.headers['secure-session-registration'] ?? '');
  const m = /path="([^"]+)";challenge="([^"]+)"/.exec(offer);
  if (res.status !== 200 || !cookie || !m)
    throw new Error(`bench: no DBSC registration offer on login (${res.status})`);
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const input = `${b64({ alg: 'ES256', typ: 'dbsc+jwt', jwk: publicKey.export({ format: 'jwk' }) })}.${b64({ jti: m[2] })}`;
  const signature = sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' });
  const registered = await request(`${url}${m[1]}`, {
    method: 'POST',
    headers: { cookie, 'secure-session-response': `"${input}.${signature.toString('base64url')}"` },
  });
  const bound = (registered.headers['set-cookie'] ?? []).find((c) => c.startsWith(`${COOKIE_NAME}.bound=`));
  if (registered.status !== 200 || !bound)
    throw new Error(`bench: DBSC registration failed (${registered.status})`);
  return `${cookie}; ${bound.split(';', 1)[0]}`;
}

export async function deviceBoundCost(
  plan: DeviceBoundPlan,
  admin: Admin,
  log: (line: string) => void,
): Promise<DeviceBoundResult> {
  const servers: Array<{ server: ServerProcess; cookie: string; on: boolean }> = [];
  const databases: string[] = [];
  try {
    for (const on of [false, true]) {
      const db = await admin.createDatabase(on ? 'dbsc_on' : 'dbsc_off');
      databases.push(db.name);
      const server = await startServer({
        framework: 'express',
        layer: 'pgsession',
        databaseUrl: db.url,
        deviceBound: on,
      });
      const cookie = on
        ? await loginBound(server.url)
        : await (async () => {
            const res = await request(`${server.url}/login`, { method: 'POST', json: {} });
            return sessionCookie(res)!;
          })();
      // The bound session is served with its cookies, and refused without the bound one.
      const ok = await request(`${server.url}/dashboard`, { headers: { cookie } });
      if (ok.status !== 200) throw new Error(`bench: dashboard got ${ok.status}`);
      if (on) {
        const alone = await request(`${server.url}/dashboard`, {
          headers: { cookie: cookie.split('; ')[0]! },
        });
        if (alone.status !== 401)
          throw new Error(`bench: the session cookie alone got ${alone.status}, not 401`);
      }
      servers.push({ server, cookie, on });
    }
    const rounds: DeviceBoundResult['rounds'] = [];
    let onSql = 0;
    let onServed = 0;
    for (let round = 0; round < plan.rounds; round++) {
      const order = round % 2 === 0 ? servers : [...servers].reverse();
      const got: Record<'on' | 'off', { rps: number; p99: number; cpu: number }> = {
        on: { rps: 0, p99: 0, cpu: 0 },
        off: { rps: 0, p99: 0, cpu: 0 },
      };
      for (const { server, cookie, on } of order) {
        const target = `${server.url}/dashboard`;
        await runWrk({
          url: target,
          cookies: [cookie],
          connections: plan.connections,
          durationSec: plan.warmupSec,
        });
        const before = await server.stats();
        const r = await runWrk({
          url: target,
          cookies: [cookie],
          connections: plan.connections,
          durationSec: plan.durationSec,
        });
        const after = await server.stats();
        if (r.non2xx || r.errors)
          throw new Error(`bench: deviceBound ${on ? 'on' : 'off'}: ${r.non2xx} non-2xx, ${r.errors} errors`);
        if (on) {
          onSql += after.poolStatements - before.poolStatements;
          onServed += after.dashboardRequests - before.dashboardRequests;
        }
        const served = after.dashboardRequests - before.dashboardRequests;
        got[on ? 'on' : 'off'] = {
          rps: r.rps,
          p99: r.p99,
          cpu: (after.cpuMicros - before.cpuMicros) / served,
        };
      }
      rounds.push({
        round,
        off: got.off.rps,
        on: got.on.rps,
        offP99: got.off.p99,
        onP99: got.on.p99,
        offCpu: got.off.cpu,
        onCpu: got.on.cpu,
      });
      log(
        `  deviceBound round ${round + 1}: off ${Math.round(got.off.rps)} req/s ${Math.round(got.off.cpu)} µs CPU/req, on ${Math.round(got.on.rps)} req/s ${Math.round(got.on.cpu)} µs CPU/req`,
      );
    }
    return {
      rounds,
      offRps: median(rounds.map((r) => r.off)),
      onRps: median(rounds.map((r) => r.on)),
      offP99: median(rounds.map((r) => r.offP99)),
      onP99: median(rounds.map((r) => r.onP99)),
      ratio: median(rounds.map((r) => r.on / r.off)),
      offCpu: median(rounds.map((r) => r.offCpu)),
      onCpu: median(rounds.map((r) => r.onCpu)),
      cpuRatio: median(rounds.map((r) => r.onCpu / r.offCpu)),
      onSqlPerRequest: onServed > 0 ? onSql / onServed : Number.NaN,
    };
  } finally {
    for (const { server } of servers) await server.stop();
    for (const name of databases) await admin.dropDatabase(name);
  }
}
