import http from 'node:http';
import { COOKIE_NAME } from './config.js';

/** One plain HTTP response, body as text. */
export interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string>;
  /** Sent as JSON. */
  json?: unknown;
  agent?: http.Agent;
  timeoutMs?: number;
}

/** A request to a loopback server. Rejects on network errors and on timeout (default 30 s). */
export function request(url: string, options: RequestOptions = {}): Promise<HttpResponse> {
  const target = new URL(url);
  if (target.hostname !== '127.0.0.1') throw new Error(`bench: refusing to send load off loopback: ${url}`);
  const body = options.json === undefined ? undefined : JSON.stringify(options.json);
  const headers: Record<string, string> = { ...options.headers };
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    headers['content-length'] = String(Buffer.byteLength(body));
  }
  return new Promise((resolve, reject) => {
    const req = http.request(
      target,
      {
        method: options.method ?? 'GET',
        headers,
        agent: options.agent,
        timeout: options.timeoutMs ?? 30_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString(),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`bench: request timed out: ${url}`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** The `name=value` pair of the session cookie a response sets, or null. */
export function sessionCookie(res: HttpResponse): string | null {
  const set = res.headers['set-cookie'] ?? [];
  for (const line of set) {
    const pair = line.split(';', 1)[0] ?? '';
    if (pair.startsWith(`${COOKIE_NAME}=`) && pair.length > COOKIE_NAME.length + 1) return pair;
  }
  return null;
}

/** Log in on a bench server (its simple `/login`, or the auth one with credentials); returns the cookie. */
export async function login(
  baseUrl: string,
  credentials?: { email: string; password: string },
  agent?: http.Agent,
): Promise<string> {
  const res = await request(`${baseUrl}/login`, { method: 'POST', json: credentials ?? {}, agent });
  const cookie = sessionCookie(res);
  if (res.status !== 200 || !cookie) {
    throw new Error(`bench: login failed on ${baseUrl}: ${res.status} ${res.body.slice(0, 200)}`);
  }
  return cookie;
}
