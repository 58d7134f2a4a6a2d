/**
 * How the in-process micro-benchmarks measure: CPU time of this process per request (user +
 * system, less sensitive than wall time to other processes on a shared machine), a warm-up of
 * every kind, then alternating rounds (forward, backward) so drift hits every kind alike.
 */
export type Kind = 'bare' | 'session' | 'floor';
export const KINDS: Kind[] = ['bare', 'session', 'floor'];

/** ns of CPU per request over `n` sequential calls of `one(i)`. */
export async function cpuPerRequest(n: number, one: (i: number) => Promise<unknown>): Promise<number> {
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; i++) await one(i);
  const c = process.cpuUsage(c0);
  return ((c.user + c.system) * 1000) / n;
}

/**
 * Warm up, then `rounds` alternating rounds of `requests`: the per-round times of each kind
 * (`kinds`, default the three every micro-benchmark has; a benchmark may add its own).
 */
export async function alternate<K extends string = Kind>(
  run: (kind: K, n: number) => Promise<number>,
  rounds: number,
  requests: number,
  kinds: readonly K[] = KINDS as unknown as readonly K[],
): Promise<Record<K, number[]>> {
  for (const k of kinds) await run(k, requests / 2); // let V8 optimise every path
  const times = Object.fromEntries(kinds.map((k) => [k, [] as number[]])) as Record<K, number[]>;
  for (let r = 0; r < rounds; r++) {
    for (const k of r % 2 === 0 ? kinds : [...kinds].reverse()) times[k].push(await run(k, requests));
  }
  return times;
}

export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** A layer's cost, µs per request: the median over rounds of its time minus bare's. */
export const layerMicros = <K extends string>(
  times: Record<K, number[]> & { bare: number[] },
  k: K,
): number => median(times[k].map((t, i) => t - times.bare[i]!)) / 1000;
