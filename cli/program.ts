/**
 * The `pgsession` command line (commander): operator commands for users, sessions, pruning and
 * migrations. `run()` parses, runs one command and returns the exit status; `main.ts` exits.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import type { Role } from '../src/auth/index.js';
import { parseDuration } from '../src/core/duration.js';
import type { Context, GlobalOptions } from './context.js';
import { CliError, EXIT, messageOf } from './errors.js';
import type { Io } from './output.js';

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
      version?: string;
    };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

function positiveInteger(what: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n <= 0) {
      throw new InvalidArgumentError(`${what} must be a positive integer.`);
    }
    return n;
  };
}

/** A duration option (`30d`, `12h`, `90m`), checked like the library's own. */
function durationOption(what: string) {
  return (value: string): string => {
    try {
      if (parseDuration(value, what) <= 0) throw new Error('zero');
    } catch {
      throw new InvalidArgumentError(`${what} must be a duration such as 90d, 12h or 30m.`);
    }
    return value;
  };
}

/** After a usage error: where the usage is (commander's own hint read like an `add` subcommand). */
const USAGE_HINT = "Run 'pgsession --help' for the commands, or 'pgsession <command> --help' for one.";

/**
 * docs/cli.md ships in the package (package.json `files`), beside dist/ as it is beside cli/
 * here: the path works from the sources, the build and an installed copy.
 */
const CLI_DOCS = fileURLToPath(new URL('../docs/cli.md', import.meta.url));

const HELP_FOOTER = `
Database:
  DATABASE_URL    PostgreSQL connection string. When unset, the embedded PostgreSQL
                  in ./.data/postgres is used (started if needed, shared with a
                  running demo app).
  DATABASE_PREPARED_STATEMENTS=off
                  No named prepared statements (a transaction-mode pooler).
  DATABASE_STATEMENT_TIMEOUT
                  Time limit of each statement (default 15s; off for none).

Exit status:
  0 success, 1 runtime failure (e.g. database unreachable), 2 usage error,
  3 user or session not found, 130 interrupted.
  Set DEBUG=1 to print stack traces.

Documentation: ${CLI_DOCS}`;

/** What a command run needs besides the command line. */
export interface RunOptions {
  io: Io;
  /** Aborted on Ctrl-C; `prune` stops after the current batch. */
  signal: AbortSignal;
}

/** Build the program. Commands call `withContext`, which opens and closes the database. */
export function createProgram({ io, signal }: RunOptions): Command {
  const program = new Command('pgsession');
  program
    .description('Operator commands for pgsession: users, login sessions, pruning and migrations.')
    .version(version(), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help for a command')
    .helpCommand('help [command]', 'show help for a command')
    .option('--table <name>', 'session table', 'session')
    .option('--schema <name>', 'schema of the session table (default: the search_path)')
    .option(
      '--notify <channel>',
      'NOTIFY channel that tells caching app servers about revoked sessions',
      'pgsession_invalidate',
    )
    .option('--no-notify', 'do not send NOTIFY on revocation')
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
      outputError: (s, write) => write(`pgsession: ${s.replace(/^error: /, 'error: ')}`),
    })
    .showHelpAfterError(USAGE_HINT)
    .exitOverride()
    .addHelpText('after', HELP_FOOTER);

  const globals = (cmd: Command): GlobalOptions => {
    const o = cmd.optsWithGlobals<{ table: string; schema?: string; notify: string | boolean }>();
    return { table: o.table, schema: o.schema, notify: typeof o.notify === 'string' ? o.notify : false };
  };
  // Command modules (and through them the auth layer, argon2, pg…) load only when a command
  // runs: --help and usage errors stay fast.
  const db = async <T>(cmd: Command, fn: (ctx: Context) => Promise<T>): Promise<T> => {
    const { withContext } = await import('./context.js');
    return withContext(io, globals(cmd), fn);
  };
  const userCommands = () => import('./commands/users.js');
  const sessionCommands = () => import('./commands/sessions.js');
  const maintenanceCommands = () => import('./commands/maintenance.js');

  // ── user ──────────────────────────────────────────────────────────────────────────────
  const user = program
    .command('user')
    .description('manage users (add, passwd, disable, enable, totp-off, list)');

  user
    .command('add')
    .description(
      'create a user; the password is read from standard input (one line) when it is not a terminal, else prompted for twice without echo',
    )
    .argument('<email>', 'email address (stored lower-cased)')
    .addOption(new Option('--role <role>', 'role of the new user').choices(['user', 'admin']).default('user'))
    .addHelpText(
      'after',
      '\nExamples:\n  $ pgsession user add alice@example.com --role admin\n  $ printf \'%s\\n\' "$PASSWORD" | pgsession user add bob@example.com',
    )
    .action(async (email: string, opts: { role: Role }, cmd: Command) => {
      const { userAdd, checkNewEmail } = await userCommands();
      const normalized = checkNewEmail(email);
      return db(cmd, (ctx) => userAdd(ctx, normalized, opts.role));
    });

  user
    .command('passwd')
    .description('set a new password (read like "user add") and revoke all the user\'s sessions')
    .argument('<email>', 'email address of the user')
    .action(async (email: string, _opts: unknown, cmd: Command) => {
      const { userPasswd } = await userCommands();
      return db(cmd, (ctx) => userPasswd(ctx, email));
    });

  user
    .command('disable')
    .description('disable a user (no more logins) and revoke all their sessions at once')
    .argument('<email>', 'email address of the user')
    .action(async (email: string, _opts: unknown, cmd: Command) => {
      const { userDisable } = await userCommands();
      return db(cmd, (ctx) => userDisable(ctx, email));
    });

  user
    .command('enable')
    .description('allow a disabled user to log in again')
    .argument('<email>', 'email address of the user')
    .action(async (email: string, _opts: unknown, cmd: Command) => {
      const { userEnable } = await userCommands();
      return db(cmd, (ctx) => userEnable(ctx, email));
    });

  user
    .command('totp-off')
    .description(
      'turn off two-factor authentication for a user who lost their authenticator and recovery codes, and revoke all their sessions',
    )
    .argument('<email>', 'email address of the user')
    .action(async (email: string, _opts: unknown, cmd: Command) => {
      const { userTotpOff } = await userCommands();
      return db(cmd, (ctx) => userTotpOff(ctx, email));
    });

  user
    .command('list')
    .description('list users with their role, status and number of active sessions')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const { userList } = await userCommands();
      return db(cmd, (ctx) => userList(ctx, opts));
    });

  // ── sessions ──────────────────────────────────────────────────────────────────────────
  const sessions = program.command('sessions').description('list and revoke login sessions');

  sessions
    .command('list')
    .description(
      'list active sessions, most recently active first: hashed id, user, created, last active, expires, address, browser',
    )
    .option('--user <email>', 'only the sessions of this user')
    .option('--json', 'print JSON (with full ids)')
    .option('--limit <n>', 'show at most n sessions', positiveInteger('--limit'), 200)
    .action(async (opts: { user?: string; json?: boolean; limit: number }, cmd: Command) => {
      const { sessionsList } = await sessionCommands();
      return db(cmd, (ctx) => sessionsList(ctx, opts));
    });

  sessions
    .command('revoke')
    .description(
      'revoke one session by its hashed id as "sessions list" shows it (any unique prefix of 8+ characters), or all sessions of a user',
    )
    .argument('[id]', 'hashed session id (or a unique prefix)')
    .option('--user <email>', 'revoke every session of this user')
    // Hashed ids are base64url: one in 32 starts with "-", which must be taken as the id, not
    // refused as an unknown option.
    .allowUnknownOption()
    .addHelpText(
      'after',
      '\nExamples:\n  $ pgsession sessions revoke q3V9xk2LbA0f\n  $ pgsession sessions revoke --user alice@example.com',
    )
    .action(async (id: string | undefined, opts: { user?: string }, cmd: Command) => {
      const { revokeTarget, sessionsRevoke } = await sessionCommands();
      const prefix = revokeTarget(id, opts);
      return db(cmd, (ctx) => sessionsRevoke(ctx, prefix, opts));
    });

  // ── maintenance ───────────────────────────────────────────────────────────────────────
  const notices = program.command('notices').description('security notices kept for users');
  notices
    .command('prune')
    .description(
      'delete security notices older than --older-than and devices not seen for the remembering period (run it from cron)',
    )
    .option('--older-than <duration>', 'age of the notices to delete', durationOption('--older-than'), '365d')
    .action(async (opts: { olderThan: string }, cmd: Command) => {
      const { pruneNotices } = await maintenanceCommands();
      return db(cmd, (ctx) => pruneNotices(ctx, opts.olderThan));
    });

  program
    .command('prune')
    .description(
      'delete expired sessions in batches, with a progress bar on a terminal (progress lines otherwise)',
    )
    .option('--batch-size <n>', 'rows deleted per statement', positiveInteger('--batch-size'), 5000)
    .action(async (opts: { batchSize: number }, cmd: Command) => {
      const { prune } = await maintenanceCommands();
      return db(cmd, (ctx) => prune(ctx, { batchSize: opts.batchSize, signal }));
    });

  program
    .command('migrate')
    .description(
      'create or upgrade the session table and apply the auth migrations (users, login counters); prints what it applied',
    )
    .option(
      '--finish',
      'after switching from connect-pg-simple for good: move the sessions it stored under raw ids under the hash of their id (a rollback would then log those users out)',
    )
    .option(
      '--batch-size <n>',
      'rows moved per statement (with --finish)',
      positiveInteger('--batch-size'),
      5000,
    )
    .action(async (opts: { finish?: boolean; batchSize: number }, cmd: Command) => {
      const { migrate } = await maintenanceCommands();
      return db(cmd, (ctx) =>
        migrate(ctx, { finish: opts.finish === true, batchSize: opts.batchSize, signal }),
      );
    });

  return program;
}

/**
 * Parse `argv` (as `process.argv`), run the command, and return the exit status. Errors are
 * printed here: one line, with the stack only when `DEBUG` is set.
 */
export async function run(argv: readonly string[], options: RunOptions): Promise<number> {
  const { io } = options;
  const program = createProgram(options);
  try {
    await program.parseAsync([...argv]);
    return EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version "exit" with 0; everything else commander refuses is a usage error.
      if (err.exitCode === 0 || err.code === 'commander.helpDisplayed' || err.code === 'commander.version') {
        return EXIT.ok;
      }
      return EXIT.usage;
    }
    if (err instanceof CliError) {
      if (err.exitCode !== EXIT.interrupted) io.stderr.write(`pgsession: error: ${err.message}\n`);
      if (err.exitCode === EXIT.usage) io.stderr.write(`${USAGE_HINT}\n`);
    } else {
      io.stderr.write(`pgsession: error: ${messageOf(err)}\n`);
    }
    if (io.env.DEBUG) {
      const stack = (err as Error)?.stack;
      if (stack) io.stderr.write(`${stack}\n`);
      const cause = (err as Error)?.cause as Error | undefined;
      if (cause?.stack) io.stderr.write(`Caused by: ${cause.stack}\n`);
    }
    return err instanceof CliError ? err.exitCode : EXIT.failure;
  }
}
