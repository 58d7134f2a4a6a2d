/**
 * Server-side timeouts with a fake clock (the `now` option): a cookie that outlives the idle or
 * absolute timeout gets a fresh anonymous session and the stored row is destroyed; activity is
 * written at most once per touchAfter; a session never outlives idleTimeout + touchAfter.
 */
import * as fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { hashId } from '../../src/core/id.js';
import { kSessionStore, MemoryStore, type SessionEvent } from '../../src/index.js';
import { fetchSeen, startPg } from './support.js';

const T0 = Date.UTC(2030, 0, 1);
const IDLE = 10_000;
const TOUCH_AFTER = 1000;

type Started = Awaited<ReturnType<typeof startPg>>;
const running: Started[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((r) => r.close()));
});

/** An app on a fake clock. `storeClock` lets the store lag, so the engine's own check is what expires. */
async function start(options: { absoluteTimeout?: number; storeLags?: boolean; touchDelay?: number } = {}) {
  const clock = { now: T0 };
  const now = () => clock.now;
  const store = new MemoryStore({ now: options.storeLags ? () => T0 : now });
  const face = store[kSessionStore];
  const touch = face.touch;
  const touches: number[] = [];
  face.touch = async (...args) => {
    touches.push(clock.now);
    if (options.touchDelay) await new Promise((r) => setTimeout(r, options.touchDelay));
    return touch(...args);
  };
  const events: SessionEvent[] = [];
  const app = await startPg(
    {
      name: 'sid',
      store,
      now,
      idleTimeout: IDLE,
      touchAfter: TOUCH_AFTER,
      ...(options.absoluteTimeout ? { absoluteTimeout: options.absoluteTimeout } : {}),
      onEvent: (e) => events.push(e),
    },
    (a) => {
      a.get('/login', (req, res) => {
        req.session.userId = 5;
        res.send(req.sessionID);
      });
      a.get('/me', (req, res) => res.json({ userId: req.session.userId ?? null, id: req.sessionID }));
    },
  );
  running.push(app);
  const has = (id: string) => new Promise<boolean>((r) => store.get(id, (_e, s) => r(Boolean(s))));
  return { app, clock, store, events, touches, has };
}

describe('idle timeout', () => {
  it.each([
    ['the store expires the row itself', false],
    ['the engine expires a row the store still returns', true],
  ] as const)('%s: a fresh anonymous session and the old row gone', async (_n, storeLags) => {
    const { app, clock, events, has } = await start({ storeLags });
    const login = await fetchSeen(`${app.url}/login`, 'sid');
    const id = login.body;
    clock.now = T0 + IDLE; // within the timeout
    expect(JSON.parse((await fetchSeen(`${app.url}/me`, 'sid', login.pair)).body)).toEqual({ userId: 5, id });
    clock.now = T0 + IDLE + IDLE + TOUCH_AFTER + 1; // idle for longer than idleTimeout + touchAfter
    const late = await fetchSeen(`${app.url}/me`, 'sid', login.pair);
    const body = JSON.parse(late.body);
    expect(body.userId).toBeNull();
    expect(body.id).not.toBe(id);
    // Whether the engine saw the row expire or the store had already dropped it, the browser is
    // told to forget the cookie (express-session leaves it: see docs/compat.md).
    expect(late.cookie).toBe('clear');
    expect(await has(id)).toBe(false);
    if (storeLags)
      expect(events).toContainEqual({ type: 'expired', key: hashId(id), userId: '5', reason: 'idle' });
  });
});

describe('absolute timeout', () => {
  it('ends a session however active it is', async () => {
    const { app, clock, events, has } = await start({ absoluteTimeout: 30_000, storeLags: true });
    const login = await fetchSeen(`${app.url}/login`, 'sid');
    for (let t = 5000; t <= 30_000; t += 5000) {
      clock.now = T0 + t;
      expect(JSON.parse((await fetchSeen(`${app.url}/me`, 'sid', login.pair)).body).userId).toBe(5);
    }
    clock.now = T0 + 30_001;
    expect(JSON.parse((await fetchSeen(`${app.url}/me`, 'sid', login.pair)).body).userId).toBeNull();
    expect(await has(login.body)).toBe(false);
    expect(events.filter((e) => e.type === 'expired')).toEqual([
      { type: 'expired', key: hashId(login.body), userId: '5', reason: 'absolute' },
    ]);
  });
});

describe('throttled touch', () => {
  it('with touchAfter 1000, two requests within a second cause one touch', async () => {
    const { app, clock, touches, events } = await start();
    const login = await fetchSeen(`${app.url}/login`, 'sid');
    clock.now = T0 + 500; // within touchAfter of the creation: nothing to write
    await fetchSeen(`${app.url}/me`, 'sid', login.pair);
    clock.now = T0 + 1000;
    await fetchSeen(`${app.url}/me`, 'sid', login.pair);
    clock.now = T0 + 1900;
    await fetchSeen(`${app.url}/me`, 'sid', login.pair);
    await app.mw.flush();
    expect(touches).toEqual([T0 + 1000]);
    expect(events.filter((e) => e.type === 'touch-skipped')).toHaveLength(2);
    clock.now = T0 + 2000;
    await fetchSeen(`${app.url}/me`, 'sid', login.pair);
    await app.mw.flush();
    expect(touches).toEqual([T0 + 1000, T0 + 2000]);
  });

  it("the next request waits for the previous one's touch, so a slow write never makes an active session look idle", async () => {
    // The store keeps its own clock still: only the engine's idle check is under test.
    const { app, clock, touches } = await start({ touchDelay: 150, storeLags: true });
    const login = await fetchSeen(`${app.url}/login`, 'sid');
    for (let i = 1; i <= 3; i++) {
      clock.now = T0 + i * (IDLE - 1000); // each gap within the timeout, all of them together not
      const me = JSON.parse((await fetchSeen(`${app.url}/me`, 'sid', login.pair)).body);
      expect(me.userId, `request ${i}`).toBe(5);
    }
    await app.mw.flush();
    expect(touches).toHaveLength(3);
  });

  it('property: alive after a gap ≤ idleTimeout, gone after a gap > idleTimeout + touchAfter', async () => {
    const { app, clock } = await start();
    const gap = fc.oneof(
      fc.integer({ min: 0, max: 2 * TOUCH_AFTER }),
      fc.integer({ min: IDLE - TOUCH_AFTER, max: IDLE + 2 * TOUCH_AFTER }),
      fc.integer({ min: 0, max: 2 * IDLE }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(gap, { minLength: 1, maxLength: 12 }), async (gaps) => {
        clock.now += 10 * IDLE; // a new, independent start
        let login = await fetchSeen(`${app.url}/login`, 'sid');
        let id = login.body;
        for (const g of gaps) {
          clock.now += g;
          const me = JSON.parse((await fetchSeen(`${app.url}/me`, 'sid', login.pair)).body);
          const alive = me.id === id && me.userId === 5;
          if (g <= IDLE) expect(alive, `gap ${g}`).toBe(true);
          if (g > IDLE + TOUCH_AFTER) expect(alive, `gap ${g}`).toBe(false);
          if (!alive) {
            login = await fetchSeen(`${app.url}/login`, 'sid');
            id = login.body;
          }
        }
        await app.mw.flush();
      }),
      { numRuns: 60 },
    );
  });
});
