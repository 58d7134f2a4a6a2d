import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { generateId, hashId, ID_BYTES } from './id.js';

const N = 10_000;

describe('generateId', () => {
  const ids = Array.from({ length: N }, () => generateId());

  it('is 32 random bytes as base64url: 43 cookie-safe characters', () => {
    expect(ID_BYTES).toBe(32);
    for (const id of ids) {
      expect(id).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(Buffer.from(id, 'base64url')).toHaveLength(32);
      // Canonical encoding: decoding and re-encoding gives the same text.
      expect(Buffer.from(id, 'base64url').toString('base64url')).toBe(id);
    }
  });

  it(`gives ${N} distinct ids`, () => {
    expect(new Set(ids).size).toBe(N);
  });

  it('carries at least 128 bits of entropy (every one of the 256 bits is a fair coin)', () => {
    // 256 bits per id; each bit position must be 1 in about half the ids. With 10k samples the
    // standard deviation of the proportion is 0.005: 6σ bounds make a false failure ~1e-9.
    const ones = new Array<number>(ID_BYTES * 8).fill(0);
    for (const id of ids) {
      const bytes = Buffer.from(id, 'base64url');
      for (let bit = 0; bit < ones.length; bit++) if (bytes[bit >> 3]! & (0x80 >> (bit & 7))) ones[bit]!++;
    }
    const biased = ones.map((n, bit) => ({ bit, p: n / N })).filter(({ p }) => Math.abs(p - 0.5) > 0.03);
    expect(biased).toEqual([]);
    // And byte values are uniform (chi-square, 255 degrees of freedom; 99.99th percentile ≈ 346).
    const counts = new Array<number>(256).fill(0);
    for (const id of ids) for (const b of Buffer.from(id, 'base64url')) counts[b]!++;
    const expected = (N * ID_BYTES) / 256;
    const chi2 = counts.reduce((sum, c) => sum + (c - expected) ** 2 / expected, 0);
    expect(chi2).toBeLessThan(346);
    // 256 bits ≥ 128: the ASVS floor with a wide margin.
    expect(ID_BYTES * 8).toBeGreaterThanOrEqual(128);
  });
});

describe('hashId', () => {
  it('is SHA-256 of the id, base64url', () => {
    const id = generateId();
    expect(hashId(id)).toBe(createHash('sha256').update(id).digest('base64url'));
    expect(hashId(id)).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('is deterministic, differs from the id, and separates ids', () => {
    const a = generateId();
    const b = generateId();
    expect(hashId(a)).toBe(hashId(a));
    expect(hashId(a)).not.toBe(a);
    expect(hashId(a)).not.toBe(hashId(b));
    const hashes = new Set(Array.from({ length: 1000 }, () => hashId(generateId())));
    expect(hashes.size).toBe(1000);
  });

  it('hashes any string, including unicode and the empty string', () => {
    expect(hashId('')).toBe('47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU');
    expect(hashId('é☃')).toBe(createHash('sha256').update('é☃', 'utf8').digest('base64url'));
  });
});
