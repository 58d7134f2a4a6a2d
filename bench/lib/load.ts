import type { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { percentile } from './stats.js';

const require = createRequire(import.meta.url);

interface AutocannonOptions {
  url: string;
  connections: number;
  duration: number;
  method?: string;
  headers?: Record<string, string>;
  timeout?: number;
}
interface AutocannonResult {
  errors: number;
  timeouts: number;
  non2xx: number;
  duration: number;
}
type AutocannonInstance = EventEmitter & { stop(): void };
type Autocannon = (
  options: AutocannonOptions,
  callback: (err: Error | null, result: AutocannonResult) => void,
) => AutocannonInstance;

const autocannon = require('autocannon') as Autocannon;

/** Growable array of doubles (latencies of 100k+ responses without boxing). */
class Samples {
  #data = new Float64Array(1 << 16);
  length = 0;
  push(value: number): void {
    if (this.length === this.#data.length) {
      const bigger = new Float64Array(this.#data.length * 2);
      bigger.set(this.#data);
      this.#data = bigger;
    }
    this.#data[this.length++] = value;
  }
  sorted(): Float64Array {
    return this.#data.slice(0, this.length).sort();
  }
  values(): Float64Array {
    return this.#data.subarray(0, this.length);
  }
}

export interface LoadOptions {
  url: string;
  /** Sent with every request (the session cookie). */
  headers?: Record<string, string>;
  connections: number;
  /** Seconds; with `until`, the upper bound. */
  durationSec: number;
  /** Stop as soon as this settles (e.g. "while the prune runs"). */
  until?: Promise<unknown>;
}

/** What one load run measured. Latencies in ms, from autocannon's per-response timings (sub-ms precision). */
export interface LoadResult {
  /** Responses received (any status). */
  responses: number;
  /** 2xx responses per second. */
  rps: number;
  p50: number;
  p99: number;
  max: number;
  /** Non-2xx responses, connection errors, timeouts: all must be 0 in a valid run. */
  non2xx: number;
  errors: number;
  timeouts: number;
  /** Longest time without any response completing (a stall of the server), ms. */
  maxGapMs: number;
  seconds: number;
}

/**
 * Drive a loopback server with autocannon (in this process, i.e. not the server's) and record
 * every response's latency. Bounded by `durationSec` (and `until`).
 */
export function runLoad(options: LoadOptions): Promise<LoadResult> {
  if (new URL(options.url).hostname !== '127.0.0.1') {
    throw new Error(`bench: load only against 127.0.0.1, not ${options.url}`);
  }
  const latencies = new Samples();
  let ok = 0;
  let non2xx = 0;
  let lastDone = 0;
  let maxGap = 0;
  return new Promise((resolve, reject) => {
    const started = performance.now();
    lastDone = started;
    const instance = autocannon(
      {
        url: options.url,
        connections: options.connections,
        duration: options.durationSec,
        headers: options.headers,
        timeout: 10,
      },
      (err, result) => {
        if (err) {
          reject(err);
          return;
        }
        const seconds = (performance.now() - started) / 1000;
        const sorted = latencies.sorted();
        resolve({
          responses: latencies.length,
          rps: ok / seconds,
          p50: percentile(sorted, 50),
          p99: percentile(sorted, 99),
          max: sorted.length ? sorted[sorted.length - 1]! : 0,
          non2xx,
          errors: result.errors,
          timeouts: result.timeouts,
          maxGapMs: maxGap,
          seconds,
        });
      },
    );
    instance.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
      const now = performance.now();
      if (now - lastDone > maxGap) maxGap = now - lastDone;
      lastDone = now;
      latencies.push(responseTime);
      if (statusCode >= 200 && statusCode < 300) ok++;
      else non2xx++;
    });
    options.until?.then(
      () => instance.stop(),
      () => instance.stop(),
    );
  });
}
