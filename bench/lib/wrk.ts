/**
 * Throughput load from wrk (Debian's `wrk`): one thread, pinned to the load generator's core, a
 * Lua script that sends the session cookie (one logged-in cookie, or many in rotation) and prints
 * its summary as JSON. wrk rather than a Node load generator: it needs a fraction of a core for
 * what the server needs a whole one for, so the server is what is measured.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { LOAD_CPU } from './child.js';

export const WRK = process.env.WRK ?? '/usr/bin/wrk';

export interface WrkOptions {
  url: string;
  /** `name=value` Cookie headers: one is sent on every request; several are sent in turn. */
  cookies: readonly string[];
  connections: number;
  durationSec: number;
}

/** What one wrk run measured; latencies in ms. */
export interface WrkResult {
  requests: number;
  rps: number;
  p50: number;
  p99: number;
  max: number;
  /** Connection, read and write errors, timeouts, and non-2xx/3xx responses: 0 in a valid run. */
  errors: number;
  non2xx: number;
  seconds: number;
}

const lua = (s: string) => `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;

function script(cookies: readonly string[]): string {
  const rotate =
    cookies.length === 1
      ? `wrk.headers["Cookie"] = ${lua(cookies[0]!)}\n`
      : `local cookies = {\n${cookies.map(lua).join(',\n')}\n}
local n = #cookies
local i = 0
request = function()
  i = i + 1
  if i > n then i = 1 end
  return wrk.format(nil, nil, { Cookie = cookies[i] })
end
`;
  return `${rotate}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"duration":%d,"socket":%d,"status":%d,"timeout":%d,"p50":%d,"p99":%d,"max":%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
`;
}

export function runWrk(options: WrkOptions): Promise<WrkResult> {
  if (new URL(options.url).hostname !== '127.0.0.1')
    throw new Error(`bench: load only on 127.0.0.1, not ${options.url}`);
  const dir = mkdtempSync(path.join(tmpdir(), 'pgsession-wrk-'));
  const file = path.join(dir, 'load.lua');
  writeFileSync(file, script(options.cookies));
  const args = [
    '-t1',
    `-c${options.connections}`,
    `-d${options.durationSec}s`,
    '--timeout',
    '10s',
    '-s',
    file,
    options.url,
  ];
  const [command, argv] = LOAD_CPU === undefined ? [WRK, args] : ['taskset', ['-c', LOAD_CPU, WRK, ...args]];
  return new Promise((resolve, reject) => {
    execFile(command, argv, { timeout: (options.durationSec + 30) * 1000 }, (err, stdout, stderr) => {
      rmSync(dir, { recursive: true, force: true });
      if (err) return reject(new Error(`wrk failed: ${err.message}\n${stderr}`));
      const line = stdout.split('\n').find((l) => l.startsWith('WRKJSON '));
      if (!line) return reject(new Error(`wrk printed no summary:\n${stdout}\n${stderr}`));
      const r = JSON.parse(line.slice(8)) as Record<string, number>;
      const seconds = r.duration! / 1e6;
      resolve({
        requests: r.requests!,
        rps: (r.requests! - r.status!) / seconds,
        p50: r.p50! / 1000,
        p99: r.p99! / 1000,
        max: r.max! / 1000,
        errors: r.socket! + r.timeout!,
        non2xx: r.status!,
        seconds,
      });
    });
  });
}
