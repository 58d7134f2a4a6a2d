/**
 * The command line itself: help everywhere, usage errors (exit 2) before any database work,
 * and one clear line (exit 1) when the database cannot be reached.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { root, runCli } from './run-cli.js';

// No server listens on port 1: connections are refused at once.
// Every case starts a process; on a loaded machine that takes seconds.
vi.setConfig({ testTimeout: 60_000 });

const UNREACHABLE = 'postgres://operator:hunter2-secret@127.0.0.1:1/app';

describe('help', () => {
  it('documents every command, the database and the exit codes', async () => {
    const { code, stdout, stderr } = await runCli(['--help']);
    expect(code).toBe(0);
    expect(stderr).toBe('');
    for (const command of ['user', 'sessions', 'prune', 'migrate'])
      expect(stdout).toMatch(new RegExp(`^  ${command}`, 'm'));
    expect(stdout).toContain('DATABASE_URL');
    expect(stdout).toContain('3 user or session not found');
  });

  it('points to a CLI reference that exists (docs/cli.md, shipped in the package)', async () => {
    const { stdout } = await runCli(['--help']);
    const docs = /^Documentation: (.+)$/m.exec(stdout)?.[1];
    expect(docs).toBeDefined();
    expect(path.isAbsolute(docs!)).toBe(true);
    expect(readFileSync(docs!, 'utf8')).toMatch(/^# .*pgsession/m);
    const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { files: string[] };
    expect(pkg.files).toContain(path.relative(root, docs!).split(path.sep).join('/'));
  });

  const subcommands: Array<[string[], RegExp]> = [
    [['user', '--help'], /add \[options\] <email>[\s\S]*passwd <email>[\s\S]*disable <email>/],
    [['user', 'add', '--help'], /--role <role>[\s\S]*choices: "user", "admin"/],
    [['user', 'passwd', '--help'], /revoke all the user's sessions/],
    [['user', 'disable', '--help'], /revoke all their sessions/],
    [['sessions', '--help'], /list \[options\][\s\S]*revoke \[options\] \[id\]/],
    [['sessions', 'list', '--help'], /--user <email>[\s\S]*--json/],
    [['sessions', 'revoke', '--help'], /--user <email>/],
    [['prune', '--help'], /--batch-size <n>/],
    [['migrate', '--help'], /auth migrations/],
    [['help', 'prune'], /--batch-size <n>/],
  ];
  it.each(subcommands)('pgsession %s', async (...[args, expected]) => {
    const { code, stdout } = await runCli(args);
    expect(code).toBe(0);
    expect(stdout).toMatch(expected);
  });

  it('prints the version', async () => {
    const { code, stdout } = await runCli(['--version']);
    expect(code).toBe(0);
    expect(stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });
});

describe('usage errors exit with 2 before touching the database', () => {
  // DATABASE_URL points nowhere: reaching it would exit 1 instead.
  const env = { DATABASE_URL: UNREACHABLE };
  const cases: Array<[string, string[], RegExp]> = [
    ['no command', [], /Usage: pgsession/],
    ['unknown command', ['frobnicate'], /unknown command 'frobnicate'/],
    [
      'bad role',
      ['user', 'add', 'a@example.com', '--role', 'root'],
      /argument 'root' is invalid\. Allowed choices are user, admin/,
    ],
    ['not an email', ['user', 'add', 'not-an-email'], /"not-an-email" is not an email address/],
    ['missing argument', ['user', 'disable'], /missing required argument 'email'/],
    ['unknown option', ['sessions', 'list', '--frob'], /unknown option '--frob'/],
    ['bad batch size', ['prune', '--batch-size', '0'], /--batch-size must be a positive integer/],
    ['bad limit', ['sessions', 'list', '--limit', 'many'], /--limit must be a positive integer/],
    [
      'revoke without target',
      ['sessions', 'revoke'],
      /give the id of the session to revoke .* or --user <email>/,
    ],
    ['revoke with both', ['sessions', 'revoke', 'abcdefgh1234', '--user', 'a@example.com'], /not both/],
    ['revoke with a short id', ['sessions', 'revoke', 'abc'], /at least 8 characters/],
    ['revoke with a malformed id', ['sessions', 'revoke', 'abc$%^&*()'], /is not a session id/],
    ['excess arguments', ['migrate', 'now'], /too many arguments/],
  ];
  it.each(cases)('%s', async (_name, args, message) => {
    const { code, stdout, stderr } = await runCli(args, { env });
    expect(code).toBe(2);
    expect(stderr).toMatch(message);
    expect(stderr).not.toMatch(/cannot connect/);
    // Where the usage is, in words that do not read like a subcommand.
    if (args.length > 0) expect(stderr).toContain("Run 'pgsession --help' for the commands");
    expect(stderr).not.toContain('(add --help');
    expect(stdout).toBe('');
  });
});

describe('DATABASE_URL that is not a connection URL', () => {
  it.each([
    ['notaurl'],
    ['localhost:5432/app'],
    ['mysql://root:hunter2-secret@127.0.0.1/app'],
    ['postgres:hunter2-secret'],
  ])(
    '%s: exit 1, one line saying what is expected (no lookup of a host "base", no value echoed)',
    async (url) => {
      const { code, stdout, stderr } = await runCli(['sessions', 'list'], { env: { DATABASE_URL: url } });
      expect(code).toBe(1);
      expect(stdout).toBe('');
      expect(stderr.trim().split('\n')).toHaveLength(1);
      expect(stderr).toMatch(
        /^pgsession: error: DATABASE_URL (is not a PostgreSQL connection URL|has the scheme)/,
      );
      expect(stderr).toContain('expected postgres://user:password@host:5432/database');
      expect(stderr).not.toContain('ENOTFOUND');
      expect(stderr).not.toContain('embedded PostgreSQL in .data');
      expect(stderr).not.toContain('hunter2');
    },
  );
});

describe('database unreachable', () => {
  it('exits 1 with one clear line naming the server (no password, no stack trace)', async () => {
    const { code, stdout, stderr } = await runCli(['sessions', 'list'], {
      env: { DATABASE_URL: UNREACHABLE },
    });
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toBe(
      'pgsession: error: cannot connect to PostgreSQL at 127.0.0.1:1/app: connect ECONNREFUSED 127.0.0.1:1\n',
    );
    expect(stderr).not.toContain('hunter2');
  });

  it('same for a command reading a password: it fails before asking for one', async () => {
    const { code, stderr } = await runCli(['user', 'add', 'new@example.com'], {
      env: { DATABASE_URL: UNREACHABLE },
      input: 'a fine password\n',
    });
    expect(code).toBe(1);
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr).toContain('cannot connect to PostgreSQL at 127.0.0.1:1/app');
  });

  it('prints the stack trace with DEBUG set', async () => {
    const { code, stderr } = await runCli(['prune'], { env: { DATABASE_URL: UNREACHABLE, DEBUG: '1' } });
    expect(code).toBe(1);
    expect(stderr).toMatch(/^pgsession: error: cannot connect/);
    expect(stderr).toMatch(/\n\s+at .+\(.+:\d+:\d+\)/);
    expect(stderr).toContain('Caused by: Error: connect ECONNREFUSED');
  });
});
