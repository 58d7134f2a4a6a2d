/**
 * The remaining rows of docs/security.md that are about policy, pages and defaults rather than
 * attacks (ASVS 7.1.1, 7.1.2, 7.4.4, 7.5.2, 6.2.6, 6.2.7, 6.3.2), and the table itself: every
 * test it names exists.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../app/config.js';
import { seedDemoData } from '../../app/migrate.js';
import { UserRepository } from '../../src/auth/index.js';
import { isCommonPassword } from '../../src/auth/passwords.js';
import { csrfFrom, loginForm, migratedDatabase, type RunningApp, startApp } from '../app/harness.js';
import { NO_LIMITS, root } from './support.js';

let t: RunningApp;

beforeAll(async () => {
  t = await startApp({ rateLimit: NO_LIMITS });
  await t.createUser('pages@example.com', 'admin');
});
afterAll(() => t?.close());

describe('documented session policy (ASVS 7.1.1, 7.1.2)', () => {
  it('the defaults are the documented ones: 7 days idle (sliding), 30 days absolute', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pgsession-sec-'));
    try {
      const c = loadConfig({ SESSION_SECRET: 'x'.repeat(40) }, { dataDir: dir });
      expect(c.idleTimeout).toBe(7 * 86_400_000);
      expect(c.absoluteTimeout).toBe(30 * 86_400_000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const doc = readFileSync(path.join(root, 'docs/security.md'), 'utf8');
    expect(doc).toMatch(/SESSION_IDLE_TIMEOUT[^\n]*7d/);
    expect(doc).toMatch(/SESSION_ABSOLUTE_TIMEOUT[^\n]*30d/);
  });

  it('concurrent sessions: any number per account, each listed and revocable, counted for the admin', async () => {
    const clients = [];
    for (let i = 0; i < 5; i++) {
      const c = t.client({ 'user-agent': `Browser-${i}/1.0` });
      expect((await loginForm(c, 'pages@example.com')).status).toBe(303);
      clients.push(c);
    }
    for (const c of clients) expect((await c.get('/api/me')).status).toBe(200);
    const html = await (await clients[0]!.get('/account/sessions')).text();
    expect(html.match(/action="\/account\/sessions\/[^"]+\/revoke"/g)!.length).toBeGreaterThanOrEqual(5);
    const admin = await (await clients[0]!.get('/admin')).text();
    expect(admin).toMatch(
      /pages@example\.com<\/td><td[^>]*>admin<\/td>\s*<td[^>]*>active<\/td><td[^>]*>\d+<\/td>/,
    );
  });
});

describe('pages (ASVS 7.4.4, 6.2.6, 6.2.7)', () => {
  it('every authenticated page shows a logout button (a POST form with the CSRF token)', async () => {
    const c = t.client();
    await loginForm(c, 'pages@example.com');
    for (const p of ['/', '/dashboard', '/account', '/account/sessions', '/admin']) {
      const html = await (await c.get(p)).text();
      const form = /<form method="post" action="\/logout">([\s\S]*?)<\/form>/.exec(html);
      expect(form, p).not.toBeNull();
      expect(csrfFrom(form![1]!), p).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(form![1], p).toMatch(/Log out/);
    }
  });

  it('password fields are masked and let password managers and paste work', async () => {
    const login = await (await t.client().get('/login')).text();
    expect(login).toMatch(/name="password" type="password" autocomplete="current-password"/);
    const c = t.client();
    await loginForm(c, 'pages@example.com');
    const account = await (await c.get('/account')).text();
    for (const html of [login, account]) {
      const fields = html.match(/<input[^>]*name="(password|currentPassword|newPassword)"[^>]*>/g) ?? [];
      expect(fields.length).toBeGreaterThan(0);
      for (const f of fields) {
        expect(f).toMatch(/type="password"/);
        expect(f).toMatch(/autocomplete="(current|new)-password"/);
        expect(f).not.toMatch(/onpaste|oncopy|ondrop|readonly/i);
      }
      expect(html).not.toMatch(/autocomplete="off"/);
    }
  });
});

describe('no password expiry (ASVS 6.2.10)', () => {
  it('a years-old password still logs in: passwords never expire by age (ASVS 6.2.10)', async () => {
    const u = await t.createUser('old-timer@example.com');
    await t.db.pool.query(
      "UPDATE users SET created_at = now() - interval '5 years', updated_at = now() - interval '5 years' WHERE id = $1",
      [u.id],
    );
    const res = await loginForm(t.client(), 'old-timer@example.com');
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/dashboard');
  });
});

describe('no default accounts (ASVS 6.3.2)', () => {
  it('the demo accounts seeded on first start get random, uncommon passwords shown once; nothing is seeded into a populated database', async () => {
    const db = await migratedDatabase();
    try {
      const repo = new UserRepository(db.pool, { hasher: t.app.auth.hasher });
      const seeded = await seedDemoData(db.pool, repo);
      expect(seeded.map((s) => s.email).sort()).toEqual(['admin@example.com', 'demo@example.com']);
      for (const s of seeded) {
        expect(s.password.length).toBeGreaterThanOrEqual(16);
        expect(isCommonPassword(s.password)).toBe(false);
      }
      expect(seeded[0]!.password).not.toBe(seeded[1]!.password);
      const { rows } = await db.pool.query<{ password_hash: string }>('SELECT password_hash FROM users');
      for (const r of rows) expect(r.password_hash).toMatch(/^\$argon2id\$/);
      expect(await seedDemoData(db.pool, repo)).toEqual([]);
    } finally {
      await db.drop();
    }
  });
});

describe('docs/security.md', () => {
  it('every test it names exists, in the file it names', () => {
    const doc = readFileSync(path.join(root, 'docs/security.md'), 'utf8');
    const refs = [...doc.matchAll(/`(test\/[\w/.-]+\.test\.ts)` › “([^”]+)”/g)];
    expect(refs.length).toBeGreaterThan(40);
    const missing: string[] = [];
    for (const [, file, name] of refs) {
      const full = path.join(root, file!);
      if (!existsSync(full)) {
        missing.push(`${file} (no such file)`);
        continue;
      }
      // Test names are written in the source exactly as cited (quotes and all).
      if (!readFileSync(full, 'utf8').includes(name!)) missing.push(`${file} › ${name}`);
    }
    expect(missing).toEqual([]);
  });

  it('every ASVS 5.0 V7 requirement has a row', () => {
    const doc = readFileSync(path.join(root, 'docs/security.md'), 'utf8');
    const v7 = [
      '7.1.1',
      '7.1.2',
      '7.1.3',
      '7.2.1',
      '7.2.2',
      '7.2.3',
      '7.2.4',
      '7.3.1',
      '7.3.2',
      '7.4.1',
      '7.4.2',
      '7.4.3',
      '7.4.4',
      '7.4.5',
      '7.5.1',
      '7.5.2',
      '7.5.3',
      '7.6.1',
      '7.6.2',
    ];
    for (const id of v7)
      expect(doc, id).toMatch(new RegExp(`^\\| \\*\\*${id.replaceAll('.', '\\.')}\\*\\* \\|`, 'm'));
  });
});
