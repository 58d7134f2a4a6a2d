/**
 * Exit codes and the errors that carry them. Everything the CLI prints about a failure is one
 * line meant for an operator; stacks only with `DEBUG` set.
 */

/** Exit statuses of `pgsession` (documented in docs/cli.md). */
export const EXIT = {
  ok: 0,
  /** A runtime failure: database unreachable, password refused, migration failed… */
  failure: 1,
  /** Bad command line (unknown command or option, bad argument). */
  usage: 2,
  /** The user or session named does not exist. */
  notFound: 3,
  /** Interrupted (Ctrl-C), as shells report 128 + SIGINT. */
  interrupted: 130,
} as const;

/** An error whose message is fit to print as is, with the exit status to use. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.failure,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'CliError';
  }
}

/** The command line is wrong in a way commander cannot see (e.g. two exclusive arguments). */
export class UsageError extends CliError {
  constructor(message: string) {
    super(message, EXIT.usage);
    this.name = 'UsageError';
  }
}

/** An unknown user or session. */
export class NotFoundError extends CliError {
  constructor(message: string) {
    super(message, EXIT.notFound);
    this.name = 'NotFoundError';
  }
}

/** Ctrl-C at a prompt. */
export class InterruptedError extends CliError {
  constructor() {
    super('interrupted', EXIT.interrupted);
    this.name = 'InterruptedError';
  }
}

/** `host:port/database` of a connection string, never its password. */
export function describeTarget(url: string): string {
  try {
    const u = new URL(url);
    const host = u.hostname || process.env.PGHOST || 'localhost';
    const port = u.port || process.env.PGPORT || '5432';
    const db = decodeURIComponent(u.pathname.replace(/^\//, '')) || u.username || 'postgres';
    return `${host}:${port}/${db}`;
  } catch {
    return 'the configured database';
  }
}

/** The one-line message for an error (an AggregateError's own message can be empty). */
export function messageOf(err: unknown): string {
  if (err instanceof Error) {
    if (err.message) return err.message;
    const inner = (err as Error & { errors?: unknown[] }).errors?.[0];
    if (inner instanceof Error && inner.message) return inner.message;
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    return err.name;
  }
  return String(err);
}
