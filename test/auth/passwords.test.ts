import argon2 from 'argon2';
import bcrypt from 'bcryptjs';
import { describe, expect, it } from 'vitest';
import {
  MAX_PASSWORD_LENGTH,
  MIN_PASSWORD_LENGTH,
  PasswordHasher,
  PasswordPolicyError,
  passwordProblem,
} from '../../src/auth/index.js';
import { DEFAULT_ARGON2_PARAMS, isCommonPassword } from '../../src/auth/passwords.js';

const hasher = new PasswordHasher();

/** Largest gap between 2 ms ticks while `work` runs: how long the event loop was blocked. */
async function maxLoopGap(work: () => Promise<unknown>): Promise<number> {
  let last = performance.now();
  let max = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    max = Math.max(max, now - last);
    last = now;
  }, 2);
  try {
    await work();
  } finally {
    clearInterval(timer);
  }
  return max;
}

describe('PasswordHasher', () => {
  it("hashes with argon2id at OWASP's parameters (m=19456, t=2, p=1)", async () => {
    const hash = await hasher.hash('correct horse battery');
    expect(hash).toMatch(/^\$argon2id\$v=19\$m=19456,p=1,t=2\$/);
    expect(DEFAULT_ARGON2_PARAMS).toEqual({ memoryCost: 19456, timeCost: 2, parallelism: 1 });
    expect(await hasher.verify(hash, 'correct horse battery')).toEqual({
      ok: true,
      needsRehash: false,
      scheme: 'argon2id',
    });
    expect((await hasher.verify(hash, 'correct horse batterY')).ok).toBe(false);
  });

  it('checks passwords exactly as typed: no trimming, no truncation at 72 bytes', async () => {
    const base = 'é'.repeat(40); // 80 UTF-8 bytes
    const hash = await hasher.hash(`${base}1`);
    expect((await hasher.verify(hash, `${base}1`)).ok).toBe(true);
    expect((await hasher.verify(hash, `${base}2`)).ok).toBe(false);
    const spaced = await hasher.hash(' leading and trailing ');
    expect((await hasher.verify(spaced, 'leading and trailing')).ok).toBe(false);
  });

  it('policy: 8 to 1024 characters (code points), else PasswordPolicyError', async () => {
    expect(MIN_PASSWORD_LENGTH).toBe(8);
    expect(MAX_PASSWORD_LENGTH).toBe(1024);
    expect(passwordProblem('1234567')).toMatch(/at least 8/);
    expect(passwordProblem('k3v8-q0zr')).toBeNull();
    expect(passwordProblem('🔑'.repeat(8))).toBeNull(); // 8 characters, 16 UTF-16 units
    expect(passwordProblem('🔑'.repeat(7))).toMatch(/at least 8/);
    expect(passwordProblem('x'.repeat(1024))).toBeNull();
    expect(passwordProblem('x'.repeat(1025))).toMatch(/at most 1024/);
    expect(passwordProblem(undefined)).toMatch(/required/);
    // Common passwords are refused whatever their case (ASVS 6.2.4).
    for (const common of ['password123', 'Password123', 'qwertyuiop', '12345678', 'iloveyou']) {
      expect(passwordProblem(common), common).toMatch(/too common/);
    }
    expect(isCommonPassword('correct horse battery staple')).toBe(false);
    await expect(hasher.hash('password123')).rejects.toBeInstanceOf(PasswordPolicyError);
    await expect(hasher.hash('short')).rejects.toBeInstanceOf(PasswordPolicyError);
    await expect(hasher.hash('x'.repeat(1025))).rejects.toBeInstanceOf(PasswordPolicyError);
    const long = await hasher.hash('x'.repeat(1024));
    expect((await hasher.verify(long, 'x'.repeat(1024))).ok).toBe(true);
    expect((await hasher.verify(long, 'x'.repeat(1025))).ok).toBe(false);
  });

  it('verifies bcrypt $2a$/$2b$/$2y$ hashes and asks for a rehash on success only', async () => {
    const b = await bcrypt.hash('seed-password', 8);
    for (const prefix of ['$2a$', '$2b$', '$2y$']) {
      const hash = prefix + b.slice(4);
      expect(await hasher.verify(hash, 'seed-password')).toEqual({
        ok: true,
        needsRehash: true,
        scheme: 'bcrypt',
      });
      expect(await hasher.verify(hash, 'seed-passwor')).toEqual({
        ok: false,
        needsRehash: false,
        scheme: 'bcrypt',
      });
    }
  });

  it('asks for a rehash of argon2 hashes with weaker parameters or another variant', async () => {
    const weak = await argon2.hash('some password', {
      type: argon2.argon2id,
      memoryCost: 4096,
      timeCost: 1,
      parallelism: 1,
    });
    expect(await hasher.verify(weak, 'some password')).toMatchObject({ ok: true, needsRehash: true });
    const argon2i = await argon2.hash('some password', { type: argon2.argon2i, ...DEFAULT_ARGON2_PARAMS });
    expect(await hasher.verify(argon2i, 'some password')).toMatchObject({ ok: true, needsRehash: true });
  });

  it('a malformed or unknown hash never verifies and never throws', async () => {
    for (const hash of ['', 'plaintext', '$argon2id$garbage', '$2b$10$short', '$1$md5crypt$x']) {
      expect((await hasher.verify(hash, 'anything goes')).ok).toBe(false);
    }
  });

  it('the dummy verification fails and costs about as much as a real one', async () => {
    const real = await hasher.hash('real password');
    await hasher.verifyDummy('warm up');
    const time = async (fn: () => Promise<unknown>) => {
      const t0 = performance.now();
      await fn();
      return performance.now() - t0;
    };
    const reals: number[] = [];
    const dummies: number[] = [];
    for (let i = 0; i < 7; i++) {
      reals.push(await time(() => hasher.verify(real, 'wrong password')));
      dummies.push(await time(() => hasher.verifyDummy('wrong password')));
    }
    const median = (xs: number[]) => xs.sort((a, b) => a - b)[3]!;
    expect(await hasher.verifyDummy('real password')).toBe(false);
    expect(Math.abs(median(reals) - median(dummies))).toBeLessThan(Math.max(15, median(reals) * 0.5));
  });

  it('never blocks the event loop (argon2 on the libuv pool, bcrypt on a worker thread)', async () => {
    // Each operation takes hundreds of milliseconds; on the main thread it would stall the loop
    // for all of that. Off it, the loop keeps ticking: the longest gap stays a fraction of it.
    const timed = async (fn: () => Promise<unknown>) => {
      const t0 = performance.now();
      const gap = await maxLoopGap(fn);
      return { gap, duration: performance.now() - t0 };
    };
    // Costs chosen to take well over 150 ms even on a fast, idle machine (timeCost 16 took 147 ms
    // on one): the gap check means nothing for an operation shorter than a loop stall.
    const slow = new PasswordHasher({ timeCost: 40 });
    const hash = await slow.hash('correct horse battery');
    const argon = await timed(() => slow.verify(hash, 'correct horse battery'));
    expect(argon.duration).toBeGreaterThan(150);
    expect(argon.gap).toBeLessThan(argon.duration / 2);
    const b = await bcrypt.hash('seed-password', 13);
    await hasher.verify(b, 'warm up the worker');
    let result: unknown;
    const bc = await timed(async () => {
      result = await hasher.verify(b, 'seed-password');
    });
    expect(result).toMatchObject({ ok: true, scheme: 'bcrypt' });
    expect(bc.duration).toBeGreaterThan(150);
    expect(bc.gap).toBeLessThan(bc.duration / 2);
  });
});

describe('limitConcurrency (argon2 gets at most one hash per core)', () => {
  it('runs at most `max` tasks at once, in arrival order, and frees the slot when a task fails', async () => {
    const { limitConcurrency } = await import('../../src/auth/passwords.js');
    const limit = limitConcurrency(2);
    let running = 0;
    let peak = 0;
    const started: number[] = [];
    const task = (i: number, fail = false) =>
      limit(async () => {
        started.push(i);
        running++;
        peak = Math.max(peak, running);
        await new Promise((r) => setTimeout(r, 10));
        running--;
        if (fail) throw new Error(`task ${i} failed`);
        return i;
      });
    const results = await Promise.allSettled([task(0), task(1, true), task(2), task(3), task(4)]);
    expect(peak).toBe(2);
    expect(started).toEqual([0, 1, 2, 3, 4]);
    expect(results.map((r) => r.status)).toEqual([
      'fulfilled',
      'rejected',
      'fulfilled',
      'fulfilled',
      'fulfilled',
    ]);
    // Every slot came back: two more tasks still run side by side.
    running = 0;
    peak = 0;
    await Promise.all([task(5), task(6)]);
    expect(peak).toBe(2);
  });
});
