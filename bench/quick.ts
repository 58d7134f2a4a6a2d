/**
 * A quick A/B of a few configurations of `npm run bench`'s throughput section: each round starts
 * every configuration's server in turn (the order alternates), logs in once, warms up 2 s and
 * drives wrk -t1 -c50 for `--duration` seconds. Prints every measurement, the medians, and the
 * first framework's pgsession/floor and pgsession/ceiling ratios (per round, then median).
 * For comparing two builds or two commits in the same minutes, not for the record.
 *
 *   DATABASE_URL=… npx tsx bench/quick.ts http/pgsession,http/floor --rounds=3 --duration=4
 */
import { Admin } from './lib/db.js';
import { withWarmServer } from './lib/single.js';
import { runWrk } from './lib/wrk.js';

const args = process.argv.slice(2);
const configs = (
  args.find((a) => !a.startsWith('--')) ?? 'express/pgsession,express/floor,express/ceiling'
).split(',');
const num = (n: string, d: number) =>
  Number(args.find((a) => a.startsWith(`--${n}=`))?.slice(n.length + 3) ?? d);
const rounds = num('rounds', 3),
  duration = num('duration', 5);
const url = process.env.DATABASE_URL;
if (!url) throw new Error('bench/quick.ts: set DATABASE_URL (the embedded PostgreSQL is not started here)');
const admin = await Admin.connect(url);
const res: Record<string, { rps: number; p99: number }[]> = {};
for (let r = 0; r < rounds; r++) {
  for (const which of r % 2 ? [...configs].reverse() : configs) {
    const w = await withWarmServer(which, admin, {}, ({ target, cookie }) =>
      runWrk({ url: target, cookies: [cookie], connections: 50, durationSec: duration }),
    );
    res[which] = [...(res[which] ?? []), { rps: w.rps, p99: w.p99 }];
    console.log(`round ${r + 1} ${which.padEnd(22)} ${Math.round(w.rps)} req/s p99 ${w.p99.toFixed(2)} ms`);
  }
}
await admin.close();
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
for (const c of configs)
  console.log(
    `${c.padEnd(22)} median ${Math.round(med(res[c]!.map((x) => x.rps)))} req/s, p99 ${med(res[c]!.map((x) => x.p99)).toFixed(2)} ms`,
  );
const fw = configs[0]!.split('/')[0];
const ratio = (a: string, b: string) =>
  res[a] && res[b] ? med(res[a]!.map((x, i) => x.rps / res[b]![i]!.rps)) : NaN;
console.log(
  `pgsession/floor ${(100 * ratio(`${fw}/pgsession`, `${fw}/floor`)).toFixed(1)}%  pgsession/ceiling ${(100 * ratio(`${fw}/pgsession`, `${fw}/ceiling`)).toFixed(1)}%`,
);
process.exit(0);
