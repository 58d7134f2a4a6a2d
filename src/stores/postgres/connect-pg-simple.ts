/**
 * `pgsession/connect-pg-simple`: a drop-in for `require('connect-pg-simple')`.
 *
 * ```js
 * const session = require('express-session');
 * const PgSession = require('pgsession/connect-pg-simple')(session);
 * app.use(session({ store: new PgSession({ pool }), secret, resave: false, saveUninitialized: false }));
 * ```
 *
 * Same options and defaults as connect-pg-simple (`pool`, `pgPromise`, `conString`/`conObject`/
 * `DATABASE_URL`, `createTableIfMissing` off, 15-minute jittered pruning started on first use,
 * `ttl` one day, `disableTouch`, `errorLog`), the same semi-private members its users and tests
 * reach for (`query`, `_asyncQuery`, `quotedTable`, `pruneSessions`, …), the same table —
 * upgraded in place with nullable columns, so connect-pg-simple can keep using it (a rolling
 * deploy, a rollback) — plus hashed ids for new sessions (`hashIds`, default true; rows
 * connect-pg-simple wrote stay under their raw id until `pgsession migrate --finish`) and no
 * resurrection of destroyed sessions. The store also exposes `[Symbol.for('pgsession.store')]`,
 * which pgsession's own middleware uses.
 *
 * This entry has a single (default) export so the CommonJS build can be the factory itself
 * (`module.exports = factory`), as connect-pg-simple's is.
 */
import { ConfigError } from '../../core/errors.js';
import { createPgStoreClass, type PgStoreInstance, type PgStoreOptions } from './pg-store.js';

/** connect-pg-simple's options, plus pgsession's (`hashIds`, `cache`, …). */
export type ConnectPgSimpleOptions = PgStoreOptions;

/** What the factory needs from express-session: its `Store` base class. */
export interface ExpressSessionLike<TStore extends abstract new (...args: never[]) => object> {
  Store: TStore;
}

/** The class returned by the factory: express-session's `Store` subclass with connect-pg-simple's API. */
export interface ConnectPgSimpleStoreConstructor<TBase extends object = object> {
  new (options?: ConnectPgSimpleOptions): TBase & PgStoreInstance;
  readonly prototype: TBase & PgStoreInstance;
}

type AnyStoreConstructor = abstract new (...args: never[]) => object;

/**
 * Build the store class on top of `session.Store`, exactly like `require('connect-pg-simple')(session)`.
 *
 * @param session - express-session (or anything exposing its `Store`, also as `session.session.Store`).
 */
function connectPgSimple<TStore extends AnyStoreConstructor>(
  session: ExpressSessionLike<TStore>,
): ConnectPgSimpleStoreConstructor<InstanceType<TStore>> {
  const holder = session as unknown as { Store?: unknown; session?: { Store?: unknown } };
  const Base = holder?.Store ?? holder?.session?.Store;
  if (typeof Base !== 'function') {
    throw new ConfigError('connect-pg-simple: pass express-session (an object with a `Store` class)');
  }
  // A new class per call, as connect-pg-simple does.
  const Class = createPgStoreClass(Base as never, {
    name: 'PGStore',
    createTableIfMissing: false,
    legacyTableNameSyntax: true,
    lazyPruning: true,
  });
  return Class as unknown as ConnectPgSimpleStoreConstructor<InstanceType<TStore>>;
}

/**
 * The option and class types, reachable as `connectPgSimple.Options` from CommonJS too, where
 * the module is the function itself (`export =`) and cannot carry named type exports.
 */
declare namespace connectPgSimple {
  /** connect-pg-simple's options, plus pgsession's (`hashIds`, `cache`, …). */
  export type Options = ConnectPgSimpleOptions;
  /** The class the factory returns. */
  export type StoreConstructor<TBase extends object = object> = ConnectPgSimpleStoreConstructor<TBase>;
  /** An instance of that class. */
  export type Store<TBase extends object = object> = TBase & PgStoreInstance;
  /** `@types/connect-pg-simple`'s name for {@link Options}. */
  export type PGStoreOptions = ConnectPgSimpleOptions;
  /** `@types/connect-pg-simple`'s name for a store instance. */
  export type PGStore<TBase extends object = object> = TBase & PgStoreInstance;
}

export default connectPgSimple;
