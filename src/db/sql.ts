/**
 * Quotes an SQL identifier (table, schema, database or column name) so it can be interpolated
 * into a statement. Identifiers cannot be bound as query parameters, so every identifier that
 * comes from configuration must go through this.
 *
 * @throws TypeError when the name is empty or contains a NUL character (PostgreSQL rejects both,
 *   and failing here gives a clearer message than a syntax error from the server).
 */
export function quoteIdent(name: string): string {
  if (name.length === 0) throw new TypeError('SQL identifier must not be empty');
  if (name.includes('\0')) throw new TypeError('SQL identifier must not contain NUL characters');
  return `"${name.replaceAll('"', '""')}"`;
}

/** Quotes `schema.name`, or just `name` when no schema is given (resolved through `search_path`). */
export function quoteQualified(name: string, schema?: string): string {
  return schema === undefined ? quoteIdent(name) : `${quoteIdent(schema)}.${quoteIdent(name)}`;
}
