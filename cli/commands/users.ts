/** `pgsession user …`: add, passwd, disable, enable, totp-off, list. */
import type { Role, UserRecord, UserRepository } from '../../src/auth/index.js';
import {
  DuplicateEmailError,
  isPlausibleEmail,
  normalizeEmail,
  PasswordCheckUnavailableError,
  PasswordPolicyError,
  TotpManager,
} from '../../src/auth/index.js';
import type { Context } from '../context.js';
import { CliError, NotFoundError, UsageError } from '../errors.js';
import { formatTime, plural, table } from '../output.js';
import { readNewPassword } from '../password.js';

/** The user with this email, or exit 3. */
export async function findUser(users: UserRepository, email: string): Promise<UserRecord> {
  const user = await users.findByEmail(email);
  if (!user) throw new NotFoundError(`no user with email ${normalizeEmail(email) || JSON.stringify(email)}`);
  const { passwordHash: _hash, ...record } = user;
  return record;
}

/**
 * A password the policy refused when storing it (a breached one, or the breached-password service
 * down with `PWNED_PASSWORDS_ON_ERROR=refuse`): one line, exit 1. Other errors pass unchanged.
 */
function refused(err: unknown): unknown {
  if (err instanceof PasswordPolicyError || err instanceof PasswordCheckUnavailableError) {
    return new CliError(`${err.message}; nothing was changed`, 1, { cause: err });
  }
  return err;
}

export async function userAdd(ctx: Context, email: string, role: Role): Promise<void> {
  const users = await ctx.users();
  const normalized = normalizeEmail(email);
  // Before asking for a password that could not be used anyway.
  if (await users.findByEmail(normalized)) {
    throw new CliError(
      `a user with email ${normalized} already exists (use "user passwd" to set a password)`,
    );
  }
  const password = await readNewPassword(ctx.io, 'Password', (p) =>
    users.passwordPolicy.problem(p, { email: normalized }),
  );
  let user: UserRecord;
  try {
    user = await users.create({ email: normalized, password, role });
  } catch (err) {
    if (err instanceof DuplicateEmailError)
      throw new CliError(`a user with email ${normalized} already exists`);
    throw refused(err);
  }
  ctx.io.stdout.write(`Created user ${user.email} (id ${user.id}, role ${user.role}).\n`);
}

export async function userPasswd(ctx: Context, email: string): Promise<void> {
  const users = await ctx.users();
  const user = await findUser(users, email);
  const store = await ctx.store();
  const password = await readNewPassword(ctx.io, 'New password', (p) =>
    users.passwordPolicy.problem(p, { email: user.email }),
  );
  try {
    await users.setPassword(user.id, password);
  } catch (err) {
    throw refused(err);
  }
  // Whoever knew the old password is logged out everywhere.
  const revoked = await store.destroyByUser(String(user.id));
  ctx.io.stdout.write(`Password changed for ${user.email}; revoked ${plural(revoked, 'session')}.\n`);
}

export async function userDisable(ctx: Context, email: string): Promise<void> {
  const users = await ctx.users();
  const user = await findUser(users, email);
  const store = await ctx.store();
  // Disabled first, so no new login can slip in between.
  await users.disable(user.id);
  const revoked = await store.destroyByUser(String(user.id));
  const already = user.disabled ? ' (it already was)' : '';
  ctx.io.stdout.write(`Disabled ${user.email}${already}; revoked ${plural(revoked, 'session')}.\n`);
}

/**
 * Turn off two-factor authentication for a user who lost both the authenticator and the
 * recovery codes (after the operator has checked who is asking: this is account recovery). Their
 * sessions are revoked too, so whatever was logged in before the reset must log in again, with
 * the password alone until they set TOTP up again.
 */
export async function userTotpOff(ctx: Context, email: string): Promise<void> {
  const users = await ctx.users();
  const user = await findUser(users, email);
  const wasOn = await new TotpManager(ctx.pool).disable(user.id);
  const store = await ctx.store();
  const revoked = await store.destroyByUser(String(user.id));
  const what = wasOn ? 'Two-factor authentication turned off' : 'Two-factor authentication was not on';
  ctx.io.stdout.write(`${what} for ${user.email}; revoked ${plural(revoked, 'session')}.\n`);
}

export async function userEnable(ctx: Context, email: string): Promise<void> {
  const users = await ctx.users();
  const user = await findUser(users, email);
  await users.enable(user.id);
  const already = user.disabled ? '' : ' (it was not disabled)';
  ctx.io.stdout.write(`Enabled ${user.email}${already}.\n`);
}

export async function userList(ctx: Context, options: { json?: boolean }): Promise<void> {
  const users = await ctx.users();
  await ctx.store(); // the session counts read the session table
  const list = await users.list();
  if (options.json) {
    const rows = list.map((u) => ({
      id: u.id,
      email: u.email,
      role: u.role,
      disabled: u.disabled,
      sessions: u.sessions,
      createdAt: u.createdAt.toISOString(),
    }));
    ctx.io.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
    return;
  }
  if (list.length === 0) {
    ctx.io.stdout.write('No users.\n');
    return;
  }
  ctx.io.stdout.write(
    table(
      ['ID', 'EMAIL', 'ROLE', 'STATUS', 'SESSIONS', 'CREATED'],
      list.map((u) => [
        String(u.id),
        u.email,
        u.role,
        u.disabled ? 'disabled' : 'active',
        String(u.sessions),
        formatTime(u.createdAt),
      ]),
    ),
  );
}

/** The email of `user add`, normalised; a usage error (exit 2) when it is not an address. */
export function checkNewEmail(value: string): string {
  const email = normalizeEmail(value);
  if (!isPlausibleEmail(email)) throw new UsageError(`"${value}" is not an email address`);
  return email;
}
