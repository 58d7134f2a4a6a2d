import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig, parseTrustProxy } from '../../app/config.js';
import { ConfigError } from '../../src/index.js';

const dirs: string[] = [];
function tmp(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'pgsession-config-'));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const SECRET = 'a'.repeat(16) + 'B'.repeat(16) + 'c'.repeat(8);

describe('loadConfig', () => {
  it('defaults: port 3000, host 127.0.0.1, 7d idle, 30d absolute, cookie sessionId, no proxy', () => {
    const c = loadConfig({ SESSION_SECRET: SECRET }, { dataDir: tmp() });
    expect(c).toMatchObject({
      port: 3000,
      host: '127.0.0.1',
      idleTimeout: 7 * 86_400_000,
      absoluteTimeout: 30 * 86_400_000,
      production: false,
      cookieName: 'sessionId',
      secureCookies: false,
      trustProxy: false,
      databaseUrl: undefined,
      sessionSecrets: [SECRET],
    });
  });

  it('reads every variable', () => {
    const c = loadConfig(
      {
        DATABASE_URL: 'postgres://u@h/db',
        PORT: '8080',
        HOST: '0.0.0.0',
        SESSION_SECRET: ` ${SECRET}, old-secret-still-verifies `,
        SESSION_IDLE_TIMEOUT: '15m',
        SESSION_ABSOLUTE_TIMEOUT: '43200000',
        TRUST_PROXY: '1',
      },
      { dataDir: tmp() },
    );
    expect(c).toMatchObject({
      databaseUrl: 'postgres://u@h/db',
      port: 8080,
      host: '0.0.0.0',
      sessionSecrets: [SECRET, 'old-secret-still-verifies'],
      idleTimeout: 900_000,
      absoluteTimeout: 43_200_000,
      trustProxy: 1,
    });
  });

  it('outside production, a missing secret is generated once into .data/session-secret with a warning', () => {
    const dataDir = tmp();
    const warnings: string[] = [];
    const first = loadConfig({}, { dataDir, warn: (m) => warnings.push(m) });
    const file = path.join(dataDir, 'session-secret');
    expect(first.generatedSecretFile).toBe(file);
    expect(first.sessionSecrets[0]).toHaveLength(43);
    expect(readFileSync(file, 'utf8').trim()).toBe(first.sessionSecrets[0]);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/SESSION_SECRET is not set/);
    const second = loadConfig({}, { dataDir, warn: (m) => warnings.push(m) });
    expect(second.sessionSecrets).toEqual(first.sessionSecrets);
    expect(warnings).toHaveLength(1);
  });

  it('production: secret required, the first (signing) one at least 32 characters; __Host- cookie, Secure', () => {
    expect(() => loadConfig({ NODE_ENV: 'production' }, { dataDir: tmp() })).toThrow(ConfigError);
    expect(() => loadConfig({ NODE_ENV: 'production' }, { dataDir: tmp() })).toThrow(
      /SESSION_SECRET is required/,
    );
    expect(() => loadConfig({ NODE_ENV: 'production', SESSION_SECRET: 'short' }, { dataDir: tmp() })).toThrow(
      /at least 32 characters/,
    );
    expect(() =>
      loadConfig(
        { NODE_ENV: 'production', SESSION_SECRET: `${'x'.repeat(31)},${SECRET}` },
        { dataDir: tmp() },
      ),
    ).toThrow(/secret #1 has 31/);
    // An older, verify-only secret may be short (rotation off it logs nobody out).
    expect(
      loadConfig(
        { NODE_ENV: 'production', SESSION_SECRET: `${SECRET},${'x'.repeat(31)}` },
        { dataDir: tmp() },
      ).sessionSecrets,
    ).toEqual([SECRET, 'x'.repeat(31)]);
    const c = loadConfig({ NODE_ENV: 'production', SESSION_SECRET: SECRET }, { dataDir: tmp() });
    expect(c).toMatchObject({ production: true, cookieName: '__Host-sessionId', secureCookies: true });
  });

  it('refuses example secrets in production (accepts them elsewhere), bad ports and bad durations', () => {
    expect(() =>
      loadConfig({ NODE_ENV: 'production', SESSION_SECRET: 'keyboard cat' }, { dataDir: tmp() }),
    ).toThrow(/example secret/);
    expect(loadConfig({ SESSION_SECRET: 'keyboard cat' }, { dataDir: tmp() }).sessionSecrets).toEqual([
      'keyboard cat',
    ]);
    expect(() => loadConfig({ SESSION_SECRET: SECRET, PORT: '70000' }, { dataDir: tmp() })).toThrow(/PORT/);
    expect(() => loadConfig({ SESSION_SECRET: SECRET, PORT: 'http' }, { dataDir: tmp() })).toThrow(/PORT/);
    expect(() =>
      loadConfig({ SESSION_SECRET: SECRET, SESSION_ABSOLUTE_TIMEOUT: '1 month' }, { dataDir: tmp() }),
    ).toThrow(/SESSION_ABSOLUTE_TIMEOUT/);
    expect(() =>
      loadConfig({ SESSION_SECRET: SECRET, SESSION_IDLE_TIMEOUT: '0' }, { dataDir: tmp() }),
    ).toThrow(/SESSION_IDLE_TIMEOUT/);
  });

  it('TRUST_PROXY: booleans, hop counts, names and lists', () => {
    expect(parseTrustProxy(undefined)).toBe(false);
    expect(parseTrustProxy('true')).toBe(true);
    expect(parseTrustProxy('false')).toBe(false);
    expect(parseTrustProxy('2')).toBe(2);
    expect(parseTrustProxy('loopback')).toBe('loopback');
    expect(parseTrustProxy('loopback, 10.0.0.0/8')).toEqual(['loopback', '10.0.0.0/8']);
    expect(parseTrustProxy('fd00::/8,192.0.2.1,10.0.0.0/255.0.0.0')).toEqual([
      'fd00::/8',
      '192.0.2.1',
      '10.0.0.0/255.0.0.0',
    ]);
  });

  // Issue 12, item 8: TRUST_PROXY=true makes Express trust the left-most X-Forwarded-For, so a
  // client picks its own rate-limit key.
  it('TRUST_PROXY: warns on true, refuses what is not a hop count, an address, a subnet or a name', () => {
    const warnings: string[] = [];
    const warn = (m: string) => warnings.push(m);
    loadConfig({ SESSION_SECRET: SECRET, TRUST_PROXY: 'true' }, { dataDir: tmp(), warn });
    expect(warnings.join('\n')).toMatch(/TRUST_PROXY=true trusts every X-Forwarded-For hop.*TRUST_PROXY=1/s);
    warnings.length = 0;
    loadConfig({ SESSION_SECRET: SECRET, TRUST_PROXY: '1' }, { dataDir: tmp(), warn });
    loadConfig({ SESSION_SECRET: SECRET, TRUST_PROXY: '10.0.0.0/8' }, { dataDir: tmp(), warn });
    expect(warnings).toEqual([]);
    for (const bad of ['proxy.example', '10.0.0.0/33', '1.2.3', 'loopback,evil', '::1/129']) {
      expect(() => parseTrustProxy(bad), bad).toThrow(ConfigError);
      expect(() => parseTrustProxy(bad), bad).toThrow(/TRUST_PROXY must be/);
    }
  });

  it('server limits against slow clients: defaults, and HEADERS_TIMEOUT, REQUEST_TIMEOUT, MAX_CONNECTIONS_PER_CLIENT', () => {
    expect(loadConfig({ SESSION_SECRET: SECRET }, { dataDir: tmp() }).server).toEqual({
      headersTimeout: 10_000,
      requestTimeout: 30_000,
      maxConnectionsPerClient: 16,
    });
    const env = {
      SESSION_SECRET: SECRET,
      HEADERS_TIMEOUT: '5s',
      REQUEST_TIMEOUT: '20000',
      MAX_CONNECTIONS_PER_CLIENT: '0',
    };
    expect(loadConfig(env, { dataDir: tmp() }).server).toEqual({
      headersTimeout: 5_000,
      requestTimeout: 20_000,
      maxConnectionsPerClient: 0,
    });
    expect(() =>
      loadConfig({ SESSION_SECRET: SECRET, MAX_CONNECTIONS_PER_CLIENT: 'many' }, { dataDir: tmp() }),
    ).toThrow(/MAX_CONNECTIONS_PER_CLIENT/);
    expect(() => loadConfig({ SESSION_SECRET: SECRET, HEADERS_TIMEOUT: '0' }, { dataDir: tmp() })).toThrow(
      /HEADERS_TIMEOUT/,
    );
  });
});
