import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/core/errors.js';
import { MIN_PRODUCTION_SECRET_LENGTH, normalizeSecrets } from '../../src/core/secrets.js';

const LONG = 'k'.repeat(MIN_PRODUCTION_SECRET_LENGTH);

describe('normalizeSecrets', () => {
  it('accepts a string or a non-empty array of strings, first one first', () => {
    expect(normalizeSecrets(LONG, true)).toEqual([LONG]);
    expect(normalizeSecrets([LONG, `${LONG}-old`], true)).toEqual([LONG, `${LONG}-old`]);
  });

  it.each([[undefined], [null], [''], [[]], [['']], [[LONG, '']], [42], [[LONG, 7]], [{}]])(
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
  ])('refuses the example secret %j, in development too', (secret) => {
    expect(() => normalizeSecrets(secret, false)).toThrow(ConfigError);
    expect(() => normalizeSecrets(secret, false)).toThrow(/example secret/);
    expect(() => normalizeSecrets([LONG, secret], false)).toThrow(/example secret/);
  });

  it(`refuses secrets under ${MIN_PRODUCTION_SECRET_LENGTH} characters only in production`, () => {
    const short = 's'.repeat(MIN_PRODUCTION_SECRET_LENGTH - 1);
    expect(normalizeSecrets(short, false)).toEqual([short]);
    expect(() => normalizeSecrets(short, true)).toThrow(ConfigError);
    expect(() => normalizeSecrets(short, true)).toThrow(/at least 32 characters/);
    expect(() => normalizeSecrets([LONG, short], true)).toThrow(ConfigError);
    expect(normalizeSecrets(LONG, true)).toEqual([LONG]);
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
