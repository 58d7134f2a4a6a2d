import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import argon2 from 'argon2';
import bcrypt from 'bcryptjs';
import { ConfigError } from '../core/errors.js';
import { bcryptCompare } from './bcrypt-worker.js';
import { PasswordPolicyError } from './errors.js';
import { VerifyFloor } from './verify-floor.js';

/**
 * argon2 hashes on libuv's thread pool (4 threads by default). With fewer cores than that, a
 * login storm keeps every core busy hashing and the event loop waits for CPU, so every other
 * request slows down. At most one hash per core at a time keeps the loop responsive; logins
 * queue for a few milliseconds instead (`npm run bench -- --only=storm` measures it).
 */
export function limitConcurrency(max: number): <T>(work: () => Promise<T>) => Promise<T> {
  let active = 0;
  const waiting: Array<() => void> = [];
  return async (work) => {
    if (active < max) active++;
    else await new Promise<void>((resume) => waiting.push(resume)); // the slot is handed over
    try {
      return await work();
    } finally {
      const next = waiting.shift();
      if (next) next();
      else active--;
    }
  };
}

const hashing = limitConcurrency(Math.max(1, availableParallelism()));

/** Shortest accepted new password, in characters (ASVS 6.2.1). */
export const MIN_PASSWORD_LENGTH = 8;
/** Longest accepted password, in characters: long passphrases work, megabyte bodies don't reach the hasher. */
export const MAX_PASSWORD_LENGTH = 1024;

/**
 * argon2id cost. The default is OWASP's Password Storage Cheat Sheet configuration
 * "m=19456 (19 MiB), t=2, p=1": tens of milliseconds on one core, off the event loop.
 */
export interface Argon2Params {
  memoryCost: number;
  timeCost: number;
  parallelism: number;
}

export const DEFAULT_ARGON2_PARAMS: Readonly<Argon2Params> = Object.freeze({
  memoryCost: 19_456,
  timeCost: 2,
  parallelism: 1,
});

const BCRYPT_PREFIX = /^\$2[aby]\$\d{2}\$/;
const ARGON2_PREFIX = /^\$argon2(id|i|d)\$/;
/** Scheme and cost parameters of a hash: what its verification time depends on. */
const BCRYPT_KIND = /^\$2[aby]\$(\d{2})\$/;
const ARGON2_KIND = /^\$(argon2(?:id|i|d))\$(?:v=\d+\$)?m=(\d+),t=(\d+),p=(\d+)\$/;
/** Kinds dearer than this are not measured ahead (bcrypt-16 alone takes seconds): they are learnt at use. */
const MAX_CALIBRATED_BCRYPT_COST = 15;
const MAX_CALIBRATED_ARGON2_MEMORY = 1024 * 1024; // KiB
/** Default of {@link PasswordHasherOptions.maxPaddingMs}. */
export const DEFAULT_MAX_VERIFY_PADDING_MS = 2_000;

/** The kind of a hash (or of its prefix), e.g. `bcrypt:12` or `argon2id:19456,2,1`; null when unsupported. */
export function hashKind(hash: string): string | null {
  const b = BCRYPT_KIND.exec(hash);
  if (b) return `bcrypt:${Number(b[1])}`;
  const a = ARGON2_KIND.exec(hash);
  if (a) return `${a[1]}:${a[2]},${a[3]},${a[4]}`;
  return null;
}

/** Options of {@link PasswordHasher} besides the argon2id parameters. */
export interface PasswordHasherOptions {
  /**
   * Pad every verification to the slowest kind of hash seen (see {@link VerifyFloor}), at most
   * this long, in ms. Default 2000; 0 turns padding off.
   */
  maxPaddingMs?: number | undefined;
}

/** Length in characters as the user typed them (code points: an emoji counts once). */
function length(password: string): number {
  let n = 0;
  for (const _ of password) n++;
  return n;
}

let common: Set<string> | undefined;

/**
 * Whether a password is on the common-passwords list of `@zxcvbn-ts/language-common` (about
 * 49 000 passwords from breach corpora, ranked; the 18 000 of 8 characters or more can matter
 * here). Compared case-insensitively: `Password123` is as guessable as `password123`. The list is
 * loaded on first use.
 */
export function isCommonPassword(password: string): boolean {
  if (!common) {
    const require = createRequire(import.meta.url);
    const { dictionary } = require('@zxcvbn-ts/language-common') as {
      dictionary: Record<string, readonly string[]>;
    };
    common = new Set((dictionary['passwords-common'] ?? []).filter((p) => length(p) >= MIN_PASSWORD_LENGTH));
  }
  return common.has(password.toLowerCase());
}

/**
 * Check a new password against the policy (ASVS 6.2.1, 6.2.4, 6.2.9): 8 to 1024 characters and
 * not a common password. Returns the problem in words, or null. Passwords are taken exactly as
 * typed: no trimming, no normalisation, no truncation.
 */
export function passwordProblem(password: unknown): string | null {
  if (typeof password !== 'string') return 'Password required';
  const n = length(password);
  if (n < MIN_PASSWORD_LENGTH) return `Password must be at least ${MIN_PASSWORD_LENGTH} characters`;
  if (n > MAX_PASSWORD_LENGTH) return `Password must be at most ${MAX_PASSWORD_LENGTH} characters`;
  if (isCommonPassword(password)) return 'This password is too common: choose one that is harder to guess';
  return null;
}

/** Result of {@link PasswordHasher.verify}. */
export interface VerifyResult {
  ok: boolean;
  /** The password matched but the hash is bcrypt or weaker argon2 parameters: store a fresh hash. */
  needsRehash: boolean;
  /** The scheme of the stored hash. */
  scheme: 'argon2id' | 'bcrypt' | 'unknown';
}

/**
 * Hashes new passwords with argon2id and verifies argon2 and bcrypt (`$2a$`, `$2b$`, `$2y$`)
 * hashes. Nothing here blocks the event loop: argon2 runs on libuv's thread pool, and bcrypt
 * comparisons run on a worker thread (bcryptjs's own async API still computes on the calling
 * thread, in slices of up to 100 ms).
 *
 * bcrypt only ever looks at the first 72 bytes of a password. A legacy bcrypt hash therefore
 * still accepts any password sharing those 72 bytes until the user's next successful login,
 * which replaces it with an argon2id hash of the whole password as typed.
 */
export class PasswordHasher {
  readonly params: Readonly<Argon2Params>;
  #dummy: Promise<string> | undefined;
  readonly #floor: VerifyFloor;

  constructor(params: Partial<Argon2Params> = {}, options: PasswordHasherOptions = {}) {
    this.params = Object.freeze({ ...DEFAULT_ARGON2_PARAMS, ...params });
    const maxPadding = options.maxPaddingMs ?? DEFAULT_MAX_VERIFY_PADDING_MS;
    if (!Number.isFinite(maxPadding) || maxPadding < 0) {
      throw new ConfigError('maxPaddingMs must be a non-negative number of milliseconds');
    }
    this.#floor = new VerifyFloor(maxPadding);
  }

  /** The time every verification currently takes at least, in ms (the slowest kind of hash seen). */
  get verifyFloorMs(): number {
    return this.#floor.floorMs;
  }

  /**
   * Measure the verification time of these hashes' kinds (one verification of a dummy hash per
   * kind not measured yet), so that even the first login of an account of a slow kind takes no
   * longer than any other (see {@link VerifyFloor}). `Auth.ready()` calls it with the kinds in
   * the users table; importing a hash calls it with that hash.
   */
  async calibrate(hashes: Iterable<string>): Promise<void> {
    for (const hash of hashes) {
      const kind = hashKind(hash);
      if (kind === null || this.#floor.knows(kind)) continue;
      const dummy = await this.#dummyOfKind(hash);
      if (dummy === null) continue;
      // Twice: the first run of a kind also pays for warming up (JIT, worker start).
      for (let i = 0; i < 2; i++)
        await this.#timed(kind, () => this.#compare(dummy, randomSecret()), i === 1);
    }
  }

  /** A hash nobody knows the password of, with the same scheme and cost as `hash`; null if too dear to measure. */
  async #dummyOfKind(hash: string): Promise<string | null> {
    const b = BCRYPT_KIND.exec(hash);
    if (b) {
      const cost = Number(b[1]);
      if (cost > MAX_CALIBRATED_BCRYPT_COST) return null;
      // bcrypt's own salt and encoding with a random digest: comparing costs exactly a real compare.
      return bcrypt.genSaltSync(cost) + bcrypt.encodeBase64(randomBytes(23), 23);
    }
    const a = ARGON2_KIND.exec(hash);
    if (a) {
      const [memoryCost, timeCost, parallelism] = [Number(a[2]), Number(a[3]), Number(a[4])];
      if (memoryCost > MAX_CALIBRATED_ARGON2_MEMORY) return null;
      const type =
        a[1] === 'argon2i' ? argon2.argon2i : a[1] === 'argon2d' ? argon2.argon2d : argon2.argon2id;
      return hashing(() => argon2.hash(randomSecret(), { type, memoryCost, timeCost, parallelism }));
    }
    return null;
  }

  /** Verify with the scheme the hash names; false for a malformed hash. */
  async #compare(storedHash: string, password: string): Promise<boolean> {
    try {
      if (BCRYPT_PREFIX.test(storedHash)) return await bcryptCompare(password, storedHash);
      return await hashing(() => argon2.verify(storedHash, password));
    } catch {
      return false;
    }
  }

  /** Run `work` (one verification of `kind`) and, when `record`, learn how long it took. */
  async #timed<T>(kind: string | null, work: () => Promise<T>, record = true): Promise<T> {
    const started = performance.now();
    const result = await work();
    if (kind !== null && record) this.#floor.record(kind, performance.now() - started);
    return result;
  }

  /** An argon2id hash of `password`, after checking the length policy (PasswordPolicyError). */
  async hash(password: string): Promise<string> {
    const problem = passwordProblem(password);
    if (problem) throw new PasswordPolicyError(problem);
    return hashing(() => argon2.hash(password, { type: argon2.argon2id, ...this.params }));
  }

  /**
   * An argon2id hash of a password that was already accepted once (upgrading a legacy hash at
   * login): no minimum length, since the user's existing password is what it is.
   */
  async hashUnchecked(password: string): Promise<string> {
    if (length(password) > MAX_PASSWORD_LENGTH) throw new PasswordPolicyError('Password too long');
    return hashing(() => argon2.hash(password, { type: argon2.argon2id, ...this.params }));
  }

  /**
   * Verify `password` against a stored hash. Never throws for a malformed hash: it just fails.
   * Takes at least as long as the slowest kind of hash seen (see {@link VerifyFloor}).
   */
  async verify(storedHash: string, password: string): Promise<VerifyResult> {
    const started = performance.now();
    try {
      return await this.#verify(storedHash, password);
    } finally {
      await this.#floor.pad(started);
    }
  }

  async #verify(storedHash: string, password: string): Promise<VerifyResult> {
    if (typeof password !== 'string' || length(password) > MAX_PASSWORD_LENGTH) {
      return { ok: false, needsRehash: false, scheme: 'unknown' };
    }
    if (ARGON2_PREFIX.test(storedHash)) {
      const ok = await this.#timed(hashKind(storedHash), () => this.#compare(storedHash, password));
      let weak = false;
      try {
        weak = ok && (!storedHash.startsWith('$argon2id$') || argon2.needsRehash(storedHash, this.params));
      } catch {
        weak = false;
      }
      return { ok, needsRehash: weak, scheme: 'argon2id' };
    }
    if (BCRYPT_PREFIX.test(storedHash)) {
      const ok = await this.#timed(hashKind(storedHash), () => this.#compare(storedHash, password));
      return { ok, needsRehash: ok, scheme: 'bcrypt' };
    }
    // Unknown scheme (or a disabled account's placeholder): spend the same time, then fail.
    await this.#verifyDummy(password);
    return { ok: false, needsRehash: false, scheme: 'unknown' };
  }

  /**
   * Spend the time of a real verification and fail: used when the email is unknown, so the
   * answer and its timing do not tell whether an account exists (padded like {@link verify}).
   */
  async verifyDummy(password: string): Promise<false> {
    const started = performance.now();
    try {
      return await this.#verifyDummy(password);
    } finally {
      await this.#floor.pad(started);
    }
  }

  async #verifyDummy(password: string): Promise<false> {
    const hash = await this.dummyHash();
    await this.#timed(hashKind(hash), () =>
      this.#compare(hash, typeof password === 'string' ? password : ''),
    );
    return false;
  }

  /** A hash of a random secret nobody knows, made once with the current parameters. */
  dummyHash(): Promise<string> {
    this.#dummy ??= argon2.hash(randomSecret(), {
      type: argon2.argon2id,
      ...this.params,
    });
    return this.#dummy;
  }
}

/** True for hashes this module can verify. */
export function isSupportedHash(hash: string): boolean {
  return ARGON2_PREFIX.test(hash) || BCRYPT_PREFIX.test(hash);
}

function randomSecret(): string {
  return randomBytes(32).toString('base64url');
}
