import { randomBytes } from 'node:crypto';
import { ConfigError } from '../../core/errors.js';

/**
 * The invalidation protocol between processes sharing one session table.
 *
 * A payload is `<sender>:<key>,<key>,…` where `<sender>` is the random node id of the process
 * (cache) that made the change and each `<key>` is a *storage key* — the SHA-256 of a session
 * id, base64url — never a raw session id: any role that can connect to the database can
 * `LISTEN` on any channel. The key {@link ALL_KEYS} (`*`) means "forget everything" (used for
 * rows stored under raw ids, whose key must not be broadcast, and for `clear()`).
 *
 * A payload without `:` is accepted as keys from an unknown sender (handy for operators:
 * `NOTIFY pgsession_invalidate, '*'` flushes every cache).
 */

/** The default channel. */
export const DEFAULT_CHANNEL = 'pgsession_invalidate';

/** The key that invalidates every cached session. */
export const ALL_KEYS = '*';

/** PostgreSQL rejects NOTIFY payloads of 8000 bytes or more (default build). */
export const MAX_PAYLOAD_BYTES = 7999;

/**
 * Keys per payload in SQL-side notifications. Storage keys are 43 characters, so 100 of them
 * plus separators and the sender id stay far below {@link MAX_PAYLOAD_BYTES}.
 */
export const KEYS_PER_PAYLOAD = 100;

/** PostgreSQL identifiers (and so channel names) are at most NAMEDATALEN - 1 = 63 bytes. */
const MAX_CHANNEL_BYTES = 63;

/** A random id for one cache instance, so it can recognise (and skip) its own notifications. */
export function generateNodeId(): string {
  return randomBytes(9).toString('base64url');
}

/**
 * Check a channel name. Channel names are identifiers: `LISTEN` needs them quoted, `pg_notify`
 * takes them as text; both must be the exact same string, at most 63 bytes.
 *
 * @throws ConfigError when the name is empty, too long or contains NUL.
 */
export function checkChannel(channel: string): string {
  if (typeof channel !== 'string' || channel.length === 0) {
    throw new ConfigError('notify channel must be a non-empty string');
  }
  if (channel.includes('\0')) throw new ConfigError('notify channel must not contain NUL characters');
  if (Buffer.byteLength(channel) > MAX_CHANNEL_BYTES) {
    throw new ConfigError(
      `notify channel must be at most ${MAX_CHANNEL_BYTES} bytes (PostgreSQL truncates longer names)`,
    );
  }
  return channel;
}

/** Check a node id: it must not contain the payload's separators. */
export function checkNodeId(nodeId: string): string {
  if (typeof nodeId !== 'string' || nodeId.length === 0 || /[:,\s\0]/.test(nodeId) || nodeId.length > 64) {
    throw new ConfigError('node id must be 1-64 characters without ":", "," or whitespace');
  }
  return nodeId;
}

/** One decoded notification. */
export interface Invalidation {
  /** The sender's node id, or null when the payload named none. */
  sender: string | null;
  keys: string[];
}

/** Decode a payload (see the module comment). Never throws; garbage yields no keys. */
export function decodePayload(payload: string): Invalidation {
  const colon = payload.indexOf(':');
  const sender = colon === -1 ? null : payload.slice(0, colon);
  const body = colon === -1 ? payload : payload.slice(colon + 1);
  const keys: string[] = [];
  for (const key of body.split(',')) {
    const trimmed = key.trim();
    if (trimmed.length > 0) keys.push(trimmed);
  }
  return { sender: sender === '' ? null : sender, keys };
}

/**
 * Encode keys into as few payloads as fit under {@link MAX_PAYLOAD_BYTES} each. For senders
 * that notify from JavaScript (`SELECT pg_notify($1, $2)`); the PostgreSQL store builds its
 * payloads in SQL instead (see {@link notifyKeysSql}), in the same statement as the write.
 */
export function encodePayloads(sender: string, keys: readonly string[]): string[] {
  const head = `${checkNodeId(sender)}:`;
  const headBytes = Buffer.byteLength(head);
  const out: string[] = [];
  let current = '';
  let bytes = 0;
  for (const key of keys) {
    const size = Buffer.byteLength(key);
    if (size === 0 || key.includes(',')) {
      throw new TypeError('storage keys must be non-empty and contain no ","');
    }
    if (headBytes + size > MAX_PAYLOAD_BYTES) throw new RangeError('storage key too long for a notification');
    if (current && headBytes + bytes + 1 + size > MAX_PAYLOAD_BYTES) {
      out.push(head + current);
      current = '';
      bytes = 0;
    }
    current = current ? `${current},${key}` : key;
    bytes += (bytes ? 1 : 0) + size;
  }
  if (current) out.push(head + current);
  return out;
}

/**
 * An SQL string literal, safe whatever `standard_conforming_strings` is (as libpq's
 * `PQescapeLiteral`: an `E''` literal when backslashes are present).
 */
export function quoteLiteral(value: string): string {
  if (value.includes('\0')) throw new TypeError('SQL literal must not contain NUL characters');
  const escaped = value.replaceAll("'", "''");
  return value.includes('\\') ? ` E'${escaped.replaceAll('\\', '\\\\')}'` : `'${escaped}'`;
}

/** What the PostgreSQL store needs to put notifications in its write statements. */
export interface NotifyTarget {
  channel: string;
  /** The sender id written into every payload. */
  nodeId: string;
}

/**
 * A `SELECT` that sends one notification per {@link KEYS_PER_PAYLOAD} keys of `source`, for use
 * as a CTE in the statement that makes the change, so the notifications are part of the same
 * transaction: sent exactly when (and only if) the change commits.
 *
 * `source` must be a relation (usually a data-modifying CTE with `RETURNING`) with a `sid` text
 * column and an `id_hashed` boolean column; rows stored under raw ids (`id_hashed` false) are
 * announced as {@link ALL_KEYS}, so a raw id never leaves the database. Remember that a CTE
 * that is not data-modifying runs only if the main query reads it.
 *
 * Channel and sender are constants of the store, inlined as literals so the statement's
 * parameters do not change.
 */
export function notifyKeysSql(source: string, target: NotifyTarget): string {
  const channel = quoteLiteral(checkChannel(target.channel));
  const prefix = quoteLiteral(`${checkNodeId(target.nodeId)}:`);
  return `SELECT pg_notify(${channel}, ${prefix} || string_agg(k, ',')) AS notified
FROM (
  SELECT k, (row_number() OVER (ORDER BY k) - 1) / ${KEYS_PER_PAYLOAD} AS chunk
  FROM (SELECT DISTINCT CASE WHEN id_hashed THEN sid ELSE ${quoteLiteral(ALL_KEYS)} END AS k FROM ${source}) raw
) keyed
GROUP BY chunk`;
}
