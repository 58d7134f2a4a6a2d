/**
 * The engine's reading of the session cookie: the memo of verified values (a returning cookie
 * skips the HMAC and the SHA-256 of its id; a forged one never does), and the `invalid-cookie`
 * events (ASVS: many invalid session ids from one source must be detectable), which carry no
 * raw value.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SessionEngine, type SessionEvent } from '../../src/core/engine.js';
import * as id from '../../src/core/id.js';
import type { SessionHost } from '../../src/core/session.js';
import * as signature from '../../src/core/signature.js';
import { kSessionStore } from '../../src/core/store.js';
import { MemoryStore } from '../../src/stores/memory/memory-store.js';

vi.mock('../../src/core/signature.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/core/signature.js')>();
  return { ...real, unsignWithIndex: vi.fn(real.unsignWithIndex) };
});
vi.mock('../../src/core/id.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/core/id.js')>();
  return { ...real, hashId: vi.fn(real.hashId) };
});

const SECRET = 'engine-cookie-test-secret-0123456789abcdef';
const OLD_SECRET = 'engine-cookie-test-old-secret-0123456789ab';

let memory: MemoryStore;
let events: SessionEvent[];

function engine(secrets: readonly string[] = [SECRET]): SessionEngine {
  return new SessionEngine({
    name: 'sid',
    secrets,
    store: memory[kSessionStore],
    cookie: { maxAge: 60_000 },
    resave: false,
    saveUninitialized: false,
    rolling: true,
    unset: 'keep',
    genid: id.generateId,
    hashIds: true,
    idleTimeout: 60_000,
    absoluteTimeout: null,
    touchAfter: 1000,
    now: Date.now,
    onEvent: (event) => events.push(event),
  });
}

/** One request: load, run `handle` on the session, commit; returns the Set-Cookie value. */
async function request(
  e: SessionEngine,
  cookieHeader: string | undefined,
  handle: (host: SessionHost) => void = () => {},
): Promise<{ setCookie: string | null; host: SessionHost }> {
  const host: SessionHost = {};
  const ctx = await e.load(host, { cookieHeader, secure: false });
  handle(host);
  await ctx.commit();
  return { setCookie: ctx.setCookieHeader(), host };
}

/** Log in: a saved session; returns the cookie header the browser would send, and the id. */
async function login(e: SessionEngine): Promise<{ cookie: string; sessionId: string; raw: string }> {
  const { setCookie, host } = await request(e, undefined, (h) => {
    (h.session as Record<string, unknown>).userId = 1;
  });
  const pair = setCookie!.split(';')[0]!;
  return { cookie: pair, sessionId: host.sessionID!, raw: decodeURIComponent(pair.slice(4)) };
}

const unsign = vi.mocked(signature.unsignWithIndex);
const hashId = vi.mocked(id.hashId);

beforeEach(() => {
  memory = new MemoryStore();
  events = [];
  unsign.mockClear();
  hashId.mockClear();
});
afterEach(async () => {
  await memory.close();
});

describe('verified cookie memo', () => {
  it('verifies a returning cookie once: no HMAC and no SHA-256 of its id on later requests', async () => {
    const e = engine();
    const { cookie, sessionId } = await login(e);
    unsign.mockClear();
    hashId.mockClear();
    for (let i = 0; i < 3; i++) {
      const { host } = await request(e, `other=1; ${cookie}`);
      expect(host.sessionID).toBe(sessionId);
      expect((host.session as Record<string, unknown>).userId).toBe(1);
    }
    expect(unsign).toHaveBeenCalledTimes(1);
    expect(hashId).toHaveBeenCalledTimes(1);
  });

  it('never remembers a forged or tampered value: each try goes through the HMAC and fails', async () => {
    const e = engine();
    const { cookie, sessionId, raw } = await login(e);
    await request(e, cookie); // remembered
    const tampered = `${raw.slice(0, -1)}${raw.endsWith('A') ? 'B' : 'A'}`;
    const otherId = `${sessionId.slice(0, -1)}${sessionId.endsWith('A') ? 'B' : 'A'}`;
    const swapped = `s:${otherId}.${raw.slice(raw.lastIndexOf('.') + 1)}`;
    unsign.mockClear();
    for (const value of [tampered, tampered, swapped, swapped]) {
      const { host } = await request(e, `sid=${encodeURIComponent(value)}`);
      expect(host.sessionID).not.toBe(sessionId);
      expect(host.sessionID).not.toBe(otherId);
    }
    expect(unsign).toHaveBeenCalledTimes(4);
    for (const call of unsign.mock.results) expect(call.value).toBeNull();
  });

  it('remembers which secret verified, so an old-secret cookie is re-signed on every response', async () => {
    const old = engine([OLD_SECRET]);
    const { cookie, sessionId } = await login(old);
    const e = engine([SECRET, OLD_SECRET]);
    for (let i = 0; i < 2; i++) {
      const { setCookie, host } = await request(e, cookie);
      expect(host.sessionID).toBe(sessionId);
      const value = decodeURIComponent(setCookie!.split(';')[0]!.slice(4));
      expect(value).toBe(`s:${signature.sign(sessionId, SECRET)}`);
    }
    // The same value means nothing to an engine that no longer has the old secret.
    const { host } = await request(engine([SECRET]), cookie);
    expect(host.sessionID).not.toBe(sessionId);
    expect(events.at(-1)).toEqual({ type: 'invalid-cookie', reason: 'signature', key: null });
  });

  describe('at its capacity (10 000 values)', () => {
    const cookieOf = (n: number) => `sid=${encodeURIComponent(`s:${signature.sign(`id-${n}`, SECRET)}`)}`;
    /** Present value `n` (it names no session); returns the key the engine verified it as. */
    const verifiedKey = async (e: SessionEngine, n: number) => {
      await request(e, cookieOf(n));
      const last = events.at(-1);
      return last?.type === 'invalid-cookie' && last.reason === 'unknown' ? last.key : undefined;
    };

    it('keeps hitting when one more session is active than it holds (no round-robin thrash)', async () => {
      const e = engine();
      for (let n = 0; n < 10_000; n++) expect(await verifiedKey(e, n)).toBe(id.hashId(`id-${n}`));
      // 10 001 sessions in turn: a plain LRU would evict, on each miss, the value needed next.
      for (let pass = 0; pass < 2; pass++) {
        unsign.mockClear();
        for (let n = 0; n <= 10_000; n++) expect(await verifiedKey(e, n)).toBe(id.hashId(`id-${n}`));
        expect(unsign.mock.calls.length).toBeLessThan(50);
      }
    });

    it('is bounded: values past its capacity displace some it held, which are verified again', async () => {
      const e = engine();
      for (let n = 0; n < 20_000; n++) await verifiedKey(e, n);
      unsign.mockClear();
      for (let n = 0; n < 10_000; n++) expect(await verifiedKey(e, n)).toBe(id.hashId(`id-${n}`));
      expect(unsign.mock.calls.length).toBeGreaterThan(500);
    });
  });
});

describe('invalid-cookie events', () => {
  it('reports a bad signature (forged, tampered, unsigned, old secret) without any raw value', async () => {
    const e = engine();
    const { raw } = await login(e);
    const oldSigned = `s:${signature.sign('some-id', OLD_SECRET)}`;
    events = [];
    const values = [`s:${'a'.repeat(43)}.${'b'.repeat(43)}`, `${raw.slice(0, -2)}xx`, 'plain-id', oldSigned];
    for (const value of values) await request(e, `sid=${encodeURIComponent(value)}`);
    const invalid = events.filter((ev) => ev.type === 'invalid-cookie');
    expect(invalid).toEqual(values.map(() => ({ type: 'invalid-cookie', reason: 'signature', key: null })));
  });

  it('reports a genuine cookie whose session is gone as unknown, with the storage key only', async () => {
    const e = engine();
    const { cookie, sessionId, raw } = await login(e);
    memory.clear();
    events = [];
    const { setCookie } = await request(e, cookie);
    expect(events).toContainEqual({ type: 'invalid-cookie', reason: 'unknown', key: id.hashId(sessionId) });
    const text = JSON.stringify(events);
    expect(text).not.toContain(sessionId);
    expect(text).not.toContain(raw.slice(raw.lastIndexOf('.') + 1));
    // The browser is told to forget it, as before.
    expect(setCookie).toMatch(/^sid=; .*Expires=Thu, 01 Jan 1970/);
  });

  it('reports nothing for no cookie, other cookies, an empty value, or a valid session', async () => {
    const e = engine();
    const { cookie } = await login(e);
    events = [];
    await request(e, undefined);
    await request(e, 'theme=dark; xsid=1');
    await request(e, 'sid=');
    await request(e, cookie);
    expect(events.filter((ev) => ev.type === 'invalid-cookie')).toEqual([]);
  });
});
