import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DuplicateEmailError,
  normalizeEmail,
  PasswordHasher,
  PasswordPolicyError,
  runAuthMigrations,
  UserRepository,
} from '../../src/auth/index.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';

let db: TestDatabase;
let users: UserRepository;

beforeAll(async () => {
  db = await createTestDatabase();
  await runAuthMigrations(db.pool);
  users = new UserRepository(db.pool, {
    hasher: new PasswordHasher({ memoryCost: 4096 }),
    sessionTable: null,
  });
});
afterAll(() => db?.drop());

describe('users table migration', () => {
  it('creates users (identity id, unique lower(email), role check, disabled, timestamps) and is idempotent', async () => {
    expect(await runAuthMigrations(db.pool)).toEqual([]);
    const { rows } = await db.pool.query<{ column_name: string }>(
      "SELECT column_name FROM information_schema.columns WHERE table_name = 'users' ORDER BY ordinal_position",
    );
    expect(rows.map((r) => r.column_name)).toEqual([
      'id',
      'email',
      'password_hash',
      'role',
      'disabled',
      'created_at',
      'updated_at',
    ]);
    await expect(
      db.pool.query("INSERT INTO users (email, password_hash, role) VALUES ('x@y.z', 'h', 'root')"),
    ).rejects.toThrow(/users_role_check/);
    const idx = await db.pool.query(
      "SELECT indexdef FROM pg_indexes WHERE indexname = 'users_email_lower_key'",
    );
    expect(idx.rows[0].indexdef).toMatch(/UNIQUE INDEX .* \(lower\(email\)\)/);
  });

  it("upgrades a seed-style users table in place (the seed's bcrypt hashes keep working)", async () => {
    const seed = await createTestDatabase();
    try {
      await seed.pool.query(
        'CREATE TABLE users (id serial PRIMARY KEY, email varchar(255) UNIQUE NOT NULL, password_hash varchar(255) NOT NULL)',
      );
      await seed.pool.query(
        "INSERT INTO users (email, password_hash) VALUES ('Seed.User@Example.com', '$2b$10$abc')",
      );
      await runAuthMigrations(seed.pool);
      const repo = new UserRepository(seed.pool, { sessionTable: null });
      const found = await repo.findByEmail('seed.user@example.com');
      expect(found).toMatchObject({ id: 1, role: 'user', disabled: false, passwordHash: '$2b$10$abc' });
    } finally {
      await seed.drop();
    }
  });
});

describe('UserRepository', () => {
  it('normalises emails (trim + lowercase) and finds them case-insensitively', async () => {
    expect(normalizeEmail('  Alice@Example.COM ')).toBe('alice@example.com');
    const created = await users.create({ email: ' Alice@Example.COM ', password: 'her-own-password' });
    expect(created).toMatchObject({ email: 'alice@example.com', role: 'user', disabled: false });
    expect(typeof created.id).toBe('number');
    const found = await users.findByEmail('ALICE@example.com');
    expect(found?.id).toBe(created.id);
    expect(found?.passwordHash).toMatch(/^\$argon2id\$/);
    expect(await users.findByEmail('nobody@example.com')).toBeNull();
    expect(await users.findByEmail('')).toBeNull();
    expect((await users.findById(created.id))?.email).toBe('alice@example.com');
    expect(await users.findById(-1)).toBeNull();
  });

  it('refuses a duplicate email whatever its case, a bad email, a short password, a bad role', async () => {
    await users.create({ email: 'bob@example.com', password: 'bob-password' });
    await expect(users.create({ email: 'BOB@example.com', password: 'bob-password' })).rejects.toBeInstanceOf(
      DuplicateEmailError,
    );
    await expect(users.create({ email: 'not-an-email', password: 'long-enough' })).rejects.toThrow(
      /Invalid email/,
    );
    await expect(users.create({ email: 'c@example.com', password: 'short' })).rejects.toBeInstanceOf(
      PasswordPolicyError,
    );
    await expect(
      users.create({ email: 'd@example.com', password: 'long-enough', role: 'root' as 'admin' }),
    ).rejects.toThrow(/Role/);
  });

  it('setPassword, setRole, disable/enable, count', async () => {
    const u = await users.create({ email: 'carol@example.com', password: 'first-password' });
    const before = (await users.findByEmail('carol@example.com'))!.passwordHash;
    expect(await users.setPassword(u.id, 'second-password')).toBe(true);
    const after = (await users.findByEmail('carol@example.com'))!.passwordHash;
    expect(after).not.toBe(before);
    expect((await users.hasher.verify(after, 'second-password')).ok).toBe(true);
    // A conditional hash swap does nothing if the hash changed meanwhile.
    expect(await users.setPasswordHash(u.id, 'x', before)).toBe(false);
    expect(await users.setRole(u.id, 'admin')).toBe(true);
    expect(await users.disable(u.id)).toBe(true);
    expect(await users.findById(u.id)).toMatchObject({ role: 'admin', disabled: true });
    expect(await users.enable(u.id)).toBe(true);
    expect(await users.count()).toBeGreaterThanOrEqual(3);
  });

  it('list() counts live sessions per user from the session table', async () => {
    const withSessions = new UserRepository(db.pool, { sessionTable: 'session' });
    await db.pool.query(
      'CREATE TABLE IF NOT EXISTS session (sid varchar PRIMARY KEY, sess json NOT NULL, expire timestamp(6) NOT NULL, user_id text)',
    );
    const u = await users.create({ email: 'dave@example.com', password: 'his-own-password' });
    await db.pool.query(
      `INSERT INTO session (sid, sess, expire, user_id) VALUES
        ('a', '{}', now() + interval '1 day', $1), ('b', '{}', now() + interval '1 day', $1),
        ('c', '{}', now() - interval '1 day', $1)`,
      [String(u.id)],
    );
    const list = await withSessions.list();
    expect(list.find((x) => x.id === u.id)?.sessions).toBe(2);
    expect(list.find((x) => x.email === 'alice@example.com')?.sessions).toBe(0);
    expect(list.map((x) => x.id)).toEqual([...list.map((x) => x.id)].sort((a, b) => a - b));
    expect(JSON.stringify(list)).not.toContain('argon2');
  });
});

it('pg returns bigint ids as strings; the repository hands out numbers', () => {
  expect(pg.types.getTypeParser(20)('12')).toBe('12');
});
