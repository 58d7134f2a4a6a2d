import { spawn } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { hashId } from '../../src/core/id.js';
import {
  encodePayloads,
  type InvalidationHandlers,
  notifyKeysSql,
  PgInvalidationListener,
  type PgInvalidationListenerOptions,
} from '../../src/stores/cache/index.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

let db: TestDatabase;
const listeners: PgInvalidationListener[] = [];
const errors: Error[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
});

afterEach(async () => {
  await Promise.all(listeners.splice(0).map((l) => l.close()));
});

afterAll(async () => {
  await db?.drop();
});

/** A listener on the test database with fast timings, and a log of what it reported. */
function listen(options: Partial<PgInvalidationListenerOptions> = {}) {
  const events: Array<{ type: 'up' | 'down' } | { type: 'keys'; keys: readonly string[] }> = [];
  const listener = new PgInvalidationListener({
    connection: db.url,
    healthCheckIntervalMs: 200,
    healthCheckTimeoutMs: 300,
    reconnectMinDelayMs: 20,
    reconnectMaxDelayMs: 200,
    onError: (err) => errors.push(err),
    ...options,
  });
  listeners.push(listener);
  const handlers: InvalidationHandlers = {
    onInvalidate: (keys) => events.push({ type: 'keys', keys }),
    onDown: () => events.push({ type: 'down' }),
    onUp: () => events.push({ type: 'up' }),
  };
  listener.subscribe(handlers);
  const keys = () => events.flatMap((e) => (e.type === 'keys' ? e.keys : []));
  return { listener, events, keys };
}

async function notify(channel: string, payload: string): Promise<void> {
  await db.pool.query('SELECT pg_notify($1, $2)', [channel, payload]);
}

/**
 * A TCP proxy in front of PostgreSQL that can be frozen: bytes stop flowing but no socket is
 * closed, like a network partition or a hung server (the case only the health check can see).
 */
async function freezableProxy(
  target: URL,
  options: { dropNotifications?: boolean; fakeBackendKey?: boolean } = {},
) {
  let frozen = false;
  const pairs = new Set<[net.Socket, net.Socket]>();
  const server = net.createServer((client) => {
    if (frozen) {
      client.destroy();
      return;
    }
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    const pair: [net.Socket, net.Socket] = [client, upstream];
    pairs.add(pair);
    const forward = (from: net.Socket, to: net.Socket) =>
      from.on('data', (chunk) => {
        if (!frozen) to.write(chunk);
      });
    forward(client, upstream);
    if (options.dropNotifications || options.fakeBackendKey) {
      // Server messages are typed (1 byte) and sized (int32, self-inclusive). A pooler answers
      // the startup with its own BackendKeyData ('K'); a transaction-mode pooler drops
      // NotificationResponses ('A') that reach a server connection no client holds.
      let buffered = Buffer.alloc(0);
      upstream.on('data', (chunk: Buffer) => {
        buffered = Buffer.concat([buffered, chunk]);
        const out: Buffer[] = [];
        while (buffered.length >= 5) {
          const size = 1 + buffered.readInt32BE(1);
          if (buffered.length < size) break;
          const message = Buffer.from(buffered.subarray(0, size));
          if (message[0] === 0x4b && options.fakeBackendKey)
            message.writeInt32BE(message.readInt32BE(5) ^ 0x5a5a, 5);
          if (!(message[0] === 0x41 && options.dropNotifications)) out.push(message);
          buffered = buffered.subarray(size);
        }
        if (!frozen && out.length) client.write(Buffer.concat(out));
      });
    } else {
      forward(upstream, client);
    }
    const close = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const url = new URL(target);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return {
    url: url.toString(),
    /** Stop forwarding on existing connections (silently), and refuse new ones. */
    freeze() {
      frozen = true;
    },
    /** Forward again; connections frozen meanwhile are dropped (their streams lost bytes). */
    thaw() {
      frozen = false;
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
    },
    async close() {
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('PgInvalidationListener', () => {
  it('starts not listening, then listens and reports up', async () => {
    const { listener, events } = listen();
    expect(listener.listening).toBe(false);
    expect(await listener.waitUntilListening()).toBe(true);
    expect(events).toEqual([{ type: 'up' }]);
    expect(listener.backendPid).toBeGreaterThan(0);
    // A dedicated connection, not one of the pool's.
    const { rows } = await db.pool.query<{ application_name: string; query: string }>(
      'SELECT application_name, query FROM pg_stat_activity WHERE pid = $1',
      [listener.backendPid],
    );
    expect(rows[0]?.application_name).toBe('pgsession:listener');
  });

  it('delivers keys from other senders, skips its own, and splits nothing it should not', async () => {
    const { listener, keys } = listen({ ignoreSender: 'me' });
    await listener.waitUntilListening();
    const k1 = hashId('one');
    const k2 = hashId('two');
    await notify('pgsession_invalidate', `other:${k1},${k2}`);
    await notify('pgsession_invalidate', `me:${hashId('mine')}`);
    await notify('pgsession_invalidate', '*');
    await notify('some_other_channel', `other:${hashId('elsewhere')}`);
    await vi.waitFor(() => expect(keys()).toEqual([k1, k2, '*']));
    expect(listener.stats()).toMatchObject({ notifications: 3, ownSkipped: 1 });
  });

  it('listens on a custom channel, quoted exactly', async () => {
    const channel = 'Sessions "prod"; DROP TABLE x';
    const { listener, keys } = listen({ channel });
    await listener.waitUntilListening();
    await notify(channel, `n:${hashId('x')}`);
    await notify(channel.toLowerCase(), `n:${hashId('y')}`);
    await vi.waitFor(() => expect(keys()).toEqual([hashId('x')]));
  });

  it('reports down at once when its backend is terminated, then reconnects', async () => {
    const { listener, events, keys } = listen();
    await listener.waitUntilListening();
    const pid = listener.backendPid!;
    const errorsBefore = errors.length;
    await db.pool.query('SELECT pg_terminate_backend($1)', [pid]);
    await vi.waitFor(() => expect(events.some((e) => e.type === 'down')).toBe(true), { timeout: 2000 });
    await vi.waitFor(() => expect(listener.listening).toBe(true), { timeout: 5000 });
    expect(listener.backendPid).not.toBe(pid);
    expect(events.map((e) => e.type)).toEqual(['up', 'down', 'up']);
    expect(errors.length).toBeGreaterThan(errorsBefore);
    // And it hears notifications again.
    await notify('pgsession_invalidate', `x:${hashId('after')}`);
    await vi.waitFor(() => expect(keys()).toEqual([hashId('after')]));
  });

  it('detects a silently dead connection with its health check', async () => {
    const proxy = await freezableProxy(new URL(db.url));
    try {
      const { listener, events } = listen({ connection: proxy.url });
      await listener.waitUntilListening();
      proxy.freeze();
      const frozenAt = Date.now();
      await vi.waitFor(() => expect(listener.listening).toBe(false), { timeout: 3000 });
      const detectedIn = Date.now() - frozenAt;
      // Interval (200) + timeout (300), plus scheduling slack.
      expect(detectedIn).toBeLessThan(1500);
      expect(events.at(-1)).toEqual({ type: 'down' });
      proxy.thaw();
      await vi.waitFor(() => expect(listener.listening).toBe(true), { timeout: 5000 });
      expect(errors.some((e) => /health check timed out/.test(e.message))).toBe(true);
    } finally {
      await proxy.close();
    }
  });

  it('keeps retrying while the server cannot be reached, without throwing', async () => {
    const proxy = await freezableProxy(new URL(db.url));
    proxy.freeze();
    try {
      const { listener } = listen({ connection: proxy.url, connectTimeoutMs: 200 });
      await new Promise((r) => setTimeout(r, 500));
      expect(listener.listening).toBe(false);
      expect(listener.stats().failures).toBeGreaterThanOrEqual(2);
      proxy.thaw();
      expect(await listener.waitUntilListening(5000)).toBe(true);
    } finally {
      await proxy.close();
    }
  });

  it('never reports up when its notifications do not come back', async () => {
    const proxy = await freezableProxy(new URL(db.url), { dropNotifications: true });
    try {
      const { listener, events } = listen({ connection: proxy.url });
      expect(await listener.waitUntilListening(1500)).toBe(false);
      expect(events).toEqual([]);
      expect(listener.stats().failures).toBeGreaterThanOrEqual(2);
      expect(errors.at(-1)?.message).toMatch(/health check timed out/);
    } finally {
      await proxy.close();
    }
  });

  it('behind a session-mode pooler, proves delivery with pings from a second connection', async () => {
    const proxy = await freezableProxy(new URL(db.url), { fakeBackendKey: true });
    try {
      const { listener, keys } = listen({ connection: proxy.url });
      expect(await listener.waitUntilListening(3000)).toBe(true);
      expect(listener.stats().pingConnection).toBe(true);
      await notify('pgsession_invalidate', `x:${hashId('via pooler')}`);
      await vi.waitFor(() => expect(keys()).toEqual([hashId('via pooler')]));
      // Still healthy after a few checks.
      await new Promise((r) => setTimeout(r, 700));
      expect(listener.listening).toBe(true);
    } finally {
      await proxy.close();
    }
  });

  it('behind a transaction-mode pooler, never reports up (the cache stays bypassed)', async () => {
    const proxy = await freezableProxy(new URL(db.url), { fakeBackendKey: true, dropNotifications: true });
    try {
      const { listener, events } = listen({ connection: proxy.url });
      expect(await listener.waitUntilListening(1500)).toBe(false);
      expect(events).toEqual([]);
      expect(errors.at(-1)?.message).toMatch(/through a pooler: LISTEN needs a session-mode connection/);
    } finally {
      await proxy.close();
    }
  });

  it('close() reports down, ends its connection, and is idempotent', async () => {
    const { listener, events } = listen();
    await listener.waitUntilListening();
    const pid = listener.backendPid;
    await listener.close();
    await listener.close();
    expect(listener.listening).toBe(false);
    expect(events.at(-1)).toEqual({ type: 'down' });
    await vi.waitFor(async () => {
      const { rows } = await db.pool.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid]);
      expect(rows).toHaveLength(0);
    });
    expect(await listener.waitUntilListening(10)).toBe(false);
  });

  it('lets the process exit after close(), and never holds it open by itself', async () => {
    const script = (close: boolean) => `
      import { PgInvalidationListener } from './src/stores/cache/index.ts';
      const l = new PgInvalidationListener({ connection: process.env.URL });
      if (!(await l.waitUntilListening(5000))) { console.log('not listening'); process.exit(3); }
      ${close ? 'await l.close();' : ''}
      console.log('done', process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap').join(','));
    `;
    for (const close of [true, false]) {
      const started = Date.now();
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script(close)], {
        cwd: repoRoot,
        env: { ...process.env, URL: db.url },
      });
      let out = '';
      child.stdout.on('data', (d) => {
        out += d;
      });
      child.stderr.on('data', (d) => {
        out += d;
      });
      const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
      expect(out).toMatch(/^done/);
      expect(code).toBe(0);
      expect(Date.now() - started).toBeLessThan(10_000);
      if (close) expect(out).not.toMatch(/TCP|Timeout/);
    }
  });
});

describe('notifyKeysSql', () => {
  it('announces the rows of a statement, in payloads of bounded size, and only if it commits', async () => {
    const { listener, keys, events } = listen();
    await listener.waitUntilListening();
    const hashed = Array.from({ length: 250 }, (_, i) => hashId(`s${i}`));
    await db.pool.query('CREATE TABLE notify_demo (sid text PRIMARY KEY, id_hashed boolean NOT NULL)');
    await db.pool.query(
      'INSERT INTO notify_demo SELECT unnest($1::text[]), true UNION ALL SELECT $2, false',
      [hashed, 'raw-session-id'],
    );
    const sql = (
      where: string,
    ) => `WITH gone AS (DELETE FROM notify_demo WHERE ${where} RETURNING sid, id_hashed),
      n AS (${notifyKeysSql('gone', { channel: 'pgsession_invalidate', nodeId: 'node-a' })})
      SELECT (SELECT count(*) FROM gone)::int AS deleted, (SELECT count(*) FROM n)::int AS payloads`;

    // Rolled back: nothing is announced.
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(sql('true'));
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
    const { rows } = await db.pool.query(sql('true'));
    expect(rows[0]).toEqual({ deleted: 251, payloads: 3 });
    await vi.waitFor(() => expect(keys()).toHaveLength(251));
    // The raw id never leaves the database: its row is announced as "everything".
    expect(new Set(keys())).toEqual(new Set([...hashed, '*']));
    expect(events.filter((e) => e.type === 'keys')).toHaveLength(3);

    // No rows, no notification.
    const none = await db.pool.query(sql('true'));
    expect(none.rows[0]).toEqual({ deleted: 0, payloads: 0 });
  });

  it('encodePayloads fits what PostgreSQL accepts', async () => {
    const keys = Array.from({ length: 400 }, (_, i) => hashId(`p${i}`));
    const { listener, keys: got } = listen();
    await listener.waitUntilListening();
    for (const payload of encodePayloads('n', keys)) await notify('pgsession_invalidate', payload);
    await vi.waitFor(() => expect(got()).toEqual(keys));
  });
});
