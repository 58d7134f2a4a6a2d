// Types for the untyped packages the tests compare pgsession against. Only what the tests use.

declare module 'express4' {
  import express from 'express';
  export default express;
}

declare module 'cookie-signature' {
  export function sign(value: string, secret: string): string;
  export function unsign(input: string, secret: string): string | false;
}

declare module 'express-session/node_modules/cookie-signature/index.js' {
  export function sign(value: string, secret: string): string;
  export function unsign(input: string, secret: string): string | false;
}

declare module 'express-session/session/cookie.js' {
  const Cookie: new (
    options?: object,
  ) => {
    maxAge: number | null | undefined;
    originalMaxAge: number | null | undefined;
    expires: Date | null | undefined;
    data: Record<string, unknown>;
    serialize(name: string, value: string): string;
    toJSON(): Record<string, unknown>;
    [key: string]: unknown;
  };
  export = Cookie;
}

declare module 'express-session' {
  import type { EventEmitter } from 'node:events';
  import type { RequestHandler } from 'express';

  interface ExpressSessionStore extends EventEmitter {
    createSession(req: object, sess: object): object;
  }
  interface ExpressSession {
    (options: Record<string, unknown>): RequestHandler;
    Store: new () => ExpressSessionStore;
    MemoryStore: new () => ExpressSessionStore;
    Cookie: new (options?: object) => object;
  }
  const session: ExpressSession;
  export = session;
}
