import pg from 'pg';
import { quoteIdent } from '../../src/db/sql.js';

/** Bench databases are named `pgsession_bench_<runner pid>_<tag>`; leftovers of dead runners are dropped. */
const PREFIX = 'pgsession_bench_';
const NAME = /^pgsession_bench_(\d+)_/;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The same server and credentials, another database. */
export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The runner's connection to the server's maintenance database: creates and drops the bench
 * databases and reads their statistics. It never connects to a bench database itself, so its
 * own statements never count against a configuration.
 */
export class Admin {
  readonly #client: pg.Client;
  readonly #url: string;
  readonly #created = new Set<string>();

  private constructor(url: string) {
    this.#url = url;
    this.#client = new pg.Client({ connectionString: url, application_name: 'pgsession-bench-admin' });
  }

  static async connect(url: string): Promise<Admin> {
    const admin = new Admin(url);
    await admin.#client.connect();
    await admin.#dropLeftovers();
    return admin;
  }

  get client(): pg.Client {
    return this.#client;
  }

  async #dropLeftovers(): Promise<void> {
    const { rows } = await this.#client.query<{ datname: string }>(
      'SELECT datname FROM pg_database WHERE starts_with(datname, $1)',
      [PREFIX],
    );
    for (const { datname } of rows) {
      const pid = Number(NAME.exec(datname)?.[1]);
      if (pid && !isAlive(pid))
        await this.#client.query(`DROP DATABASE IF EXISTS ${quoteIdent(datname)} WITH (FORCE)`);
    }
  }

  /** Create a fresh database for one configuration; returns its name and URL. */
  async createDatabase(tag: string): Promise<{ name: string; url: string }> {
    const name = `${PREFIX}${process.pid}_${tag}`;
    await this.#client.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
    await this.#client.query(`CREATE DATABASE ${quoteIdent(name)}`);
    this.#created.add(name);
    return { name, url: withDatabase(this.#url, name) };
  }

  async dropDatabase(name: string): Promise<void> {
    await this.#client.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
    this.#created.delete(name);
  }

  /** Drop every database this run created, and disconnect. */
  async close(): Promise<void> {
    for (const name of [...this.#created]) await this.dropDatabase(name).catch(() => {});
    await this.#client.end().catch(() => {});
  }

  /** Backends connected to a database now. */
  async backends(database: string): Promise<number> {
    const { rows } = await this.#client.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1',
      [database],
    );
    return rows[0]?.n ?? 0;
  }

  /** Wait until at most `max` backends are connected to the database (a backend's exit flushes its statistics). */
  async waitForBackends(database: string, max: number, timeoutMs = 15_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if ((await this.backends(database)) <= max) return true;
      await sleep(50);
    }
    return false;
  }

  /**
   * Transactions committed or rolled back in a database (`pg_stat_database`): every statement
   * the stores send outside an explicit transaction is one. Read in a fresh snapshot.
   */
  async transactions(database: string): Promise<number> {
    await this.#client.query('SELECT pg_stat_clear_snapshot()');
    const { rows } = await this.#client.query<{ n: string }>(
      'SELECT (xact_commit + xact_rollback)::text AS n FROM pg_stat_database WHERE datname = $1',
      [database],
    );
    return Number(rows[0]?.n ?? 0);
  }

  /**
   * {@link transactions}, once the count has stopped moving: statistics reach shared memory
   * when a backend exits, or up to about a second after its last transaction.
   */
  async settledTransactions(database: string, quietMs = 1_200, timeoutMs = 15_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    let last = await this.transactions(database);
    let since = Date.now();
    while (Date.now() < deadline) {
      await sleep(200);
      const now = await this.transactions(database);
      if (now !== last) {
        last = now;
        since = Date.now();
      } else if (Date.now() - since >= quietMs) {
        break;
      }
    }
    return last;
  }
}
