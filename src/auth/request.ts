import type { IncomingMessage, ServerResponse } from 'node:http';
import type { SessionHost } from '../core/session.js';
import { canonicalAddress } from './address.js';

/**
 * The request shape the auth layer needs: Node's IncomingMessage with a session (from pgsession's
 * middleware), plus what Express adds when present (`ip`, `body`, `originalUrl`, `protocol`).
 * Express's `Request` satisfies it.
 */
export type AuthRequest = IncomingMessage &
  SessionHost & {
    ip?: string | undefined;
    body?: unknown;
    originalUrl?: string;
    protocol?: string;
    get?(name: string): string | undefined;
  };

/** A middleware in the connect/Express shape. */
export type Middleware = (req: AuthRequest, res: ServerResponse, next: (err?: unknown) => void) => void;

export const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);

/**
 * The client address: Express's `req.ip` (which honours `trust proxy`), else the socket's, in
 * one spelling per address (IPv4-mapped IPv6 as plain IPv4, IPv6 compressed lower-case), so
 * one client has one key. The login limits widen it to its network (see `RATE_LIMIT_PREFIXES`).
 */
export function clientAddress(req: AuthRequest): string {
  const ip = req.ip ?? req.socket?.remoteAddress ?? '';
  return ip ? canonicalAddress(ip) : 'unknown';
}

/** The User-Agent header, capped at 512 characters (it is stored and shown, never trusted). */
export function userAgent(req: IncomingMessage): string {
  const ua = req.headers['user-agent'];
  return typeof ua === 'string' ? ua.slice(0, 512) : '';
}

/** The path of the request, without the query string. */
export function pathOf(req: AuthRequest): string {
  const url = req.originalUrl ?? req.url ?? '/';
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

/**
 * Whether the client wants JSON rather than HTML: paths under `/api/`, or an `Accept` header
 * that prefers `application/json` to `text/html`.
 */
export function wantsJson(req: AuthRequest): boolean {
  if (pathOf(req).startsWith('/api/')) return true;
  const accept = req.headers.accept;
  if (!accept) return false;
  // Best quality wins; on a tie, whichever the client listed first.
  let json = { q: 0, at: Infinity };
  let html = { q: 0, at: Infinity };
  accept
    .toLowerCase()
    .split(',')
    .forEach((part, at) => {
      const [type = '', ...params] = part.trim().split(';');
      const qParam = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
      const q = qParam ? Number(qParam.slice(2)) || 0 : 1;
      const t = type.trim();
      const isJson = t === 'application/json' || t.endsWith('+json');
      const isHtml = t === 'text/html' || t === 'application/xhtml+xml';
      if (isJson && q > json.q) json = { q, at };
      if (isHtml && q > html.q) html = { q, at };
    });
  if (json.q === 0) return false;
  return json.q > html.q || (json.q === html.q && json.at < html.at);
}
