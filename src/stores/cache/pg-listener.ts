import pg from 'pg';
import { quoteIdent } from '../../db/sql.js';
import { checkChannel, DEFAULT_CHANNEL, decodePayload } from './protocol.js';
import type { InvalidationHandlers, InvalidationSource } from './types.js';

/** Options for {@link PgInvalidationListener}. */
export interface PgInvalidationListenerOptions {
  /**
   * Where to listen: a connection string or `pg.ClientConfig` (e.g. {@link clientConfigOf} of the
   * store's pool). Must reach PostgreSQL in *session* mode: `LISTEN` does not survive a
   * transaction-mode pooler such as PgBouncer's `pool_mode = transaction`.
   */
  connection: string | pg.ClientConfig;
  /** The channel; default `pgsession_invalidate`. */
  channel?: string | undefined;
  /**
   * Notifications whose sender is this node id are skipped: the process that made a change
   * has already updated its own cache. Optional; correctness does not depend on it.
   */
  ignoreSender?: string | undefined;
  /** How often the connection is checked with `SELECT 1`, in ms. Default 3000. */
  healthCheckIntervalMs?: number | undefined;
  /** How long the check may take before the connection counts as dead, in ms. Default 2000. */
  healthCheckTimeoutMs?: number | undefined;
  /** First reconnection delay, in ms; doubled per failed attempt. Default 100. */
  reconnectMinDelayMs?: number | undefined;
  /** Longest reconnection delay, in ms. Default 5000. */
  reconnectMaxDelayMs?: number | undefined;
  /** Connection timeout per attempt, in ms. Default 5000. */
  connectTimeoutMs?: number | undefined;
  /**
   * Where connection failures are reported (the listener never throws or crashes the process;
   * it reconnects). Default: one line to stderr per failure.
   */
  onError?: ((err: Error) => void) | undefined;
  /** Connect at construction (default true); otherwise call {@link PgInvalidationListener.start}. */
  autoStart?: boolean | undefined;
}

/** Counters of a {@link PgInvalidationListener}. */
export interface ListenerStats {
  listening: boolean;
  /** Successful LISTENs (the first one included). */
  connects: number;
  /** Times the listener lost its connection or failed to establish one. */
  failures: number;
  /** Notifications received on the channel (own ones included). */
  notifications: number;
  /** Notifications skipped because this node sent them. */
  ownSkipped: number;
  /** Backend pid of the current connection (for `pg_terminate_backend`), or null. */
  backendPid: number | null;
}

/**
 * The `pg.ClientConfig` of a pool, without the pool-only settings: for opening a dedicated
 * connection to the same server with the same credentials and TLS settings.
 */
export function clientConfigOf(pool: pg.Pool): pg.ClientConfig {
  const {
    max: _max,
    min: _min,
    idleTimeoutMillis: _idle,
    maxUses: _maxUses,
    maxLifetimeSeconds: _life,
    allowExitOnIdle: _exit,
    log: _log,
    Client: _client,
    Promise: _promise,
    ...config
  } = (pool as unknown as { options: pg.PoolConfig & Record<string, unknown> }).options;
  return config as pg.ClientConfig;
}

type Timer = ReturnType<typeof setTimeout>;

/**
 * Listens for session invalidations with PostgreSQL `LISTEN` on a **dedicated** connection (not
 * a pooled one, which the pool would recycle), and reports through {@link InvalidationHandlers}.
 *
 * - After a successful `LISTEN`: `listening` becomes true and `onUp()` is called.
 * - When the connection errors or ends, or the periodic `SELECT 1` health check fails or times
 *   out (a silently dead connection), `listening` becomes false and `onDown()` is called at
 *   once; it then reconnects with capped exponential backoff (with jitter).
 * - It never throws into the process: failures go to `onError`.
 * - Its socket and timers are `unref()`ed, so it never keeps the process alive on its own;
 *   `close()` ends the connection and timers.
 */
export class PgInvalidationListener implements InvalidationSource {
  readonly channel: string;
  readonly #config: pg.ClientConfig;
  readonly #ignoreSender: string | undefined;
  readonly #healthInterval: number;
  readonly #healthTimeout: number;
  readonly #minDelay: number;
  readonly #maxDelay: number;
  readonly #onError: (err: Error) => void;
  readonly #subscribers = new Set<InvalidationHandlers>();
  readonly #listenSql: string;

  #client: pg.Client | undefined;
  #listening = false;
  #started = false;
  #closed = false;
  #attempt = 0;
  #reconnectTimer: Timer | undefined;
  #healthTimer: Timer | undefined;
  #waiters: Array<() => void> = [];

  #connects = 0;
  #failures = 0;
  #notifications = 0;
  #ownSkipped = 0;

  constructor(options: PgInvalidationListenerOptions) {
    this.channel = checkChannel(options.channel ?? DEFAULT_CHANNEL);
    this.#listenSql = `LISTEN ${quoteIdent(this.channel)}`;
    const base: pg.ClientConfig =
      typeof options.connection === 'string'
        ? { connectionString: options.connection }
        : { ...options.connection };
    this.#config = {
      ...base,
      connectionTimeoutMillis: options.connectTimeoutMs ?? base.connectionTimeoutMillis ?? 5_000,
      keepAlive: true,
      // LISTEN and SELECT 1 only: the pool's statement/query timeouts don't apply; the health
      // check has its own.
      statement_timeout: undefined,
      query_timeout: undefined,
      application_name: `${base.application_name ?? 'pgsession'}:listener`.slice(0, 63),
    };
    this.#ignoreSender = options.ignoreSender;
    this.#healthInterval = options.healthCheckIntervalMs ?? 3_000;
    this.#healthTimeout = options.healthCheckTimeoutMs ?? 2_000;
    this.#minDelay = options.reconnectMinDelayMs ?? 100;
    this.#maxDelay = Math.max(this.#minDelay, options.reconnectMaxDelayMs ?? 5_000);
    this.#onError =
      options.onError ??
      ((err) => process.stderr.write(`pgsession: session invalidation listener: ${err.message}\n`));
    if (options.autoStart ?? true) this.start();
  }

  /** True while `LISTEN` is in effect on a connection that passed its last health check. */
  get listening(): boolean {
    return this.#listening;
  }

  /** Backend pid of the listening connection, or null. */
  get backendPid(): number | null {
    return this.#listening
      ? ((this.#client as { processID?: number | null } | undefined)?.processID ?? null)
      : null;
  }

  stats(): ListenerStats {
    return {
      listening: this.#listening,
      connects: this.#connects,
      failures: this.#failures,
      notifications: this.#notifications,
      ownSkipped: this.#ownSkipped,
      backendPid: this.backendPid,
    };
  }

  subscribe(handlers: InvalidationHandlers): () => void {
    this.#subscribers.add(handlers);
    return () => {
      this.#subscribers.delete(handlers);
    };
  }

  /** Start connecting (once). Called by the constructor unless `autoStart: false`. */
  start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    void this.#connect();
  }

  /**
   * Resolves true once listening (at once if already), false after `timeoutMs` or on close. For
   * start-up warm-up and tests; serving never waits for it (the cache reads through meanwhile).
   */
  waitUntilListening(timeoutMs = 10_000): Promise<boolean> {
    if (this.#listening) return Promise.resolve(true);
    if (this.#closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        resolve(this.#listening);
      };
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      // Not unref()ed: whoever awaits this expects the process to stay up meanwhile (the
      // connection itself is unref()ed once established).
      this.#waiters.push(done);
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#reconnectTimer);
    clearTimeout(this.#healthTimer);
    const client = this.#client;
    this.#client = undefined;
    this.#setDown();
    this.#wake();
    if (client) await endClient(client, true);
  }

  // ---- connection lifecycle ----

  async #connect(): Promise<void> {
    if (this.#closed) return;
    const client = new pg.Client(this.#config);
    this.#client = client;
    client.on('error', (err) => this.#fail(client, err));
    client.on('end', () => this.#fail(client, new Error('listener connection ended')));
    client.on('notification', (msg) => this.#onNotification(client, msg));
    try {
      await client.connect();
      if (this.#client !== client) return;
      (client as unknown as { unref?: () => void }).unref?.();
      await client.query(this.#listenSql);
    } catch (err) {
      this.#fail(client, err as Error);
      return;
    }
    if (this.#client !== client) return;
    this.#attempt = 0;
    this.#connects++;
    this.#listening = true;
    for (const s of [...this.#subscribers]) safely(() => s.onUp(), this.#onError);
    this.#wake();
    this.#scheduleHealthCheck(client);
  }

  /** The connection `client` is unusable: go down at once, drop it, and reconnect later. */
  #fail(client: pg.Client, err: Error): void {
    if (this.#client !== client) return; // an old connection's late event
    this.#client = undefined;
    clearTimeout(this.#healthTimer);
    this.#failures++;
    this.#setDown();
    void endClient(client);
    if (this.#closed) return;
    safely(
      () => this.#onError(err),
      () => {},
    );
    const delay = Math.min(this.#maxDelay, this.#minDelay * 2 ** this.#attempt);
    this.#attempt = Math.min(this.#attempt + 1, 30);
    // Jitter (50–100%) so that many processes don't reconnect in step after a server restart.
    this.#reconnectTimer = setTimeout(
      () => void this.#connect(),
      Math.ceil(delay * (0.5 + Math.random() / 2)),
    );
    this.#reconnectTimer.unref();
  }

  #setDown(): void {
    if (!this.#listening) return;
    this.#listening = false;
    for (const s of [...this.#subscribers]) safely(() => s.onDown(), this.#onError);
  }

  #scheduleHealthCheck(client: pg.Client): void {
    this.#healthTimer = setTimeout(() => void this.#healthCheck(client), this.#healthInterval);
    this.#healthTimer.unref();
  }

  async #healthCheck(client: pg.Client): Promise<void> {
    if (this.#client !== client) return;
    let timer: Timer | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`listener health check timed out after ${this.#healthTimeout} ms`)),
        this.#healthTimeout,
      );
      timer.unref();
    });
    try {
      await Promise.race([client.query('SELECT 1'), timeout]);
    } catch (err) {
      this.#fail(client, err as Error);
      return;
    } finally {
      clearTimeout(timer);
    }
    if (this.#client === client) this.#scheduleHealthCheck(client);
  }

  #onNotification(client: pg.Client, msg: pg.Notification): void {
    if (this.#client !== client || msg.channel !== this.channel) return;
    this.#notifications++;
    const { sender, keys } = decodePayload(msg.payload ?? '');
    if (sender !== null && sender === this.#ignoreSender) {
      this.#ownSkipped++;
      return;
    }
    if (keys.length === 0) return;
    for (const s of [...this.#subscribers]) safely(() => s.onInvalidate(keys), this.#onError);
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }
}

function safely(fn: () => void, onError: (err: Error) => void): void {
  try {
    fn();
  } catch (err) {
    try {
      onError(err as Error);
    } catch {
      // Reporting must not throw either.
    }
  }
}

/**
 * End a client without ever hanging on a dead socket (after a 1 s grace the socket is
 * destroyed). With `hold`, the process is kept alive until then (an awaited `close()`);
 * otherwise the goodbye happens in the background.
 */
async function endClient(client: pg.Client, hold = false): Promise<void> {
  client.removeAllListeners('notification');
  // Late errors of a connection we gave up on must not become unhandled 'error' events.
  client.on('error', () => {});
  if (hold) (client as unknown as { ref?: () => void }).ref?.();
  let timer: Timer | undefined;
  const ended = client.end().catch(() => {});
  const grace = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, 1_000);
    if (!hold) timer.unref();
  });
  await Promise.race([ended, grace]);
  clearTimeout(timer);
  const stream = (client as unknown as { connection?: { stream?: { destroy?: () => void } } }).connection
    ?.stream;
  stream?.destroy?.();
}
