import { describe, expect, it } from 'vitest';
import {
  crossSiteReason,
  csrfTokenMatches,
  generateCsrfToken,
  presentedCsrfToken,
} from '../../src/auth/csrf.js';
import {
  type AuthRequest,
  clientAddress,
  describeUserAgent,
  isAuthenticated,
  wantsJson,
} from '../../src/auth/index.js';

function req(init: Record<string, unknown> = {}): AuthRequest {
  return { method: 'POST', url: '/', headers: {}, socket: {}, ...init } as unknown as AuthRequest;
}

describe('crossSiteReason', () => {
  const own = { host: 'app.example', origin: 'https://app.example' };
  it('accepts same-origin and header-less requests', () => {
    expect(crossSiteReason(req({ protocol: 'https', headers: own }))).toBeNull();
    expect(
      crossSiteReason(req({ protocol: 'https', headers: { ...own, 'sec-fetch-site': 'same-origin' } })),
    ).toBeNull();
    expect(
      crossSiteReason(req({ protocol: 'https', headers: { host: 'app.example', 'sec-fetch-site': 'none' } })),
    ).toBeNull();
    expect(crossSiteReason(req({ headers: { host: 'app.example' } }))).toBeNull();
    // Chromium sends `Origin: null` on same-origin form posts under `Referrer-Policy: no-referrer`;
    // the browser's own Sec-Fetch-Site vouches for them.
    expect(
      crossSiteReason(
        req({
          protocol: 'https',
          headers: { host: 'app.example', origin: 'null', 'sec-fetch-site': 'same-origin' },
        }),
      ),
    ).toBeNull();
    // Default ports are normalised.
    expect(
      crossSiteReason(
        req({ protocol: 'https', headers: { host: 'app.example:443', origin: 'https://app.example' } }),
      ),
    ).toBeNull();
  });
  it('refuses cross-site and same-site fetches, foreign and null origins, scheme mismatches', () => {
    expect(
      crossSiteReason(req({ protocol: 'https', headers: { ...own, 'sec-fetch-site': 'cross-site' } })),
    ).toBe('cross-site');
    expect(
      crossSiteReason(req({ protocol: 'https', headers: { ...own, 'sec-fetch-site': 'same-site' } })),
    ).toBe('cross-site');
    expect(
      crossSiteReason(
        req({ protocol: 'https', headers: { host: 'app.example', origin: 'https://evil.example' } }),
      ),
    ).toBe('origin');
    expect(
      crossSiteReason(req({ protocol: 'https', headers: { host: 'app.example', origin: 'null' } })),
    ).toBe('origin');
    expect(
      crossSiteReason(
        req({ protocol: 'http', headers: { host: 'app.example', origin: 'https://app.example' } }),
      ),
    ).toBe('origin');
  });
  it('options: allowSameSite and allowedOrigins', () => {
    expect(
      crossSiteReason(req({ protocol: 'https', headers: { ...own, 'sec-fetch-site': 'same-site' } }), {
        allowSameSite: true,
      }),
    ).toBeNull();
    expect(
      crossSiteReason(
        req({ protocol: 'https', headers: { host: 'api.example', origin: 'https://app.example' } }),
        {
          allowedOrigins: ['https://app.example'],
        },
      ),
    ).toBeNull();
  });
});

describe('CSRF tokens', () => {
  it('are 32 random bytes, compared in constant time, from header or body', () => {
    const t = generateCsrfToken();
    expect(t).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(generateCsrfToken()).not.toBe(t);
    expect(csrfTokenMatches(t, t)).toBe(true);
    expect(csrfTokenMatches(t, `${t}x`)).toBe(false);
    expect(csrfTokenMatches(t, '')).toBe(false);
    expect(csrfTokenMatches(undefined, t)).toBe(false);
    expect(csrfTokenMatches(t, ['a'])).toBe(false);
    expect(presentedCsrfToken(req({ headers: { 'x-csrf-token': 'h' }, body: { _csrf: 'b' } }))).toBe('h');
    expect(presentedCsrfToken(req({ body: { _csrf: 'b' } }))).toBe('b');
    expect(presentedCsrfToken(req({ body: 'raw' }))).toBeUndefined();
  });
});

describe('wantsJson', () => {
  it('paths under /api/ and Accept preferring JSON', () => {
    expect(wantsJson(req({ url: '/api/me' }))).toBe(true);
    expect(wantsJson(req({ originalUrl: '/api/me?x=1' }))).toBe(true);
    expect(wantsJson(req({ headers: { accept: 'application/json' } }))).toBe(true);
    expect(wantsJson(req({ headers: { accept: 'application/json, text/plain, */*' } }))).toBe(true);
    expect(wantsJson(req({ headers: { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' } }))).toBe(false);
    expect(wantsJson(req({ headers: { accept: 'text/html;q=0.5, application/json' } }))).toBe(true);
    expect(wantsJson(req({ headers: { accept: '*/*' } }))).toBe(false);
    expect(wantsJson(req())).toBe(false);
  });
});

describe('request helpers', () => {
  it('clientAddress prefers req.ip and unwraps IPv4-mapped addresses', () => {
    expect(clientAddress(req({ ip: '::ffff:10.0.0.1' }))).toBe('10.0.0.1');
    expect(clientAddress(req({ socket: { remoteAddress: '::1' } }))).toBe('::1');
  });
  it('isAuthenticated needs a positive integer userId', () => {
    expect(isAuthenticated(req())).toBe(false);
    expect(isAuthenticated(req({ session: { userId: 3 } }))).toBe(true);
    expect(isAuthenticated(req({ session: { userId: '3' } }))).toBe(false);
  });
});

describe('describeUserAgent', () => {
  it('names browser and OS in words', () => {
    expect(
      describeUserAgent(
        'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0',
      ),
    ).toBe('Microsoft Edge 120 on Windows 10');
    expect(
      describeUserAgent(
        'Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1',
      ),
    ).toBe('Safari 17.1 on iOS 17.1');
    expect(describeUserAgent('')).toBe('Unknown device');
    expect(describeUserAgent(null)).toBe('Unknown device');
    expect(describeUserAgent('curl/8.5.0')).toBe('Unknown browser');
  });

  // Issue 12, item 4: the header is the attacker's text, and the description goes into stored
  // security notices, the dashboard and the notify hook (emails).
  it('copies no text of an unrecognised User-Agent: no words, no URLs', () => {
    const hostile = [
      'URGENT reset at https://evil.example/x',
      'Evil/1.0 (https://evil.example)',
      'CallSupport/5550100 (Windows NT 10.0)',
      'Mozilla/5.0 (Windows NT 10.0) Call-now/+1-555-0100',
      'Mozilla/5.0 (Macintosh) Firefox/999.https://evil.example',
      'Chrome/1.https://x.y',
    ];
    for (const ua of hostile) {
      const text = describeUserAgent(ua);
      expect(text).not.toMatch(/evil|https?:|URGENT|Call|555|Mozilla|x\.y/i);
      expect(text).toMatch(/^(Unknown browser|[A-Za-z ]+( [\d.]+)?)( on [A-Za-z ]+( [\w.]+)?)?$/);
    }
    expect(describeUserAgent('Evil/1.0 (https://evil.example)')).toBe('Unknown browser');
    expect(describeUserAgent('Mozilla/5.0 (Windows NT 10.0) Call-now/+1-555-0100')).toBe(
      'Unknown browser on Windows 10',
    );
    expect(describeUserAgent('Mozilla/5.0 (Macintosh) Firefox/999.https://evil.example')).toBe(
      'Firefox 999 on macOS',
    );
  });
});

describe('error classes', () => {
  it('client errors carry expose = true (their messages are written for users); server errors do not', async () => {
    const { UnauthorizedError, ForbiddenError, CsrfError, TooManyAttemptsError, PasswordPolicyError } =
      await import('../../src/auth/index.js');
    const { PasswordCheckUnavailableError } = await import('../../src/auth/password-policy.js');
    const { StoreUnavailableError, ConfigError } = await import('../../src/core/errors.js');
    for (const err of [
      new UnauthorizedError(),
      new ForbiddenError(),
      new CsrfError('token'),
      new TooManyAttemptsError(60, 'ip'),
      new PasswordPolicyError('too short'),
    ]) {
      expect([err.name, err.status < 500, err.expose]).toEqual([err.name, true, true]);
    }
    expect(new PasswordCheckUnavailableError('timeout').expose).toBe(false);
    expect(new StoreUnavailableError('database down', new Error('down')).expose).toBe(false);
    expect(new ConfigError('bad').expose).toBe(false);
  });
});
