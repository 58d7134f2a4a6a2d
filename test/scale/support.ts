/**
 * What the scale tests build around the test database: a real PgBouncer (Debian's
 * /usr/sbin/pgbouncer) on a free loopback port, and a TCP proxy a test can point elsewhere.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

export const PGBOUNCER = '/usr/sbin/pgbouncer';

/** A free loopback port (closed again at once). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export interface PgBouncer {
  port: number;
  /** `url` with host and port replaced by the pooler's. */
  through(url: string): string;
  log(): string;
  stop(): Promise<void>;
}

/** Wait until something accepts connections on `port`. */
async function waitForPort(port: number, timeoutMs: number, child?: ChildProcess): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (child && child.exitCode !== null) throw new Error(`process exited with ${child.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`nothing listening on ${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Start PgBouncer in `mode` in front of the server of `upstreamUrl` (every database, the URL's
 * user and password). No `ignore_startup_parameters` beyond its defaults: pgsession must not
 * send any it refuses. Runs as `nobody` when the test runs as root (PgBouncer refuses root).
 */
export async function startPgBouncer(
  upstreamUrl: string,
  mode: 'session' | 'transaction',
  settings: Record<string, string | number> = {},
): Promise<PgBouncer> {
  const upstream = new URL(upstreamUrl);
  const dir = mkdtempSync(path.join(tmpdir(), 'pgsession-pgbouncer-'));
  const port = await freePort();
  const user = decodeURIComponent(upstream.username || 'postgres');
  const password = decodeURIComponent(upstream.password);
  const q = (s: string) => `"${s.replaceAll('"', '""')}"`;
  writeFileSync(path.join(dir, 'userlist.txt'), `${q(user)} ${q(password)}\n`, { mode: 0o644 });
  writeFileSync(path.join(dir, 'pgbouncer.log'), '');
  const ini = {
    listen_addr: '127.0.0.1',
    listen_port: port,
    unix_socket_dir: '',
    auth_type: 'trust',
    auth_file: path.join(dir, 'userlist.txt'),
    pool_mode: mode,
    max_client_conn: 500,
    default_pool_size: 20,
    logfile: path.join(dir, 'pgbouncer.log'),
    // Retry a refused server login after 1 s instead of 15 s (docs/operations.md).
    server_login_retry: 1,
    ...settings,
  };
  const config = [
    '[databases]',
    `* = host=${upstream.hostname} port=${upstream.port || 5432}${password ? ` password=${password}` : ''}`,
    '[pgbouncer]',
    ...Object.entries(ini).map(([k, v]) => `${k} = ${v}`),
    '',
  ].join('\n');
  writeFileSync(path.join(dir, 'pgbouncer.ini'), config, { mode: 0o644 });
  chmodSync(dir, 0o755);
  const asRoot = process.getuid?.() === 0;
  if (asRoot) chownSync(path.join(dir, 'pgbouncer.log'), 65534, 65534);
  const child = spawn(PGBOUNCER, [...(asRoot ? ['-u', 'nobody'] : []), path.join(dir, 'pgbouncer.ini')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  child.stderr!.on('data', (d) => {
    out += d;
  });
  const readLog = () => {
    try {
      return readFileSync(path.join(dir, 'pgbouncer.log'), 'utf8');
    } catch {
      return '';
    }
  };
  try {
    await waitForPort(port, 10_000, child);
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`pgbouncer did not start: ${(err as Error).message}\n${out}`);
  }
  return {
    port,
    through(url: string) {
      const u = new URL(url);
      u.hostname = '127.0.0.1';
      u.port = String(port);
      return u.toString();
    },
    log: () => `${out}${readLog()}`,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGINT');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A TCP proxy on a loopback port whose target can be switched; `down()` refuses and cuts everyone. */
export interface TcpProxy {
  port: number;
  /** Send new connections to `port`, and cut the current ones. */
  switchTo(port: number): void;
  /** Cut every connection and refuse new ones until `switchTo`. */
  down(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number | null, port = 0): Promise<TcpProxy> {
  let target = targetPort;
  const sockets = new Set<net.Socket>();
  const cut = () => {
    for (const s of sockets) s.destroy();
    sockets.clear();
  };
  const server = net.createServer((client) => {
    if (target === null) {
      client.destroy();
      return;
    }
    const upstream = net.connect(target, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    switchTo(p: number) {
      target = p;
      cut();
    },
    down() {
      target = null;
      cut();
    },
    close: async () => {
      cut();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
