import { createHash } from 'node:crypto';
import { ConfigError } from '../core/errors.js';
import { type BreachedPasswordCheck, PasswordCheckUnavailableError } from './password-policy.js';

/** Options of {@link pwnedPasswords}. */
export interface PwnedPasswordsOptions {
  /** The range endpoint; the 5-character hash prefix is appended. Default Have I Been Pwned's. */
  url?: string;
  /** How long to wait for the whole answer, ms. Default 2000. */
  timeoutMs?: number;
  /**
   * When the service cannot answer (network error, timeout, status other than 200, unreadable
   * body): `'allow'` (default) lets the password through and reports it, so registration and
   * password changes keep working while the service is down; `'refuse'` throws
   * {@link PasswordCheckUnavailableError} (HTTP 503: "try again").
   */
  onError?: 'allow' | 'refuse';
  /** Refuse passwords seen at least this many times. Default 1 (any breach). */
  minCount?: number;
  /** The fetch to use (tests, proxies). Default the global `fetch` (Node 20+). */
  fetch?: typeof fetch;
}

export const PWNED_PASSWORDS_URL = 'https://api.pwnedpasswords.com/range/';

const LINE = /^([0-9A-Fa-f]{35}):(\d+)$/;

/** Why a request failed, in words for the log (never the password, its hash or the URL with the prefix). */
function describeFailure(err: unknown, timeoutMs: number): string {
  const e = err as {
    name?: unknown;
    message?: unknown;
    cause?: { code?: unknown; message?: unknown };
  } | null;
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return `timeout after ${timeoutMs} ms`;
  const code = e?.cause?.code;
  if (typeof code === 'string') return `network error (${code})`;
  const message = typeof e?.cause?.message === 'string' ? e.cause.message : e?.message;
  return `network error (${typeof message === 'string' ? message : String(err)})`;
}

class Unavailable extends Error {}

/**
 * A breached-password check on the Have I Been Pwned "Pwned Passwords" range API (ASVS 6.2.12),
 * for `passwordPolicy.breached`. k-anonymity: the password is hashed with SHA-1 here and only the
 * first 5 hex characters of the hash leave the process; the service answers with every suffix
 * under that prefix (`SUFFIX:COUNT` lines), and the match is made locally. `Add-Padding: true`
 * asks for decoy entries (count 0, ignored) so the answer's size does not tell the prefix either.
 *
 * ```ts
 * createAuth({ pool, session, passwordPolicy: { breached: pwnedPasswords({ onError: 'allow' }) } });
 * ```
 */
export function pwnedPasswords(options: PwnedPasswordsOptions = {}): BreachedPasswordCheck {
  const url = options.url ?? PWNED_PASSWORDS_URL;
  const timeoutMs = options.timeoutMs ?? 2000;
  const onError = options.onError ?? 'allow';
  const minCount = options.minCount ?? 1;
  try {
    new URL(url);
  } catch {
    throw new ConfigError(`pwnedPasswords: url must be an absolute URL, got "${url}"`);
  }
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new ConfigError('pwnedPasswords: timeoutMs must be a positive number');
  }
  if (onError !== 'allow' && onError !== 'refuse') {
    throw new ConfigError('pwnedPasswords: onError must be "allow" or "refuse"');
  }
  // 0 would count the padding entries as breaches.
  if (!Number.isSafeInteger(minCount) || minCount < 1) {
    throw new ConfigError('pwnedPasswords: minCount must be an integer of at least 1');
  }
  const base = url.endsWith('/') ? url : `${url}/`;

  return async (password, context) => {
    const hash = createHash('sha1').update(password, 'utf8').digest('hex').toUpperCase();
    const prefix = hash.slice(0, 5);
    const suffix = hash.slice(5);
    let body: string;
    try {
      const doFetch = options.fetch ?? globalThis.fetch;
      // One deadline for the headers and the body: a service that trickles its answer is down too.
      const res = await doFetch(`${base}${prefix}`, {
        headers: { 'Add-Padding': 'true', 'User-Agent': 'pgsession' },
        signal: AbortSignal.timeout(timeoutMs),
      });
      if (res.status !== 200) {
        await res.body?.cancel().catch(() => {});
        throw new Unavailable(`HTTP ${res.status}`);
      }
      body = await res.text();
    } catch (err) {
      const reason = err instanceof Unavailable ? err.message : describeFailure(err, timeoutMs);
      return unavailable(reason, err);
    }

    let entries = 0;
    for (const raw of body.split('\n')) {
      const m = LINE.exec(raw.trim());
      if (!m) continue;
      entries++;
      if (m[1]!.toUpperCase() === suffix) return Number(m[2]) >= minCount;
    }
    // A 200 that is not a range answer (a captive portal, a proxy's page) checked nothing.
    if (entries === 0 && body.trim() !== '') return unavailable('unexpected response body', undefined);
    return false;

    function unavailable(reason: string, cause: unknown): false {
      if (onError === 'refuse') throw new PasswordCheckUnavailableError(reason, { cause });
      if (context) context.unavailable(reason);
      else
        process.emitWarning(
          `pgsession auth: breached-password check unavailable (${reason}); the password was allowed`,
          { code: 'PGSESSION_PASSWORD_CHECK' },
        );
      return false;
    }
  };
}
