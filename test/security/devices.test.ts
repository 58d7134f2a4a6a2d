/**
 * Device cookies against distributed lockout (OWASP "Slow Down Online Guessing Attacks with
 * Device Cookies"): an attacker spread over many addresses can use up an account's own
 * failed-login budget, but the owner's browser, which logged in before, keeps a budget of its own.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TrustedDevices } from '../../src/auth/devices.js';
import { ConfigError } from '../../src/index.js';
import { loginForm, PASSWORD, type RunningApp, startApp } from '../app/harness.js';
import { csrfOn } from './support.js';

const SECRET = 'device-cookie-test-secret-0123456789abcdef';

describe('TrustedDevices (the cookie)', () => {
  const devices = new TrustedDevices({ secret: SECRET });

  it('a token verifies for the account it was issued for, and for no other; tampering breaks it', () => {
    const token = devices.issue('owner@example.com');
    expect(token).toMatch(/^[\w-]{22}\.[\w-]{43}$/);
    expect(token).not.toContain('owner');
    const id = devices.verify(token, 'owner@example.com');
    expect(id).toBe(token.split('.')[0]);
    expect(devices.verify(token, 'other@example.com')).toBeNull();
    const [nonce, mac] = token.split('.') as [string, string];
    expect(devices.verify(`${nonce}x.${mac}`, 'owner@example.com')).toBeNull();
    expect(devices.verify(`${nonce}.${mac.slice(0, -2)}AA`, 'owner@example.com')).toBeNull();
    for (const junk of [undefined, '', '.', 'x', 42, `${'a'.repeat(200)}.${mac}`]) {
      expect(devices.verify(junk, 'owner@example.com')).toBeNull();
    }
  });

  it('rotation: tokens of the previous secret still verify; new ones use the new secret', () => {
    const old = devices.issue('owner@example.com');
    const rotated = new TrustedDevices({ secret: [`new-${SECRET}`, SECRET] });
    expect(rotated.verify(old, 'owner@example.com')).not.toBeNull();
    expect(devices.verify(rotated.issue('owner@example.com'), 'owner@example.com')).toBeNull();
  });

  it('refuses short secrets and bad lifetimes at start-up', () => {
    expect(() => new TrustedDevices({ secret: 'short' })).toThrow(ConfigError);
    expect(() => new TrustedDevices({ secret: SECRET, maxAge: 0 })).toThrow(ConfigError);
  });
});

describe('over HTTP, with TRUSTED_DEVICE_COOKIES=on', () => {
  let t: RunningApp;
  beforeAll(async () => {
    t = await startApp({
      config: { trustedDeviceCookies: true },
      // The account's own limit made small, so a handful of addresses exhausts it.
      rateLimit: {
        policy: {
          perAccountAddress: { points: 5, duration: 900 },
          perAddress: { points: 100, duration: 3600 },
          perAccount: { points: 3, duration: 3600 },
          perDevice: { points: 5, duration: 900 },
        },
      },
    });
  });
  afterAll(() => t?.close());

  let address = 1;
  const browser = () => t.client({ 'x-forwarded-for': `198.51.100.${address++}` });

  async function ownersBrowser(email: string) {
    await t.createUser(email);
    const owner = browser();
    const res = await loginForm(owner, email);
    expect(res.headers.get('location')).toBe('/dashboard');
    const device = res.headers.getSetCookie().find((c) => c.startsWith('pgsession_device='));
    expect(device).toMatch(/; Max-Age=31536000; Path=\/; HttpOnly; SameSite=Lax$/);
    const out = await owner.post('/logout', { form: { _csrf: await csrfOn(owner, '/dashboard') } });
    expect(out.status).toBe(303);
    return owner;
  }

  async function exhaustAccount(email: string) {
    // Three addresses, one wrong password each: the account's own budget is gone.
    for (let i = 0; i < 3; i++) {
      expect((await loginForm(browser(), email, 'wrong password!')).headers.get('location')).toBe(
        '/login?error=invalid_credentials',
      );
    }
    const stranger = await loginForm(browser(), email);
    expect(stranger.status).toBe(429);
  }

  it('an attack spread over many addresses locks strangers out, not the owner’s own browser', async () => {
    const owner = await ownersBrowser('owner@example.com');
    await exhaustAccount('owner@example.com');
    // The owner, from yet another address, with the device cookie of an earlier login.
    const moved = t.client({ 'x-forwarded-for': '203.0.113.77' });
    moved.jar.set('pgsession_device', owner.jar.get('pgsession_device')!);
    const res = await loginForm(moved, 'owner@example.com');
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/dashboard');
    expect((await moved.get('/api/me')).status).toBe(200);
  });

  it('a device cookie of another account (the attacker’s own) buys nothing', async () => {
    const attacker = await ownersBrowser('attacker@example.com');
    await ownersBrowser('target@example.com');
    await exhaustAccount('target@example.com');
    const res = await loginForm(attacker, 'target@example.com');
    expect(res.status).toBe(429);
  });

  it('the device has a budget of its own: past the account’s 3, its 6th wrong password is refused, the right one too', async () => {
    const owner = await ownersBrowser('guessed@example.com');
    const cookie = owner.jar.get('pgsession_device')!;
    // A new address each time, so neither the pair nor the address limit is what refuses.
    const fromElsewhere = () => {
      const c = browser();
      c.jar.set('pgsession_device', cookie);
      return c;
    };
    for (let i = 0; i < 5; i++) {
      const res = await loginForm(fromElsewhere(), 'guessed@example.com', `wrong ${i}!!`);
      expect(res.headers.get('location'), `attempt ${i + 1}`).toBe('/login?error=invalid_credentials');
    }
    expect((await loginForm(fromElsewhere(), 'guessed@example.com', PASSWORD)).status).toBe(429);
  });
});
