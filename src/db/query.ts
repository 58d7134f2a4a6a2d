import pg from 'pg';
import { ConfigError } from '../core/errors.js';
import { watchCheckedOut } from './checkout.js';
import { StatementTimeoutError } from './errors.js';

/**
 * How pgsession sends its statements, for every query it runs on a pool (the session store,
 * cache read-throughs, pruning, auth and its rate limiter, the CLI). Both settings work through
 * transaction-mode poolers (PgBouncer `pool_mode = transaction`, RDS Proxy, Supavisor, pgcat):
 * neither is a startup parameter or session state.
 */
export interface QueryOptions {
  /**
   * Named (prepared) statements. Default true. Turn off behind a transaction-mode pooler that
   * does not track them (PgBouncer before 1.21, or with `max_prepared_statements = 0`): the
   * statement is then parsed on each call, in the same single round trip.
   */
  preparedStatements?: boolean | undefined;
  /**
   * Time limit of each statement, in milliseconds; `false` or 0: none. Default 15 000. When it
   * passes, the statement is cancelled on the server (a protocol cancel request, which poolers
   * forward to the backend running it) and the call rejects with `StatementTimeoutError`. If
   * not even the cancellation is answered (a dead network), the call gives up 5 s later with
   * node-postgres's `Query read timeout` and the connection is discarded.
   */
  statementTimeout?: number | false | undefined;
}

/** The statement time limit pgsession uses unless told otherwise. */
export const DEFAULT_STATEMENT_TIMEOUT_MS = 15_000;
/** How long after a cancellation the client-side timeout gives up on a connection. */
const CANCEL_GRACE_MS = 5_000;

interface Resolved {
  preparedStatements: boolean;
  statementTimeoutMs: number;
}

const kTarget = Symbol('pgsession.query.target');
const kOptions = Symbol('pgsession.query.options');

type AnyQueryable = { query: (...args: never[]) => unknown; connect?: (...args: never[]) => unknown };

/** Check the options, throwing `ConfigError` for a bad one. */
export function resolveQueryOptions(options: QueryOptions, base?: Resolved): Resolved {
  const { preparedStatements, statementTimeout } = options;
  if (preparedStatements !== undefined && typeof preparedStatements !== 'boolean') {
    throw new ConfigError(
      `pgsession: preparedStatements must be a boolean, got ${JSON.stringify(preparedStatements)}`,
    );
  }
  if (
    statementTimeout !== undefined &&
    statementTimeout !== false &&
    !(Number.isInteger(statementTimeout) && statementTimeout >= 0)
  ) {
    throw new ConfigError(
      `pgsession: statementTimeout must be a whole number of milliseconds or false, got ${JSON.stringify(statementTimeout)}`,
    );
  }
  return {
    preparedStatements: preparedStatements ?? base?.preparedStatements ?? true,
    statementTimeoutMs:
      statementTimeout === undefined
        ? (base?.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS)
        : statementTimeout || 0,
  };
}

/** The settings a pool was wrapped with by {@link withQueryOptions}, if it was. */
export function queryOptionsOf(pool: unknown): Readonly<Resolved> | undefined {
  return (pool as { [kOptions]?: Resolved } | null)?.[kOptions];
}

/** The pool {@link withQueryOptions} wrapped (or `pool` itself). */
export function unwrapPool<P>(pool: P): P {
  return ((pool as { [kTarget]?: P } | null)?.[kTarget] ?? pool) as P;
}

/**
 * The one seam through which pgsession's queries go: `pool` with its `query()` (and the
 * `query()` of the clients its `connect()` lends) applying {@link QueryOptions}. Everything else
 * (events, `end()`, counters, `options`) is the pool's own, and `instanceof pg.Pool` still
 * holds. Wrapping a wrapped pool replaces the options it sets and keeps the others. A query-only
 * object (no `connect()`) gets the `preparedStatements` switch only: it lends no connection to
 * cancel a statement on.
 */
export function withQueryOptions<P extends AnyQueryable>(pool: P, options: QueryOptions = {}): P {
  // Not a pool at all (connect-pg-simple's tests pass `pool: {}` and replace the store's query).
  if (typeof pool?.query !== 'function') return pool;
  const target = unwrapPool(pool);
  const settings = resolveQueryOptions(options, queryOptionsOf(pool));
  const lends = typeof (target as AnyQueryable).connect === 'function';
  return new Proxy(target, {
    get(obj, prop, receiver) {
      if (prop === kTarget) return obj;
      if (prop === kOptions) return settings;
      if (prop === 'query') {
        return lends
          ? (...args: unknown[]) => poolQuery(obj as unknown as pg.Pool, settings, args)
          : (...args: unknown[]) =>
              (obj.query as (...a: unknown[]) => unknown).apply(obj, adjust(args, settings));
      }
      if (prop === 'connect' && lends) {
        return (callback?: (err: Error | undefined, client?: pg.PoolClient, done?: () => void) => void) => {
          const lent = (obj as unknown as pg.Pool).connect().then((client) => wrapClient(client, settings));
          if (typeof callback !== 'function') return lent;
          lent.then(
            (client) => callback(undefined, client, () => client.release()),
            (err: Error) => callback(err),
          );
          return undefined;
        };
      }
      return Reflect.get(obj, prop, receiver);
    },
  });
}

/** Strip the statement name when prepared statements are off. */
function adjust(args: unknown[], settings: Resolved): unknown[] {
  const [first, ...rest] = args;
  if (settings.preparedStatements || first === null || typeof first !== 'object') return args;
  if (!('name' in first) || typeof (first as { submit?: unknown }).submit === 'function') return args;
  const { name: _name, ...config } = first as pg.QueryConfig;
  return [config, ...rest];
}

type Callback = (err: Error | null, result?: pg.QueryResult) => void;

/** Split node-postgres's `query(config | text, values?, callback?)` forms. */
function split(args: unknown[]): { config: pg.QueryConfig | null; callback: Callback | undefined } {
  const [first, second, third] = args;
  let callback: Callback | undefined;
  let values: unknown[] | undefined;
  if (typeof second === 'function') callback = second as Callback;
  else {
    values = second as unknown[] | undefined;
    if (typeof third === 'function') callback = third as Callback;
  }
  if (typeof first === 'string') return { config: { text: first, ...(values ? { values } : {}) }, callback };
  if (
    first === null ||
    typeof first !== 'object' ||
    typeof (first as { submit?: unknown }).submit === 'function'
  ) {
    return { config: null, callback };
  }
  const config = { ...(first as pg.QueryConfig) };
  if (values) config.values = values;
  if (typeof (first as { callback?: unknown }).callback === 'function') {
    callback ??= (first as unknown as { callback: Callback }).callback;
    delete (config as { callback?: unknown }).callback;
  }
  return { config, callback };
}

function finish(
  promise: Promise<pg.QueryResult>,
  callback: Callback | undefined,
): Promise<pg.QueryResult> | undefined {
  if (!callback) return promise;
  promise.then(
    (result) => callback(null, result),
    (err: Error) => callback(err),
  );
  return undefined;
}

/** Pools whose replaced query() is being called (see {@link poolQuery}). */
const entering = new WeakSet<object>();

function poolQuery(pool: pg.Pool, settings: Resolved, args: unknown[]): unknown {
  const { config, callback } = split(args);
  // Cursors and streams (submittables) are passed on untouched.
  if (!config) return (pool.query as (...a: unknown[]) => unknown).apply(pool, args);
  // The application replaced this pool's query() (instrumentation, a test double): call it
  // with the arguments as given. When it calls this seam back (a wrapper of the original), that
  // call takes the path below; a replacement that never does gets no statement limit from here.
  if (Object.hasOwn(pool, 'query') && !entering.has(pool)) {
    entering.add(pool);
    try {
      return (pool.query as (...a: unknown[]) => unknown).apply(pool, adjust(args, settings));
    } finally {
      entering.delete(pool);
    }
  }
  const run = async () => {
    const client = await pool.connect();
    const watch = watchCheckedOut(client);
    let broken: Error | boolean = false;
    try {
      const { result, discard } = await timed(client, config, settings);
      broken = discard;
      return result;
    } catch (err) {
      // As pg.Pool's own query(): a connection that failed a statement is not reused.
      broken = err instanceof Error ? err : true;
      throw stripFlag(err);
    } finally {
      watch.done();
      client.release(watch.error() ?? broken);
    }
  };
  return finish(run(), callback);
}

function wrapClient(client: pg.PoolClient, settings: Resolved): pg.PoolClient {
  return new Proxy(client, {
    get(obj, prop, receiver) {
      if (prop === 'query') {
        return (...args: unknown[]) => {
          const { config, callback } = split(args);
          if (!config) return (obj.query as (...a: unknown[]) => unknown).apply(obj, args);
          return finish(
            timed(obj, config, settings).then(
              ({ result }) => result,
              (err: unknown) => Promise.reject(stripFlag(err)),
            ),
            callback,
          );
        };
      }
      const value = Reflect.get(obj, prop, receiver);
      return typeof value === 'function' && prop !== 'constructor' ? value.bind(obj) : value;
    },
  });
}

function stripFlag(err: unknown): unknown {
  if (err && typeof err === 'object' && 'discard' in err) delete (err as { discard?: boolean }).discard;
  return err;
}

/**
 * Run one statement on `client` under the time limit. `discard` tells the pool not to reuse the
 * connection: a cancellation was sent on it (it must not reach the connection's next statement).
 */
async function timed(
  client: pg.ClientBase,
  config: pg.QueryConfig,
  settings: Resolved,
): Promise<{ result: pg.QueryResult; discard: boolean }> {
  const query = settings.preparedStatements || config.name === undefined ? config : withoutName(config);
  // A statement that sets its own `query_timeout` (migrations) has its own limit.
  const own = (config as { query_timeout?: number }).query_timeout;
  const limit = own === undefined ? settings.statementTimeoutMs : 0;
  if (!limit) return { result: await client.query(query), discard: false };
  let cancelled: Promise<void> | undefined;
  const timer = setTimeout(() => {
    cancelled = sendCancel(client);
  }, limit);
  timer.unref();
  try {
    const result = await client.query({ ...query, query_timeout: limit + CANCEL_GRACE_MS } as pg.QueryConfig);
    clearTimeout(timer);
    if (cancelled) await cancelled;
    return { result, discard: cancelled !== undefined };
  } catch (err) {
    clearTimeout(timer);
    if (cancelled) await cancelled;
    const fired = cancelled !== undefined;
    const timedOut = fired && (err as { code?: unknown }).code === '57014';
    const out = timedOut ? new StatementTimeoutError(limit, err) : err;
    if (fired && out && typeof out === 'object') (out as { discard?: boolean }).discard = true;
    throw out;
  }
}

function withoutName(config: pg.QueryConfig): pg.QueryConfig {
  const { name: _name, ...rest } = config;
  return rest;
}

/**
 * Ask the server to cancel what `client` is running: a CancelRequest on a new connection to the
 * same host and port, with the key the server gave this connection (a pooler gives its own and
 * forwards the request to the backend serving the client). Resolves when the server has closed
 * that connection (the cancellation was delivered) or after 2 s.
 */
function sendCancel(client: pg.ClientBase): Promise<void> {
  const c = client as unknown as { host?: string; port?: number; processID?: number; secretKey?: number };
  return new Promise<void>((resolve) => {
    const canceller = new pg.Client({ host: c.host, port: c.port });
    const con = (canceller as unknown as { connection: CancelConnection }).connection;
    const done = () => {
      clearTimeout(guard);
      con.stream?.destroy?.();
      resolve();
    };
    const guard = setTimeout(done, 2_000);
    guard.unref();
    con.on('error', done);
    con.on('end', done);
    con.on('connect', () => con.cancel(c.processID, c.secretKey));
    if (c.host?.startsWith('/')) con.connect(`${c.host}/.s.PGSQL.${c.port}`);
    else con.connect(c.port, c.host);
  });
}

interface CancelConnection {
  stream?: { destroy?: () => void };
  on(event: string, listener: (...args: unknown[]) => void): void;
  connect(portOrPath: number | string | undefined, host?: string): void;
  cancel(processID: number | undefined, secretKey: number | undefined): void;
}
