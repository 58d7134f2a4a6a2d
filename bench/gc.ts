/**
 * What the young generation does under load: one configuration of `npm run bench`'s throughput
 * section, started with `--trace-gc-nvp` (and any further V8 flags given), driven by the same
 * wrk load, and V8's own per-GC lines summed over the measured window: scavenges, full GCs,
 * bytes promoted to old space per second, GC pause per second, the young generation's size, and
 * how many allocation sites V8 decided to pretenure. For the pretenuring finding in
 * bench/RESULTS.md; not for the record.
 *
 *   DATABASE_URL=… npx tsx bench/gc.ts http/pgsession [--runs=3] [--duration=6]
 *   DATABASE_URL=… npx tsx bench/gc.ts http/pgsession -- --no-allocation-site-pretenuring
 *   DATABASE_URL=… npx tsx bench/gc.ts http/pgsession --heap-sample
 *       plus where what reached old space was allocated (V8's sampling heap profiler over the
 *       window, objects a full GC collects or still live; the top allocation stacks by bytes)
 *   BENCH_SOURCE=src …                                pgsession from src/ (no build)
 *
 * Each run is a fresh server process (the decisions are made once per process).
 */
import { Admin } from './lib/db.js';
import { request } from './lib/http.js';
import { needsDatabase, parseConfig, withWarmServer } from './lib/single.js';
import { runWrk } from './lib/wrk.js';

const dashdash = process.argv.indexOf('--');
const args = process.argv.slice(2, dashdash < 0 ? undefined : dashdash);
const extraFlags = dashdash < 0 ? [] : process.argv.slice(dashdash + 1);
const which = args.find((a) => !a.startsWith('--')) ?? 'http/pgsession';
const num = (name: string, fallback: number) =>
  Number(args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback);
const runs = num('runs', 3);
const duration = num('duration', 6);
const heapSample = args.includes('--heap-sample');
const url = process.env.DATABASE_URL;
if (needsDatabase(parseConfig(which).layer) && !url)
  throw new Error('bench/gc.ts: set DATABASE_URL (the embedded PostgreSQL is not started here)');

/** Totals of V8's `--trace-gc-nvp` lines (`gc=s` scavenge, `gc=mc`/`mmc` full GC). */
interface Window {
  scavenges: number;
  fullGcs: number;
  promoted: number;
  pauseMs: number;
  /** Bytes allocated between scavenges (median): the young generation in use. */
  allocatedPerScavenge: number[];
}

/** The `--trace-gc-nvp` fields read, as `name=value`. */
const FIELDS = {
  allocated: / allocated=([0-9.]+)/,
  promoted: / promoted=([0-9.]+)/,
  pause: / pause=([0-9.]+)/,
};

function summarize(lines: readonly string[]): Window {
  const w: Window = {
    scavenges: 0,
    fullGcs: 0,
    promoted: 0,
    pauseMs: 0,
    allocatedPerScavenge: [],
  };
  for (const line of lines) {
    const gc = / gc=(\w+) /.exec(line)?.[1];
    if (gc === undefined) continue;
    const field = (name: keyof typeof FIELDS) => Number(FIELDS[name].exec(line)?.[1] ?? 0);
    if (gc === 's') {
      w.scavenges++;
      w.allocatedPerScavenge.push(field('allocated'));
    } else if (gc === 'mc' || gc === 'mmc') w.fullGcs++;
    w.promoted += field('promoted');
    w.pauseMs += field('pause');
  }
  return w;
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children: ProfileNode[];
}

/** The heaviest allocation stacks (innermost first, five frames) of a sampling heap profile. */
function topStacks(profile: { head: ProfileNode; samples: { size: number; nodeId: number }[] }): string[] {
  const stacks = new Map<number, string[]>();
  const walk = (node: ProfileNode, above: string[]) => {
    const { functionName, url, lineNumber } = node.callFrame;
    const frame = `${functionName || '(anonymous)'} ${url.split('/').pop()}:${lineNumber + 1}`;
    const stack = [frame, ...above];
    stacks.set(node.id, stack);
    for (const child of node.children) walk(child, stack);
  };
  walk(profile.head, []);
  const bytes = new Map<string, number>();
  for (const { size, nodeId } of profile.samples) {
    const key = (stacks.get(nodeId) ?? []).slice(0, 5).join(' < ');
    bytes.set(key, (bytes.get(key) ?? 0) + size);
  }
  return [...bytes.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 12)
    .map(([stack, size]) => `  ${(size / 1e6).toFixed(2).padStart(7)} MB  ${stack}`);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
const admin = url ? await Admin.connect(url) : undefined;
for (let run = 1; run <= runs; run++) {
  let buffered = '';
  let window: string[] | undefined;
  /** Pretenuring decisions over the whole process (most are made as the load starts). */
  let tenured = 0;
  const options = {
    nodeFlags: ['--trace-gc-nvp', '--trace-pretenuring-statistics', ...extraFlags],
    onStdout: (text: string) => {
      buffered += text;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) if (/=> tenure$/.test(line)) tenured++;
      window?.push(...lines);
    },
  };
  await withWarmServer(which, admin, options, async ({ server, target, cookie }) => {
    const before = await server.stats();
    window = [];
    if (heapSample) await request(`${server.url}/__heap-sample/start`, { method: 'POST' });
    const r = await runWrk({ url: target, cookies: [cookie], connections: 50, durationSec: duration });
    const lines = window;
    window = undefined;
    const sampled = heapSample
      ? await request(`${server.url}/__heap-sample/stop`, { method: 'POST' })
      : undefined;
    const after = await server.stats();
    const w = summarize(lines);
    const cpu = (after.cpuMicros - before.cpuMicros) / (after.dashboardRequests - before.dashboardRequests);
    console.log(
      `run ${run} ${which}: ${Math.round(r.rps)} req/s, CPU ${Math.round(cpu)} µs/req; ` +
        `${w.scavenges} scavenges, ${w.fullGcs} full GCs, promoted ${(w.promoted / duration / 1e6).toFixed(2)} MB/s, ` +
        `GC pause ${Math.round(w.pauseMs / duration)} ms/s, ${(median(w.allocatedPerScavenge) / 1e6).toFixed(1)} MB allocated per scavenge, ` +
        `${tenured} allocation site(s) tenured since start`,
    );
    if (sampled) {
      console.log(`  reached old space during the window, by allocation stack (${which}, run ${run}):`);
      for (const line of topStacks(JSON.parse(sampled.body))) console.log(line);
    }
  });
}
await admin?.close();
process.exit(0);
