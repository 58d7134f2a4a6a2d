/**
 * Where a benchmark server's CPU goes: one configuration of `npm run bench` under the same wrk
 * load, with `node --cpu-prof`, then its samples summed by module (pgsession's own files one by
 * one, dependencies by package, Node's internals, GC) and the hottest functions.
 *
 *   npx tsx bench/profile.ts                        express/pgsession, 10 s
 *   npx tsx bench/profile.ts express/floor --duration=10
 *   BENCH_SOURCE=src npx tsx bench/profile.ts       pgsession from src/ (no build; names kept)
 *
 * Needs DATABASE_URL for the configurations with a database (the embedded PostgreSQL is not
 * started here). The profile is left in the system's temporary folder (its path is printed).
 */
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Admin } from './lib/db.js';
import { needsDatabase, parseConfig, withWarmServer } from './lib/single.js';
import { runWrk } from './lib/wrk.js';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

const args = process.argv.slice(2);
const which = args.find((a) => !a.startsWith('--')) ?? 'express/pgsession';
const duration = Number(args.find((a) => a.startsWith('--duration='))?.slice(11) ?? 10);
const { layer } = parseConfig(which);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const dir = path.join(tmpdir(), `pgsession-profile-${which.replace('/', '-')}`);
rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });
process.env.BENCH_CPU_PROF = dir;

const url = process.env.DATABASE_URL;
if (needsDatabase(layer) && !url) throw new Error('bench/profile.ts: set DATABASE_URL');
const admin = needsDatabase(layer) ? await Admin.connect(url!) : undefined;
try {
  const r = await withWarmServer(which, admin, {}, ({ target, cookie }) =>
    runWrk({ url: target, cookies: [cookie], connections: 50, durationSec: duration }),
  );
  process.stdout.write(
    `${which}: ${Math.round(r.rps)} req/s under the profiler, p99 ${r.p99.toFixed(2)} ms\n`,
  );
} finally {
  await admin?.close();
}

const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
if (!file) throw new Error(`no profile written in ${dir}`);
const profile = JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as {
  nodes: Node[];
  samples: number[];
};
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const counts = new Map<number, number>();
for (const id of profile.samples) counts.set(id, (counts.get(id) ?? 0) + 1);

/** pgsession's files by path (src/… or dist/…), packages by name, Node's internals, the rest by kind. */
function moduleOf(url: string, name: string): string {
  if (!url) return name.startsWith('(') ? name : '(native)';
  if (url.startsWith('node:')) return 'node: internals';
  const local = url.replace(/^file:\/\//, '');
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(local);
  if (pkg) return pkg[1]!;
  const rel = path.relative(ROOT, local);
  return rel.startsWith('..') ? local : rel;
}
const modules = new Map<string, number>();
const functions = new Map<string, number>();
let total = 0;
for (const [id, n] of counts) {
  const frame = byId.get(id)!.callFrame;
  const mod = moduleOf(frame.url, frame.functionName);
  modules.set(mod, (modules.get(mod) ?? 0) + n);
  const fn = `${frame.functionName || '(anonymous)'}  ${mod}:${frame.lineNumber + 1}`;
  functions.set(fn, (functions.get(fn) ?? 0) + n);
  total += n;
}
const top = (m: Map<string, number>, k: number) =>
  [...m]
    .sort((a, b) => b[1] - a[1])
    .slice(0, k)
    .map(([name, n]) => `${((n / total) * 100).toFixed(1).padStart(5)}%  ${name}`)
    .join('\n');
process.stdout.write(
  `\n${path.join(dir, file)}\nSelf time by module (${total} samples):\n${top(modules, 25)}\n`,
);
process.stdout.write(`\nHottest functions:\n${top(functions, 30)}\n`);
