import { parseDuration } from '../core/duration.js';
import { ConfigError } from '../core/errors.js';
import type { QueryOptions } from './query.js';

/**
 * `DATABASE_PREPARED_STATEMENTS` (`on`/`off`) and `DATABASE_STATEMENT_TIMEOUT` (a duration such
 * as `15s`, a number of milliseconds, or `off`) as {@link QueryOptions}: the demo app and the CLI
 * read the same two variables. Unset leaves each at its default.
 *
 * @throws ConfigError naming the variable for a value it cannot read
 */
export function queryOptionsFromEnv(env: NodeJS.ProcessEnv): QueryOptions {
  const options: QueryOptions = {};
  const prepared = env.DATABASE_PREPARED_STATEMENTS?.trim().toLowerCase();
  if (prepared) {
    if (['on', 'true', '1', 'yes'].includes(prepared)) options.preparedStatements = true;
    else if (['off', 'false', '0', 'no'].includes(prepared)) options.preparedStatements = false;
    else
      throw new ConfigError(
        `DATABASE_PREPARED_STATEMENTS must be on or off, got "${env.DATABASE_PREPARED_STATEMENTS}"`,
      );
  }
  const timeout = env.DATABASE_STATEMENT_TIMEOUT?.trim();
  if (timeout) {
    if (['off', 'false', '0'].includes(timeout.toLowerCase())) options.statementTimeout = false;
    else {
      let ms: number;
      try {
        ms = parseDuration(/^\d+$/.test(timeout) ? `${timeout}ms` : timeout, 'DATABASE_STATEMENT_TIMEOUT');
      } catch {
        ms = Number.NaN;
      }
      if (!Number.isInteger(ms) || ms <= 0) {
        throw new ConfigError(
          `DATABASE_STATEMENT_TIMEOUT must be a duration (15s, 500ms, 15000) or off, got "${timeout}"`,
        );
      }
      options.statementTimeout = ms;
    }
  }
  return options;
}
