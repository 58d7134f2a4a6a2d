import * as fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseDuration } from './duration.js';
import { ConfigError } from './errors.js';

describe('parseDuration', () => {
  it.each([
    [0, 0],
    [1500, 1500],
    [0.5, 0.5],
    ['0', 0],
    ['250', 250],
    ['500ms', 500],
    ['3s', 3000],
    ['1.5s', 1500],
    ['15m', 900_000],
    ['12h', 43_200_000],
    ['7d', 604_800_000],
    ['2w', 1_209_600_000],
    [' 10 S ', 10_000],
    ['1H', 3_600_000],
  ] as const)('%j is %d ms', (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });

  it.each([
    [-1],
    [Number.NaN],
    [Number.POSITIVE_INFINITY],
    [''],
    ['abc'],
    ['7 days'],
    ['-5m'],
    ['5y'],
    ['1e3'],
    ['5m30s'],
    ['1'.repeat(400)],
  ])('refuses %j with a ConfigError naming the option', (input) => {
    expect(() => parseDuration(input as string | number, 'idleTimeout')).toThrow(ConfigError);
    expect(() => parseDuration(input as string | number, 'idleTimeout')).toThrow(/idleTimeout/);
  });

  it('agrees with unit arithmetic for any integer amount', () => {
    const units = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 100_000 }), fc.constantFrom(...Object.keys(units)), (n, unit) => {
        expect(parseDuration(`${n}${unit}`)).toBe(n * units[unit as keyof typeof units]);
      }),
    );
  });
});
