import { describe, expect, it } from 'vitest';
import { ConfigError } from './errors.js';
import { GENERATE_SECRET_COMMAND, MIN_PRODUCTION_SECRET_LENGTH, normalizeSecrets } from './secrets.js';

const LONG = 'k'.repeat(MIN_PRODUCTION_SECRET_LENGTH);
const SHORT = 's'.repeat(MIN_PRODUCTION_SECRET_LENGTH - 1);

/** normalizeSecrets with its warnings collected. */
function check(secret: unknown, production: boolean) {
  const warnings: string[] = [];
  const secrets = normalizeSecrets(secret, production, (m) => warnings.push(m));
  return { secrets, warnings };
}

describe('normalizeSecrets', () => {
  it('accepts a string, a Buffer or a non-empty array of them, first one first, silently when strong', () => {
    const key = Buffer.alloc(32, 7);
    expect(check(LONG, true)).toEqual({ secrets: [LONG], warnings: [] });
    expect(check([LONG, `${LONG}-old`], true)).toEqual({ secrets: [LONG, `${LONG}-old`], warnings: [] });
    expect(check(key, true)).toEqual({ secrets: [key], warnings: [] });
    expect(check([key, LONG], true).secrets).toEqual([key, LONG]);
  });

  it("refuses an empty array with express-session's message", () => {
    expect(() => normalizeSecrets([], false)).toThrow(ConfigError);
    expect(() => normalizeSecrets([], true)).toThrow(/secret option array must contain one or more strings/);
  });

  it.each([[undefined], [null], [''], [['']], [[LONG, '']], [42], [[LONG, 7]], [{}], [Buffer.alloc(0)]])(
    'refuses %j everywhere',
    (secret) => {
      expect(() => normalizeSecrets(secret, false)).toThrow(ConfigError);
      expect(() => normalizeSecrets(secret, true)).toThrow(/secret option required/);
    },
  );

  it.each([
    'keyboard cat',
    'Keyboard Cat',
    ' keyboard cat ',
    'secret',
    'changeme',
    'your-secret-key',
    'abc123',
  ])(
    'the example secret %j: outside production, accepted with one warning that says how to make a real one',
    (secret) => {
      const { secrets, warnings } = check(secret, false);
      expect(secrets).toEqual([secret]);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(/WEAK SESSION SECRET/);
      expect(warnings[0]).toContain(`example secret "${secret}"`);
      expect(warnings[0]).toContain(GENERATE_SECRET_COMMAND);
    },
  );

  it.each(['keyboard cat', 'secret', 'replace-with-a-long-random-string'])(
    'the example secret %j: refused in production as the signing secret, with how to make a real one and how to switch',
    (secret) => {
      expect(() => normalizeSecrets(secret, true)).toThrow(ConfigError);
      expect(() => normalizeSecrets(secret, true)).toThrow(/example secret/);
      expect(() => normalizeSecrets(secret, true)).toThrow(GENERATE_SECRET_COMMAND);
      expect(() => normalizeSecrets([secret, LONG], true)).toThrow(/secret: \[newSecret, oldSecret\]/);
    },
  );

  it(`a secret under ${MIN_PRODUCTION_SECRET_LENGTH} characters: refused in production as the signing secret, without "got one of N"`, () => {
    let message = '';
    try {
      normalizeSecrets(SHORT, true);
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      message = (err as Error).message;
    }
    expect(message).toMatch(/at least 32 characters in production \(secret #1 has 31 characters\)/);
    expect(message).toContain(GENERATE_SECRET_COMMAND);
    expect(message).not.toMatch(/got one of/);
    expect(() => normalizeSecrets(Buffer.alloc(16), true)).toThrow(/secret #1 has 16 bytes/);
  });

  it('a short secret outside production: accepted, with the warning (never the secret itself)', () => {
    const { secrets, warnings } = check(SHORT, false);
    expect(secrets).toEqual([SHORT]);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/secret #1 has 31 characters/);
    expect(warnings[0]).not.toContain(SHORT);
  });

  it('in production, older verify-only secrets of any length (and examples) are accepted, with one loud warning', () => {
    const { secrets, warnings } = check([LONG, SHORT, 'keyboard cat'], true);
    expect(secrets).toEqual([LONG, SHORT, 'keyboard cat']);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(
      /WEAK SESSION SECRET: secret #2 has 31 characters; secret #3 is the example secret/,
    );
    expect(warnings[0]).toMatch(/re-signed with the first secret/);
    expect(warnings[0]).not.toContain(SHORT);
  });

  it('errors carry a stable code and do not expose details', () => {
    try {
      normalizeSecrets('', true);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).code).toBe('PGSESSION_CONFIG');
      expect((err as ConfigError).expose).toBe(false);
    }
  });
});
