import { ConfigError } from '../core/errors.js';
import { AuthError, PasswordPolicyError } from './errors.js';
import { passwordProblem } from './passwords.js';

/** Context words (and email parts) shorter than this are ignored: "HR" or "abc" would refuse too much. */
export const MIN_CONTEXT_WORD_LENGTH = 4;

/**
 * The substitutions people make to dress up a word ("P4ssw0rd", "$e$$ion"): each character on
 * the left may stand for any of the letters on the right. `1` is both `i` and `l`.
 */
const SUBSTITUTIONS: Readonly<Record<string, string>> = Object.freeze({
  '0': 'o',
  '1': 'il',
  '3': 'e',
  '4': 'a',
  '5': 's',
  '7': 't',
  '@': 'a',
  $: 's',
});

const LETTER = /\p{L}/u;
const LETTER_OR_DIGIT = /[\p{L}\p{N}]/u;
const SPACE = /\s/u;

/**
 * Lower case, without accents (NFKD, then combining marks dropped), as an array of code points:
 * "Pg-Séssion" and "pg-session" compare the same. Only ever used for comparing, never stored.
 */
function fold(text: string): string[] {
  return [...text.normalize('NFKD').replace(/\p{M}/gu, '').toLowerCase()];
}

/** A context word as compared: folded, letters and digits only ("Acme-Corp" → "acmecorp"). */
function wordKey(word: string): string[] {
  return fold(word).filter((ch) => LETTER_OR_DIGIT.test(ch));
}

/** Can this character of the password stand for this character of the word? */
function stands(pw: string, word: string): boolean {
  return (
    pw === word ||
    (SUBSTITUTIONS[pw]?.includes(word) ?? false) ||
    (SUBSTITUTIONS[word]?.includes(pw) ?? false)
  );
}

/**
 * Digits and punctuation may pad a word from inside too ("pg-session", "pg.2.session"); letters
 * may not (that would make a different word) and neither may spaces: "said emotional" is not
 * the word "demo", and refusing passphrases for straddling words would only annoy.
 */
function skippable(ch: string): boolean {
  return !LETTER.test(ch) && !SPACE.test(ch);
}

/**
 * Does the (folded) password contain the word? A small NFA run over the password: a state is
 * how many characters of the word have been matched so far; 0 is always live (a match may start
 * anywhere). O(password × word), no backtracking, so a hostile 1024-character password costs
 * microseconds.
 */
function containsWord(password: readonly string[], word: readonly string[]): boolean {
  if (word.length === 0) return false;
  let states: number[] = [];
  for (const ch of password) {
    const next = new Set<number>();
    const skip = skippable(ch);
    for (const j of [0, ...states]) {
      if (stands(ch, word[j]!)) {
        if (j + 1 === word.length) return true;
        next.add(j + 1);
      }
      if (skip && j > 0) next.add(j);
    }
    states = [...next];
  }
  return false;
}

/**
 * The first of `words` (of {@link MIN_CONTEXT_WORD_LENGTH}+ letters and digits) that the password
 * contains, compared case-insensitively, without accents, after undoing common substitutions
 * (0→o, 1→i/l, 3→e, 4→a, 5→s, 7→t, @→a, $→s) and ignoring digits and punctuation around or
 * inside the word. Returns the word as listed, or null.
 */
export function contextWordIn(password: string, words: Iterable<string>): string | null {
  const folded = fold(password);
  for (const word of words) {
    if (typeof word !== 'string') continue;
    const key = wordKey(word);
    if (key.length < MIN_CONTEXT_WORD_LENGTH) continue;
    if (containsWord(folded, key)) return word.trim();
  }
  return null;
}

/**
 * The words of an email address a password must not contain: the local part (whole, and its
 * pieces split at `.`, `_`, `+`, `-`…) and the domain's labels except the last (the top-level
 * domain says nothing about the user). `alice.smith@acme-corp.example` → `alice.smith`, `alice`,
 * `smith`, `acme-corp`, `acme`, `corp`, `example`. Pieces shorter than 4 are left out.
 */
export function emailContextWords(email: string | null | undefined): string[] {
  if (typeof email !== 'string') return [];
  const at = email.lastIndexOf('@');
  if (at <= 0) return [];
  const local = email.slice(0, at).trim();
  const labels = email
    .slice(at + 1)
    .trim()
    .split('.')
    .slice(0, -1);
  const words = new Set<string>();
  for (const part of [local, ...labels]) {
    words.add(part);
    for (const piece of part.split(/[^\p{L}\p{N}]+/u)) words.add(piece);
  }
  return [...words].filter((w) => wordKey(w).length >= MIN_CONTEXT_WORD_LENGTH);
}

/** The policy's message for a context word; names the word (from the list or the email), never the password. */
export function contextWordMessage(word: string): string {
  return `This password contains a word tied to this site or your account ("${word}"): choose one that is harder to guess`;
}

/** The policy's message for a password found in breach corpora. */
export const BREACHED_PASSWORD_MESSAGE =
  'This password has appeared in a data breach, so attackers try it first: choose a different one';

/**
 * The breached-password service could not answer (network error, timeout, unexpected status)
 * and the policy says to refuse rather than let an unchecked password through. HTTP 503: the
 * user should try again shortly. `message` is safe to show.
 */
export class PasswordCheckUnavailableError extends AuthError {
  /** Why the check failed, for logs ("timeout after 2000 ms", "HTTP 500"…). Never holds the password. */
  readonly reason: string;
  readonly retryAfter = 30;
  constructor(reason: string, options: { cause?: unknown } = {}) {
    super(
      'PGSESSION_PASSWORD_CHECK_UNAVAILABLE',
      'We could not check this password against known data breaches just now: please try again in a moment',
      503,
    );
    this.reason = reason;
    if (options.cause !== undefined) Object.defineProperty(this, 'cause', { value: options.cause });
  }
}

/** What a breached-password check may call when it let a password through unchecked. */
export interface BreachedPasswordCheckContext {
  /** The service could not answer and the password was let through: report why (no password in it). */
  unavailable(reason: string): void;
}

/**
 * Is this password known from breaches? Resolve `true` to refuse it. To refuse when the check
 * cannot be made, throw (a {@link PasswordCheckUnavailableError}, or anything: other errors are
 * wrapped in one); to let the password through, resolve `false` and call
 * `context.unavailable(reason)` so the miss is reported. {@link pwnedPasswords} is one.
 */
export type BreachedPasswordCheck = (
  password: string,
  context?: BreachedPasswordCheckContext,
) => Promise<boolean>;

/** The password policy's options (`passwordPolicy` of `createAuth` and `UserRepository`). */
export interface PasswordPolicyOptions {
  /**
   * Words tied to this site that new passwords must not contain (ASVS 6.2.11): the product,
   * company and system names, the site's domain… Matched case-insensitively, after undoing
   * common substitutions and ignoring digits and punctuation around them; entries shorter than 4
   * letters/digits are ignored. The user's own email (local part, domain labels) is always
   * refused too, whether or not a list is given.
   */
  contextWords?: readonly string[];
  /**
   * Breached-password check (ASVS 6.2.12), e.g. `pwnedPasswords()` (Have I Been Pwned's range
   * API, k-anonymity). Default: none.
   */
  breached?: BreachedPasswordCheck;
}

/** Who a new password is for: the email feeds the context words, the user id the audit report. */
export interface PasswordContext {
  email?: string | null | undefined;
  userId?: number | null | undefined;
}

/** A breached-password check that could not be made, as the policy reports it. */
export interface PasswordCheckUnavailableReport {
  userId: number | null;
  /** `allowed`: the password was accepted unchecked; `refused`: the user was asked to try again. */
  outcome: 'allowed' | 'refused';
  reason: string;
}

/** Hooks of {@link PasswordPolicy} (the auth layer turns reports into audit events). */
export interface PasswordPolicyHooks {
  /** A breached-password check could not be made. Default: a process warning. */
  onUnavailable?: (report: PasswordCheckUnavailableReport) => void;
}

/**
 * The rules for a new password, in order: 8 to 1024 characters, not a common password
 * (`passwordProblem`), no context word and no part of the user's email ({@link contextWordIn}),
 * not breached (the optional async check). Used by `UserRepository.create`/`setPassword`,
 * `Auth.changePassword` and the CLI.
 */
export class PasswordPolicy {
  readonly contextWords: readonly string[];
  readonly breached: BreachedPasswordCheck | undefined;
  readonly #onUnavailable: (report: PasswordCheckUnavailableReport) => void;

  constructor(options: PasswordPolicyOptions = {}, hooks: PasswordPolicyHooks = {}) {
    const words = options.contextWords ?? [];
    if (!Array.isArray(words) || words.some((w) => typeof w !== 'string')) {
      throw new ConfigError('passwordPolicy.contextWords must be an array of strings');
    }
    if (options.breached !== undefined && typeof options.breached !== 'function') {
      throw new ConfigError('passwordPolicy.breached must be a function (password) => Promise<boolean>');
    }
    this.contextWords = Object.freeze([...words]);
    this.breached = options.breached;
    this.#onUnavailable =
      hooks.onUnavailable ??
      ((r) =>
        process.emitWarning(
          `pgsession auth: breached-password check unavailable (${r.reason}); the password was ${r.outcome}`,
          { code: 'PGSESSION_PASSWORD_CHECK' },
        ));
  }

  /**
   * The synchronous rules (length, common list, context words, the email): the problem in words,
   * or null. Cheap: check it before anything costly (a network call, a password prompt's repeat).
   */
  problem(password: unknown, context: PasswordContext = {}): string | null {
    const basic = passwordProblem(password);
    if (basic) return basic;
    const word = contextWordIn(password as string, [
      ...this.contextWords,
      ...emailContextWords(context.email),
    ]);
    return word === null ? null : contextWordMessage(word);
  }

  /**
   * The breached-password rule alone: the problem in words, or null (also when no check is
   * configured, or when it could not be made and lets passwords through — reported).
   * @throws PasswordCheckUnavailableError when the check could not be made and refuses then
   */
  async breachProblem(password: string, context: PasswordContext = {}): Promise<string | null> {
    const check = this.breached;
    if (!check) return null;
    const userId = context.userId ?? null;
    let breached: boolean;
    try {
      breached = await check(password, {
        unavailable: (reason) => this.#report({ userId, outcome: 'allowed', reason: String(reason) }),
      });
    } catch (err) {
      const unavailable =
        err instanceof PasswordCheckUnavailableError
          ? err
          : new PasswordCheckUnavailableError((err as Error)?.message || String(err), { cause: err });
      this.#report({ userId, outcome: 'refused', reason: unavailable.reason });
      throw unavailable;
    }
    return breached === true ? BREACHED_PASSWORD_MESSAGE : null;
  }

  /**
   * Every rule. @throws PasswordPolicyError (message safe to show), PasswordCheckUnavailableError
   */
  async check(password: unknown, context: PasswordContext = {}): Promise<void> {
    const problem =
      this.problem(password, context) ?? (await this.breachProblem(password as string, context));
    if (problem) throw new PasswordPolicyError(problem);
  }

  #report(report: PasswordCheckUnavailableReport): void {
    try {
      this.#onUnavailable(report);
    } catch {
      // A failing logger must not change the answer given to the user.
    }
  }
}
