import { ConfigError } from './errors.js';

const UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

/**
 * Parse a duration: a number of milliseconds, or a string like `500ms`, `3s`, `15m`, `12h`, `7d`,
 * `2w`, or plain digits (milliseconds). Throws a ConfigError naming `what` on anything else.
 */
export function parseDuration(input: string | number, what = 'duration'): number {
  if (typeof input === 'number') {
    if (Number.isFinite(input) && input >= 0) return input;
    throw new ConfigError(`${what} must be a non-negative number of milliseconds, got ${input}`);
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$/i.exec(input);
  if (!m)
    throw new ConfigError(
      `${what} must be a duration like 500ms, 3s, 15m, 12h, 7d or milliseconds; got "${input}"`,
    );
  const value = Number(m[1]) * (UNITS[(m[2] ?? 'ms').toLowerCase()] ?? 1);
  if (!Number.isFinite(value)) throw new ConfigError(`${what} is too large: "${input}"`);
  return Math.round(value);
}
