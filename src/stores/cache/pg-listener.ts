import { randomBytes } from 'node:crypto';
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
  /**
   * How often the listener proves it still receives notifications, in ms. Default 3000. Each
   * check sends a notification to itself (on a channel private to this listener) and waits for
   * it: a dead socket, a hung server or a transaction-mode pooler all fail it (see `pingVia`).
   */
  healthCheckIntervalMs?: number | undefined;
  /** How long a check may take before the listener counts as down, in ms. Default 2000. */
  healthCheckTimeoutMs?: number | undefined;
  /**
   * Where the health-check notifications are sent from. `'auto'` (default): from the listening
   * connection itself, unless the listener turns out to sit behind a pooler (the backend pid
   * the server reports differs from the one in the startup reply); then from a second
   * connection, since only a notification from another session shows that a transaction-mode
   * pooler is dropping them. `'connection'`: always from a second connection.
   */
  pingVia?: 'auto' | 'connection' | undefined;
  /** First reconnection delay, in ms; doubled per failed attempt. Default 100. */
  reconnectMinDelayMs?: number | undefined;
  /** Longest reconnection delay, in ms. Default 5000. */
  reconnectMaxDelayMs?: number | undefined;
  /** Connection timeout per attempt, in ms. Default 5000. */
  connectTimeoutMs?: number | undefined;
  /**
   * Where connection failures are reported (the listener never throws or crashes the process;
   * it reconnects). Default: one line to stderr, the same message at most once a minute.
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
  /** Server backend pid of the current connection (for `pg_terminate_backend`), or null. */
  backendPid: number | null;
  /** Round trip of the last successful self-notification, in ms (a floor for revocation latency). */
  lastPingMs: number | null;
  /** Whether pings go through a second connection (behind a pooler, or `pingVia: 'connection'`). */
  pingConnection: boolean;
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

/**
 * The listener keeps time by the real clock, whatever replaces the global timers later: an
 * application's fake timers (sinon or vitest, in the test suite of an app that moved to
 * pgsession) jumping days ahead must not fire its health checks, set-up timeouts and
 * reconnects in a tight loop.
 */
const { setTimeout, clearTimeout } = globalThis;

type Timer = ReturnType<typeof setTimeout>;

/**
 * Listens for session invalidations with PostgreSQL `LISTEN` on a **dedicated** connection (not
 * a pooled one, which the pool would recycle), and reports through {@link InvalidationHandlers}.
 *
 * - After a successful `LISTEN` and a first check: `listening` becomes true, `onUp()` is called.
 * - Up means proven: after `LISTEN`, and every `healthCheckIntervalMs`, the listener notifies
 *   itself and must hear it back within `healthCheckTimeoutMs` from the same server backend.
 * - When the connection errors or ends, or a check fails or times out (a silently dead
 *   connection, a hung server, a transaction-mode pooler), `listening` becomes false and
 *   `onDown()` is called at once; it then reconnects with capped exponential backoff (jitter).
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
  /** A channel only this listener uses, for its self-notifications. */
  readonly #pingChannel = `pgsession_ping_${randomBytes(12).toString('hex')}`;

  #client: pg.Client | undefined;
  /** A second connection that sends the pings, when the listener sits behind a pooler. */
  #pinger: pg.Client | undefined;
  #listening = false;
  #started = false;
  #closed = false;
  #attempt = 0;
  #reconnectTimer: Timer | undefined;
  #healthTimer: Timer | undefined;
  #waiters: Array<() => void> = [];
  /** The server backend that ran LISTEN (from `pg_backend_pid()`). */
  #pid: number | null = null;
  readonly #pingVia: 'auto' | 'connection';
  #ping: { nonce: string; received: () => void } | undefined;
  #lastPingMs: number | null = null;

  #connects = 0;
  #failures = 0;
  #notifications = 0;
  #ownSkipped = 0;

  constructor(options: PgInvalidationListenerOptions) {
    this.channel = checkChannel(options.channel ?? DEFAULT_CHANNEL);
    this.#listenSql = `LISTEN ${quoteIdent(this.channel)}; LISTEN ${quoteIdent(this.#pingChannel)}`;
    const base: pg.ClientConfig =
      typeof options.connection === 'string'
        ? { connectionString: options.connection }
        : { ...options.connection };
    this.#config = {
      ...base,
      connectionTimeoutMillis: options.connectTimeoutMs ?? base.connectionTimeoutMillis ?? 5_000,
      keepAlive: true,
      // LISTEN and pings only: the pool's statement/query timeouts don't apply; the health
      // check has its own.
      statement_timeout: undefined,
      query_timeout: undefined,
      application_name: `${base.application_name ?? 'pgsession'}:listener`.slice(0, 63),
    };
    this.#ignoreSender = options.ignoreSender;
    this.#pingVia = options.pingVia ?? 'auto';
    this.#healthInterval = options.healthCheckIntervalMs ?? 3_000;
    this.#healthTimeout = options.healthCheckTimeoutMs ?? 2_000;
    this.#minDelay = options.reconnectMinDelayMs ?? 100;
    this.#maxDelay = Math.max(this.#minDelay, options.reconnectMaxDelayMs ?? 5_000);
    this.#onError = options.onError ?? defaultErrorLog();
    if (options.autoStart ?? true) this.start();
  }

  /** True while `LISTEN` is in effect on a connection that passed its last health check. */
  get listening(): boolean {
    return this.#listening;
  }

  /** Server backend pid of the listening connection, or null. */
  get backendPid(): number | null {
    return this.#listening ? this.#pid : null;
  }

  stats(): ListenerStats {
    return {
      listening: this.#listening,
      connects: this.#connects,
      failures: this.#failures,
      notifications: this.#notifications,
      ownSkipped: this.#ownSkipped,
      backendPid: this.backendPid,
      lastPingMs: this.#lastPingMs,
      pingConnection: this.#pinger !== undefined,
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
    const pinger = this.#pinger;
    this.#client = undefined;
    this.#pinger = undefined;
    this.#setDown();
    this.#wake();
    await Promise.all([client && endClient(client, true), pinger && endClient(pinger, true)]);
  }

  // ---- connection lifecycle ----

  async #connect(): Promise<void> {
    if (this.#closed) return;
    const client = new pg.Client(this.#config);
    this.#client = client;
    this.#pid = null;
    client.on('error', (err) => this.#fail(client, err));
    client.on('end', () => this.#fail(client, new Error('listener connection ended')));
    client.on('notification', (msg) => this.#onNotification(client, msg));
    // Every step below has its own timeout except LISTEN itself: bound the whole set-up.
    const setupTimer = setTimeout(
      () => this.#fail(client, new Error('listener set-up timed out')),
      (this.#config.connectionTimeoutMillis ?? 5_000) + 2 * this.#healthTimeout,
    );
    setupTimer.unref();
    try {
      await client.connect();
      if (this.#client !== client) return;
      unref(client);
      const results = (await client.query(
        `${this.#listenSql}; SELECT pg_backend_pid() AS pid`,
      )) as unknown as pg.QueryResult<{ pid: number }>[];
      this.#pid = results.at(-1)?.rows[0]?.pid ?? null;
      // A pooler answers the startup with its own backend key: our pid differs from the server's.
      // Through a pooler only a notification sent by *another* session, arriving while this
      // connection is idle, proves delivery (self-notifications come back inside our own
      // transaction even in transaction mode), so pings then go through a second connection.
      const pooled = this.#pid !== (client as unknown as { processID?: number | null }).processID;
      if (pooled || this.#pingVia === 'connection') {
        const pinger = new pg.Client({
          ...this.#config,
          application_name: `${this.#config.application_name}-ping`,
        });
        this.#pinger = pinger;
        pinger.on('error', (err) => this.#fail(client, err));
        pinger.on('end', () => this.#fail(client, new Error('listener ping connection ended')));
        await pinger.connect();
        unref(pinger);
      }
      if (this.#client !== client) return;
      // Up only once a notification has actually come back.
      await this.#selfCheck(client);
    } catch (err) {
      this.#fail(client, err as Error);
      return;
    } finally {
      clearTimeout(setupTimer);
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
    const pinger = this.#pinger;
    this.#client = undefined;
    this.#pinger = undefined;
    clearTimeout(this.#healthTimer);
    this.#failures++;
    this.#setDown();
    void endClient(client);
    if (pinger) void endClient(pinger);
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
    try {
      await this.#selfCheck(client);
    } catch (err) {
      this.#fail(client, err as Error);
      return;
    }
    if (this.#client === client) this.#scheduleHealthCheck(client);
  }

  /**
   * Send a notification to this listener's private channel and wait for it, within the
   * health-check timeout: proves end to end that notifications committed now reach us. Sent
   * on the listening connection itself, or through the ping connection when there is one.
   */
  async #selfCheck(client: pg.Client): Promise<void> {
    const nonce = randomBytes(8).toString('hex');
    const started = performance.now();
    let timer: Timer | undefined;
    let received!: () => void;
    const arrived = new Promise<void>((resolve) => {
      received = resolve;
    });
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const pooled = this.#pinger ? ' (through a pooler: LISTEN needs a session-mode connection)' : '';
        reject(new Error(`listener health check timed out after ${this.#healthTimeout} ms${pooled}`));
      }, this.#healthTimeout);
      timer.unref();
    });
    this.#ping = { nonce, received };
    try {
      const sender = this.#pinger ?? client;
      await Promise.race([sender.query('SELECT pg_notify($1, $2)', [this.#pingChannel, nonce]), timeout]);
      await Promise.race([arrived, timeout]);
      this.#lastPingMs = performance.now() - started;
    } finally {
      clearTimeout(timer);
      if (this.#ping?.nonce === nonce) this.#ping = undefined;
    }
  }

  #onNotification(client: pg.Client, msg: pg.Notification): void {
    if (this.#client !== client) return;
    if (msg.channel === this.#pingChannel) {
      if (this.#ping && msg.payload === this.#ping.nonce) this.#ping.received();
      return;
    }
    if (msg.channel !== this.channel) return;
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

/** One stderr line per failure, the same message at most once a minute (it retries forever). */
function defaultErrorLog(): (err: Error) => void {
  const lastLogged = new Map<string, number>();
  return (err) => {
    const now = Date.now();
    if (now - (lastLogged.get(err.message) ?? Number.NEGATIVE_INFINITY) < 60_000) return;
    if (lastLogged.size > 100) lastLogged.clear();
    lastLogged.set(err.message, now);
    process.stderr.write(
      `pgsession: session invalidation listener: ${err.message} (the session cache reads through until it recovers)\n`,
    );
  };
}

function unref(client: pg.Client): void {
  (client as unknown as { unref?: () => void }).unref?.();
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
