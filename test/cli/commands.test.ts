/**
 * Every command against a fresh database, run as a child process the way an operator runs it,
 * with the demo app (in-process, same database) providing real logged-in browsers whose cookies
 * must stop working when the CLI revokes their sessions.
 */
import { Secret, TOTP } from 'otpauth';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { migrateApp } from '../../app/migrate.js';
import { TotpManager } from '../../src/auth/index.js';
import { hashId } from '../../src/core/id.js';
import { loginForm, PASSWORD, type RunningApp, startApp } from '../app/harness.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import type { Client } from '../helpers/http.js';
import { type RunCliOptions, runCli, runCliOnTty } from './run-cli.js';

// Each CLI run is a process start (and argon2 for passwords): seconds on a loaded machine.
vi.setConfig({ testTimeout: 90_000, hookTimeout: 90_000 });

const FIREFOX = 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0';
const CHROME_MAC =
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36';

let db: TestDatabase;
const cli = (args: string[], options: RunCliOptions = {}) =>
  runCli(args, { ...options, env: { DATABASE_URL: db.url, ...options.env } });

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db?.drop();
});

async function userRow(email: string) {
  const { rows } = await db.pool.query<{
    id: string;
    role: string;
    disabled: boolean;
    password_hash: string;
  }>('SELECT id, role, disabled, password_hash FROM users WHERE lower(email) = $1', [email]);
  return rows[0];
}

describe('migrate', () => {
  it('before it, commands say what to run (exit 1)', async () => {
    const { code, stderr } = await cli(['user', 'list']);
    expect(code).toBe(1);
    expect(stderr).toMatch(
      /^pgsession: error: the users table \(users\) does not exist in .*: run "pgsession migrate" first\n$/,
    );
  });

  it('creates the session table and applies the auth migrations, saying what it did; a second run has nothing to do', async () => {
    const first = await cli(['migrate']);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toBe(
      [
        'session table session: created',
        'applied auth/001_users',
        'applied auth/002_login_rate_limits',
        'applied auth/003_security_notices',
        'applied auth/004_totp',
        'applied auth/005_second_factor_notice',
        'Done: 6 changes.',
        '',
      ].join('\n'),
    );
    const { rows } = await db.pool.query<{ t: string | null }>(
      "SELECT to_regclass('session')::text AS t UNION ALL SELECT to_regclass('users')::text UNION ALL SELECT to_regclass('auth_rate_limits')::text",
    );
    expect(rows.map((r) => r.t)).toEqual(['session', 'users', 'auth_rate_limits']);

    const second = await cli(['migrate']);
    expect(second.code).toBe(0);
    expect(second.stdout).toBe('Nothing to apply: the database is up to date.\n');
  });

  it('--finish moves the sessions connect-pg-simple stored under raw ids under the hash of their id', async () => {
    await db.pool.query(
      `INSERT INTO session (sid, sess, expire) SELECT 'raw-' || g, '{"cookie":{}}', now()::timestamp + interval '1 hour'
         FROM generate_series(1, 3) g`,
    );
    const told = await cli(['migrate']);
    expect(told.code).toBe(0);
    expect(told.stdout).toBe(
      'Nothing to apply: the database is up to date.\n' +
        '3 sessions still stored under their raw id, where connect-pg-simple reads them (a rollback keeps those users logged in). ' +
        'Once you will not switch back: pgsession migrate --finish\n',
    );
    const finished = await cli(['migrate', '--finish', '--batch-size', '2']);
    expect(finished.code).toBe(0);
    expect(finished.stdout).toBe(
      'Moved 3 sessions under the hash of their id: pgsession finds them as before; connect-pg-simple no longer would.\n',
    );
    expect(finished.stderr).toMatch(/Moving sessions under the hash of their id: 2\/3\n.*3\/3/s);
    const { rows } = await db.pool.query<{ sid: string; id_hashed: boolean }>(
      'SELECT sid, id_hashed FROM session WHERE sess::text = \'{"cookie":{}}\'',
    );
    const bySid = (a: { sid: string }, b: { sid: string }) => (a.sid < b.sid ? -1 : 1);
    expect(rows.sort(bySid)).toEqual(
      ['raw-1', 'raw-2', 'raw-3'].map((id) => ({ sid: hashId(id), id_hashed: true })).sort(bySid),
    );
    const again = await cli(['migrate', '--finish']);
    expect(again.stdout).toBe('Every session is stored under the hash of its id: nothing to finish.\n');
    await db.pool.query('TRUNCATE session');
  });

  it('on connect-pg-simple’s table it says the switch is reversible until --finish, which ends that', async () => {
    // The table exactly as connect-pg-simple's table.sql makes it, with one user's session.
    await db.pool.query(`CREATE TABLE cps_session (sid varchar NOT NULL COLLATE "default" PRIMARY KEY,
      sess json NOT NULL, expire timestamp(6) NOT NULL)`);
    await db.pool.query(
      `INSERT INTO cps_session (sid, sess, expire) VALUES ('raw-a', '{"cookie":{}}', now()::timestamp + interval '1 hour')`,
    );
    const upgraded = await cli(['migrate', '--table', 'cps_session']);
    expect(upgraded.code).toBe(0);
    expect(upgraded.stdout).toContain(
      'The switch from connect-pg-simple is not finished: new sessions are stored there too, so a rollback logs nobody out. ' +
        'Once you will not switch back: pgsession migrate --finish\n',
    );
    const finished = await cli(['migrate', '--finish', '--table', 'cps_session']);
    expect(finished.code).toBe(0);
    expect(finished.stdout).toContain('Moved 1 session under the hash of its id');
    const after = await cli(['migrate', '--table', 'cps_session']);
    expect(after.stdout).toBe('Nothing to apply: the database is up to date.\n');
    // Once finished, with nothing raw left, a second --finish has nothing to do.
    expect((await cli(['migrate', '--finish', '--table', 'cps_session'])).stdout).toBe(
      'Every session is stored under the hash of its id: nothing to finish.\n',
    );
    await db.pool.query('DROP TABLE cps_session');
  });
});

describe('user add', () => {
  it('reads one line of standard input as the password (exactly as typed), hashes it with argon2id, role user', async () => {
    const { code, stdout, stderr } = await cli(['user', 'add', 'Alice@Example.com'], {
      input: ` ${PASSWORD} \r\nignored second line\n`,
    });
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toMatch(/^Created user alice@example\.com \(id \d+, role user\)\.\n$/);
    const row = await userRow('alice@example.com');
    expect(row).toMatchObject({ role: 'user', disabled: false });
    expect(row!.password_hash).toMatch(/^\$argon2id\$/);
  });

  it('--role admin', async () => {
    const { code, stdout } = await cli(['user', 'add', 'root@example.com', '--role', 'admin'], {
      input: `${PASSWORD}\n`,
    });
    expect(code).toBe(0);
    expect(stdout).toMatch(/role admin/);
    expect((await userRow('root@example.com'))?.role).toBe('admin');
  });

  it('refuses a short password with the policy in words (exit 1) and creates nothing', async () => {
    const { code, stdout, stderr } = await cli(['user', 'add', 'short@example.com'], { input: 'seven77\n' });
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toBe('pgsession: error: Password must be at least 8 characters; nothing was changed\n');
    expect(await userRow('short@example.com')).toBeUndefined();
  });

  it('refuses an email that exists, whatever its case (exit 1), and an empty standard input', async () => {
    const taken = await cli(['user', 'add', 'ALICE@example.com'], { input: `${PASSWORD}\n` });
    expect(taken.code).toBe(1);
    expect(taken.stderr).toMatch(/a user with email alice@example\.com already exists/);
    const empty = await cli(['user', 'add', 'empty@example.com'], { input: '' });
    expect(empty.code).toBe(1);
    expect(empty.stderr).toMatch(/no password on standard input/);
  });

  it('on a terminal: asks twice without echoing what is typed', async () => {
    const secret = 'typed on a tty 123';
    const { code, screen } = await runCliOnTty(
      ['user', 'add', 'tty@example.com'],
      [
        { prompt: 'Password: ', type: `${secret}x\u007f\r` }, // a typo, erased with backspace
        { prompt: 'Repeat the password: ', type: `${secret}\r` },
      ],
      { env: { DATABASE_URL: db.url } },
    );
    expect(screen).not.toContain('typed on');
    expect(screen).toMatch(/Created user tty@example\.com/);
    expect(code).toBe(0);
    expect(await userRow('tty@example.com')).toBeDefined();
  });

  it('on a terminal: two different answers change nothing (exit 1)', async () => {
    const { code, screen } = await runCliOnTty(
      ['user', 'add', 'typo@example.com'],
      [
        { prompt: 'Password: ', type: 'first password\r' },
        { prompt: 'Repeat the password: ', type: 'second password\r' },
      ],
      { env: { DATABASE_URL: db.url } },
    );
    expect(code).toBe(1);
    expect(screen).toMatch(/the two passwords do not match; nothing was changed/);
    expect(screen).not.toContain('password\r');
    expect(await userRow('typo@example.com')).toBeUndefined();
  });
});

describe('with browsers logged in to the demo app', () => {
  let t: RunningApp;
  beforeAll(async () => {
    await migrateApp(db.pool); // the app's own table (servers); session and users are done
    t = await startApp({ db });
  });
  afterAll(async () => {
    await t?.close();
  });

  let address = 10;
  async function logIn(email: string, password = PASSWORD, ua = FIREFOX): Promise<Client> {
    const c = t.client({ 'user-agent': ua, 'x-forwarded-for': `203.0.113.${address++}` });
    const res = await loginForm(c, email, password);
    expect(res.status, `login of ${email}`).toBe(303);
    expect(res.headers.get('location')).toBe('/dashboard');
    expect(await status(c)).toBe(200);
    return c;
  }
  const status = async (c: Client) => (await c.get('/api/me')).status;
  /** The storage key of a client's session: SHA-256 of the id inside the signed cookie. */
  const keyOf = (c: Client) => {
    const value = decodeURIComponent(c.jar.get('sessionId') ?? '');
    return hashId(value.slice(2, value.lastIndexOf('.')));
  };

  it('sessions list: hashed id, user, created, last active, expires, address, browser; --user; --json', async () => {
    const alice = await logIn('alice@example.com', ` ${PASSWORD} `);
    const root = await logIn('root@example.com', PASSWORD, CHROME_MAC);

    const all = await cli(['sessions', 'list']);
    expect(all.code).toBe(0);
    const lines = all.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ID +USER +CREATED +LAST ACTIVE +EXPIRES +ADDRESS +BROWSER$/);
    const date = '\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d';
    const aliceLine = lines.find((l) => l.startsWith(keyOf(alice).slice(0, 12)));
    expect(aliceLine).toMatch(
      new RegExp(
        `^\\S{12} +alice@example\\.com +${date} +${date} +${date} +203\\.0\\.113\\.\\d+ +Firefox 128 on Linux$`,
      ),
    );
    expect(lines.find((l) => l.startsWith(keyOf(root).slice(0, 12)))).toMatch(
      /root@example\.com .*Chrome 120 on macOS/,
    );
    expect(lines.at(-1)).toBe('2 active sessions.');
    // Never the cookie's id, only its hash.
    expect(all.stdout).not.toContain(decodeURIComponent(alice.jar.get('sessionId')!).slice(2, 14));

    const mine = await cli(['sessions', 'list', '--user', 'ALICE@example.com']);
    expect(mine.code).toBe(0);
    expect(mine.stdout).toContain('alice@example.com');
    expect(mine.stdout).not.toContain('root@example.com');
    expect(mine.stdout.trimEnd().split('\n').at(-1)).toBe('1 active session of alice@example.com.');

    const json = await cli(['sessions', 'list', '--user', 'root@example.com', '--json']);
    expect(JSON.parse(json.stdout)).toEqual([
      expect.objectContaining({
        id: keyOf(root),
        email: 'root@example.com',
        browser: 'Chrome 120 on macOS Catalina',
        userAgent: CHROME_MAC,
        ip: expect.stringMatching(/^203\.0\.113\./),
      }),
    ]);

    const nobody = await cli(['sessions', 'list', '--user', 'nobody@example.com']);
    expect(nobody.code).toBe(3);
    expect(nobody.stderr).toBe('pgsession: error: no user with email nobody@example.com\n');

    // Leave no sessions behind for the next tests.
    await cli(['sessions', 'revoke', '--user', 'alice@example.com']);
    await cli(['sessions', 'revoke', '--user', 'root@example.com']);
  });

  it('sessions revoke <id as shown> logs that browser out and no other', async () => {
    const phone = await logIn('alice@example.com', ` ${PASSWORD} `);
    const laptop = await logIn('alice@example.com', ` ${PASSWORD} `);
    const shown = `${keyOf(phone).slice(0, 12)}…`; // as the sessions page shows it
    const { code, stdout } = await cli(['sessions', 'revoke', shown]);
    expect(code).toBe(0);
    expect(stdout).toBe(`Revoked session ${keyOf(phone).slice(0, 12)} of alice@example.com.\n`);
    expect(await status(phone)).toBe(401);
    expect(await status(laptop)).toBe(200);

    const again = await cli(['sessions', 'revoke', keyOf(phone)]);
    expect(again.code).toBe(3);
    expect(again.stderr).toBe(`pgsession: error: no active session with id ${keyOf(phone)}\n`);
    await cli(['sessions', 'revoke', keyOf(laptop)]);
    expect(await status(laptop)).toBe(401);
  });

  it('sessions revoke --user logs out every browser of that user at once', async () => {
    const a = await logIn('alice@example.com', ` ${PASSWORD} `);
    const b = await logIn('alice@example.com', ` ${PASSWORD} `, CHROME_MAC);
    const other = await logIn('root@example.com');
    const { code, stdout } = await cli(['sessions', 'revoke', '--user', 'alice@example.com']);
    expect(code).toBe(0);
    expect(stdout).toBe('Revoked 2 sessions of alice@example.com.\n');
    expect(await status(a)).toBe(401);
    expect(await status(b)).toBe(401);
    expect(await status(other)).toBe(200);
    const unknown = await cli(['sessions', 'revoke', '--user', 'nobody@example.com']);
    expect(unknown.code).toBe(3);
  });

  it('user disable ends every session of the user and blocks logins; user enable lets them back', async () => {
    const user = await t.createUser('dora@example.com');
    const a = await logIn('dora@example.com');
    const b = await logIn('dora@example.com', PASSWORD, CHROME_MAC);
    const disabled = await cli(['user', 'disable', 'dora@example.com']);
    expect(disabled.code).toBe(0);
    expect(disabled.stdout).toBe('Disabled dora@example.com; revoked 2 sessions.\n');
    expect(await status(a)).toBe(401);
    expect(await status(b)).toBe(401);
    expect((await userRow('dora@example.com'))?.disabled).toBe(true);
    const refused = await loginForm(t.client(), 'dora@example.com', PASSWORD);
    expect(refused.headers.get('location')).toBe('/login?error=invalid_credentials');

    const list = await cli(['user', 'list']);
    expect(list.stdout).toMatch(new RegExp(`^${user.id} +dora@example\\.com +user +disabled +0 `, 'm'));

    const enabled = await cli(['user', 'enable', 'dora@example.com']);
    expect(enabled.code).toBe(0);
    expect(enabled.stdout).toBe('Enabled dora@example.com.\n');
    await logIn('dora@example.com');
  });

  it('user passwd sets the new password and logs the user out everywhere', async () => {
    await t.createUser('paul@example.com');
    const before = await logIn('paul@example.com');
    const { code, stdout, stderr } = await cli(['user', 'passwd', 'paul@example.com'], {
      input: 'a brand new passphrase\n',
    });
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toBe('Password changed for paul@example.com; revoked 1 session.\n');
    expect(await status(before)).toBe(401);
    const old = await loginForm(t.client(), 'paul@example.com', PASSWORD);
    expect(old.headers.get('location')).toBe('/login?error=invalid_credentials');
    await logIn('paul@example.com', 'a brand new passphrase');

    const short = await cli(['user', 'passwd', 'paul@example.com'], { input: 'short\n' });
    expect(short.code).toBe(1);
    expect(short.stderr).toMatch(/Password must be at least 8 characters; nothing was changed/);
    await logIn('paul@example.com', 'a brand new passphrase');
  });

  it('user totp-off turns two-factor off for a user who lost the authenticator, and logs them out everywhere', async () => {
    const user = await t.createUser('tina@example.com');
    const before = await logIn('tina@example.com');
    // Enrolled through the library, as the /account/mfa pages do.
    const totp = new TotpManager(db.pool);
    const { secret } = await totp.startEnrollment(user.id, user.email);
    const confirmed = await totp.confirmEnrollment(
      user.id,
      TOTP.generate({ secret: Secret.fromBase32(secret) }),
    );
    expect(confirmed.ok).toBe(true);
    expect(await totp.isEnabled(user.id)).toBe(true);
    // With TOTP on, the password alone does not log in.
    const pending = await loginForm(t.client(), 'tina@example.com', PASSWORD);
    expect(pending.headers.get('location')).toBe('/login/totp');

    const off = await cli(['user', 'totp-off', 'tina@example.com']);
    expect(off.stderr).toBe('');
    expect(off.code).toBe(0);
    expect(off.stdout).toBe(
      'Two-factor authentication turned off for tina@example.com; revoked 1 session.\n',
    );
    expect(await totp.isEnabled(user.id)).toBe(false);
    const { rows } = await db.pool.query('SELECT 1 FROM auth_totp_recovery_codes WHERE user_id = $1', [
      user.id,
    ]);
    expect(rows).toEqual([]);
    expect(await status(before)).toBe(401);
    await logIn('tina@example.com'); // the password alone again

    const again = await cli(['user', 'totp-off', 'tina@example.com']);
    expect(again.code).toBe(0);
    expect(again.stdout).toBe(
      'Two-factor authentication was not on for tina@example.com; revoked 1 session.\n',
    );
    const ghost = await cli(['user', 'totp-off', 'ghost@example.com']);
    expect(ghost.code).toBe(3);
    expect(ghost.stderr).toBe('pgsession: error: no user with email ghost@example.com\n');
  });

  it('notices prune deletes security notices older than --older-than and devices forgotten anyway; recent ones stay', async () => {
    const user = await t.createUser('nora@example.com');
    await db.pool.query(
      `INSERT INTO auth_security_notices (user_id, kind, created_at, details) VALUES
         ($1, 'new-sign-in', now() - interval '400 days', '{}'),
         ($1, 'password-changed', now() - interval '40 days', '{}'),
         ($1, 'locked', now() - interval '1 day', '{}')`,
      [user.id],
    );
    await db.pool.query(
      `INSERT INTO auth_known_devices (user_id, device, first_seen_at, last_seen_at) VALUES
         ($1, 'old-device', now() - interval '300 days', now() - interval '200 days'),
         ($1, 'recent-device', now() - interval '300 days', now() - interval '2 days')`,
      [user.id],
    );
    const kinds = async () =>
      (
        await db.pool.query<{ kind: string }>(
          'SELECT kind FROM auth_security_notices WHERE user_id = $1 ORDER BY created_at',
          [user.id],
        )
      ).rows.map((r) => r.kind);

    const first = await cli(['notices', 'prune']);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(
      /^Deleted \d+ security notices? older than 365d and \d+ forgotten devices?\.\n$/,
    );
    expect(await kinds()).toEqual(['password-changed', 'locked']);
    const { rows } = await db.pool.query<{ device: string }>(
      'SELECT device FROM auth_known_devices WHERE user_id = $1',
      [user.id],
    );
    expect(rows.map((r) => r.device)).toEqual(['recent-device']);

    const tighter = await cli(['notices', 'prune', '--older-than', '30d']);
    expect(tighter.code).toBe(0);
    expect(await kinds()).toEqual(['locked']);
    const bad = await cli(['notices', 'prune', '--older-than', 'soon']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--older-than must be a duration such as 90d, 12h or 30m.');
    expect(await kinds()).toEqual(['locked']);
  });

  it('sessions revoke takes an id that starts with "-" (base64url) as the id, not as an option', async () => {
    const { code, stderr } = await cli(['sessions', 'revoke', '-q3V9xk2LbA0f']);
    expect(stderr).toBe('pgsession: error: no active session with id -q3V9xk2LbA0f\n');
    expect(code).toBe(3);
  });

  it('unknown users exit with 3 (passwd, disable, enable)', async () => {
    const results = await Promise.all([
      cli(['user', 'passwd', 'ghost@example.com'], { input: `${PASSWORD}\n` }),
      cli(['user', 'disable', 'ghost@example.com']),
      cli(['user', 'enable', 'ghost@example.com']),
    ]);
    for (const r of results) {
      expect(r.code).toBe(3);
      expect(r.stderr).toBe('pgsession: error: no user with email ghost@example.com\n');
    }
  });

  it('prune deletes expired sessions in batches, with progress lines and a final count; live ones stay', async () => {
    const live = await logIn('root@example.com');
    await db.pool.query(
      `INSERT INTO session (sid, sess, expire, user_id, id_hashed)
       SELECT 'expired-' || g, '{"cookie":{}}', now() - interval '1 hour', NULL, true FROM generate_series(1, 35) g`,
    );
    const { code, stdout, stderr } = await cli(['prune', '--batch-size', '10']);
    expect(code).toBe(0);
    // Not a terminal: one line per batch (stderr), the result on stdout.
    expect(stderr).toBe([10, 20, 30, 35].map((n) => `Deleting expired sessions: ${n}/35\n`).join(''));
    expect(stdout).toBe('Deleted 35 expired sessions.\n');
    const { rows } = await db.pool.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM session WHERE sid LIKE 'expired-%'",
    );
    expect(rows[0]!.n).toBe(0);
    expect(await status(live)).toBe(200);

    const nothing = await cli(['prune']);
    expect(nothing.code).toBe(0);
    expect(nothing.stdout).toBe('No expired sessions to delete.\n');
  });

  it('prune on a terminal draws a progress bar', async () => {
    await db.pool.query(
      `INSERT INTO session (sid, sess, expire, id_hashed)
       SELECT 'old-' || g, '{"cookie":{}}', now() - interval '1 day', true FROM generate_series(1, 30) g`,
    );
    const { code, screen } = await runCliOnTty(['prune', '--batch-size', '10'], [], {
      env: { DATABASE_URL: db.url },
    });
    expect(code).toBe(0);
    // Redrawn in place: carriage return and "erase line" before each state.
    expect(screen).toContain('\r\u001b[2KDeleting expired sessions ');
    expect(screen).toMatch(/Deleting expired sessions [█░]+ +33% 10\/30/);
    expect(screen).toMatch(/Deleting expired sessions █+ 100% 30\/30\r?\n/);
    expect(screen).toMatch(/Deleted 30 expired sessions\./);
  });
});
