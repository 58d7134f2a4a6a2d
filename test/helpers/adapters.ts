/**
 * What the adapter tests share: the Express middleware as the reference (same routes), the id
 * inside a signed cookie, a cookie's shape without its value and date, and a store whose
 * methods can be made to fail as a database outage would.
 */
import http from 'node:http';
import express from 'express';
import { expect } from 'vitest';
import { type SessionOptions, session } from '../../src/adapters/express/middleware.js';
import { unsign } from '../../src/core/signature.js';
import { type HasSessionStore, kSessionStore, type SessionStore } from '../../src/core/store.js';
import type { MemoryStore } from '../../src/stores/memory/memory-store.js';
import { Client, listen } from './http.js';

/** The Express middleware with `/login` (regenerate, userId 42) and `/me`; closed through `closers`. */
export async function expressApp(opts: SessionOptions, closers: Array<() => Promise<void>>) {
  const app = express();
  app.use(session(opts));
  app.post('/login', async (req, res) => {
    await req.session.regenerate();
    req.session.userId = 42;
    res.json({ ok: true });
  });
  app.get('/me', (req, res) => res.json({ userId: req.session?.userId ?? null, id: req.sessionID ?? null }));
  const server = await listen(http.createServer(app));
  closers.push(server.close);
  return new Client(server.url);
}

/** The session id a `connect.sid` Set-Cookie (or cookie pair) carries, verified with `secret`. */
export function idOf(setCookie: string, secret: string): string {
  const raw = decodeURIComponent(/connect\.sid=([^;]+)/.exec(setCookie)![1]!);
  expect(raw.startsWith('s:')).toBe(true);
  const id = unsign(raw.slice(2), [secret]);
  expect(id).not.toBe(false);
  return id as string;
}

/** A Set-Cookie with its value and date blanked, to compare attributes across adapters. */
export function shape(setCookie: string): string {
  return setCookie
    .replace(/^connect\.sid=[^;]+/, 'connect.sid=<value>')
    .replace(/Expires=[^;]+/, 'Expires=<date>');
}

/** A store whose methods can be made to fail, as a database outage would. */
export function flaky(inner: MemoryStore): { store: HasSessionStore; broken: Set<keyof SessionStore> } {
  const face = inner[kSessionStore];
  const broken = new Set<keyof SessionStore>();
  const proxy = new Proxy(face, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) =>
        broken.has(prop as keyof SessionStore)
          ? Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:5432'))
          : (value as (...a: unknown[]) => unknown).apply(target, args);
    },
  });
  return { store: { [kSessionStore]: proxy }, broken };
}
