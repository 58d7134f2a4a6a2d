import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as net from 'node:net';
import path from 'node:path';
import pg from 'pg';
import { quoteIdent } from '../db/sql.js';
import type { Binaries } from './binaries.js';
import { isProcessAlive } from './lifetime.js';
import { type RunAs, readOwnedFile, SERVER_USER } from './privileges.js';
import { errorMessage, execFileAsync, exists, readJson, sleep } from './util.js';

/* The server process: starting it detached, finding it running, stopping it. */

const DEFAULT_PORTS = Array.from({ length: 10 }, (_, i) => 54329 + i);
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 30_000;

export interface PostmasterInfo {
  pid: number;
  port: number;
}

/**
 * Parses `postmaster.pid`, which PostgreSQL writes while running and removes on clean exit.
 * As root (`runAs` given) it is read like any file of the server user's folder: no symlink,
 * no hard link, owned by that user.
 */
export async function readPostmasterPid(dataDir: string, runAs?: RunAs): Promise<PostmasterInfo | undefined> {
  const file = path.join(dataDir, 'postmaster.pid');
  const text = await (runAs ? readOwnedFile(file, runAs.uid) : fs.readFile(file, 'utf8')).catch(
    () => undefined,
  );
  if (!text) return undefined;
  const lines = text.split('\n');
  const pid = Number.parseInt(lines[0] ?? '', 10);
  const port = Number.parseInt(lines[3] ?? '', 10);
  return Number.isInteger(pid) && pid > 0 ? { pid, port } : undefined;
}

/** Whether `pid` is this data dir's server: alive, a postgres program, and (as root) the server user's. */
function isServer(pid: number, runAs: RunAs | undefined): Promise<boolean> {
  return isProcessAlive(pid, 'postgres', runAs?.uid);
}

/** The server of this data dir if it is alive and accepts connections; stale pid files are removed. */
export async function findRunningServer(
  dataDir: string,
  password: () => Promise<string>,
  runAs: RunAs | undefined,
): Promise<PostmasterInfo | undefined> {
  const info = await readPostmasterPid(dataDir, runAs);
  if (!info) return undefined;
  if (!(await isServer(info.pid, runAs))) {
    // Left by a killed server. PostgreSQL removes it itself unless the pid was recycled.
    await fs.rm(path.join(dataDir, 'postmaster.pid'), { force: true });
    return undefined;
  }
  const secret = await password();
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      await ping(info.port, secret);
      return info;
    } catch (err) {
      if (Date.now() > deadline || !(await isServer(info.pid, runAs))) {
        throw new Error(
          `PostgreSQL (pid ${info.pid}) is running in ${dataDir} but does not accept connections on ` +
            `port ${info.port}: ${errorMessage(err)}. Stop it (kill ${info.pid}) and try again.`,
        );
      }
      await sleep(200);
    }
  }
}

/** Where the server's log and last port live (beside the requested data dir). */
export interface ServerFiles {
  state: string;
  log: string;
}

export async function startServer(
  bin: Binaries,
  dataDir: string,
  password: string,
  files: ServerFiles,
  runAs: RunAs | undefined,
  requestedPort: number | undefined,
  log: (l: string) => void,
): Promise<PostmasterInfo> {
  const previous = (await readJson(files.state)) as { port?: unknown } | undefined;
  const preferred = typeof previous?.port === 'number' ? [previous.port] : [];
  const tried = new Set<number>();
  let lastError: Error | undefined;
  for (let attempt = 1; attempt <= 4; attempt++) {
    const port = requestedPort ?? (await choosePort([...preferred, ...DEFAULT_PORTS], tried));
    tried.add(port);
    log(`Starting PostgreSQL on 127.0.0.1:${port} (data: ${dataDir}, log: ${files.log})`);
    const result = await spawnServer(bin, dataDir, port, password, files.log, runAs, log);
    if ('pid' in result) return { pid: result.pid, port };
    lastError = new Error(`PostgreSQL failed to start on port ${port}. Server log:\n${result.logTail}`);
    const portTaken = /could not bind|Address already in use|could not create any TCP\/IP sockets/i.test(
      result.logTail,
    );
    // After a kill -9 the old server's children may still hold its shared memory for a moment.
    const transient = /pre-existing shared memory block|lock file .* already exists/i.test(result.logTail);
    if (!(portTaken && requestedPort === undefined) && !transient) break;
    if (transient) await sleep(1000);
  }
  throw lastError ?? new Error('PostgreSQL failed to start');
}

type SpawnResult = { pid: number } | { logTail: string };

async function spawnServer(
  bin: Binaries,
  dataDir: string,
  port: number,
  password: string,
  logFile: string,
  runAs: RunAs | undefined,
  log: (l: string) => void,
): Promise<SpawnResult> {
  // A log that only grows would eventually fill the disk of a long-lived dev folder.
  const size = (await fs.stat(logFile).catch(() => undefined))?.size ?? 0;
  const logHandle = await fs.open(logFile, size > 10_000_000 ? 'w' : 'a', 0o644);
  const offset = size > 10_000_000 ? 0 : size;
  let child: ChildProcess;
  try {
    // Detached (own session, output to a file): the server must survive the exit of the process
    // that started it, and a Ctrl+C in its terminal, while other processes still use it.
    child = spawn(
      bin.postgres,
      ['-D', dataDir, '-p', String(port), '-h', '127.0.0.1', '-c', 'unix_socket_directories='],
      { ...runAs, env: serverEnv(), detached: true, stdio: ['ignore', logHandle.fd, logHandle.fd] },
    );
  } finally {
    await logHandle.close();
  }
  let exited = false;
  let spawnError: Error | undefined;
  child.once('exit', () => {
    exited = true;
  });
  child.once('error', (err) => {
    spawnError = err;
  });
  let logOffset = offset;
  const readNewLog = async () => {
    const fh = await fs.open(logFile, 'r');
    try {
      const { size: end } = await fh.stat();
      if (end <= logOffset) return;
      const buf = Buffer.alloc(end - logOffset);
      await fh.read(buf, 0, buf.length, logOffset);
      logOffset = end;
      for (const line of buf.toString('utf8').split('\n')) if (line.trim()) log(line);
    } finally {
      await fh.close();
    }
  };
  const tail = async () => {
    const text = await fs.readFile(logFile, 'utf8').catch(() => '');
    return text.slice(offset).trim().split('\n').slice(-30).join('\n');
  };

  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    await sleep(100);
    await readNewLog().catch(() => {});
    if (spawnError) return { logTail: `${errorMessage(spawnError)}\n${await tail()}` };
    if (exited) return { logTail: await tail() };
    try {
      await ping(port, password);
      child.unref();
      return { pid: child.pid ?? (await readPostmasterPid(dataDir, runAs))?.pid ?? 0 };
    } catch {
      if (Date.now() > deadline) {
        child.kill('SIGQUIT');
        return {
          logTail: `Timed out after ${START_TIMEOUT_MS / 1000}s waiting for the server.\n${await tail()}`,
        };
      }
    }
  }
}

/** Fast shutdown of the server running in `dataDir` (if any), waiting until it has exited. */
export async function shutdownServer(
  dataDir: string,
  runAs: RunAs | undefined,
  pgCtl: () => Promise<string>,
  log: (l: string) => void,
): Promise<void> {
  const info = await readPostmasterPid(dataDir, runAs);
  if (!info || !(await isServer(info.pid, runAs))) return;
  log(`Stopping PostgreSQL (pid ${info.pid})`);
  const stopped = async () =>
    !(await isProcessAlive(info.pid, 'postgres')) || !(await exists(path.join(dataDir, 'postmaster.pid')));
  const waitStopped = async (ms: number) => {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      if (await stopped()) return true;
      await sleep(50);
    }
    return stopped();
  };
  if (process.platform === 'win32') {
    // No POSIX signals; pg_ctl talks to the server through its own mechanism.
    await execFileAsync(await pgCtl(), ['stop', '-D', dataDir, '-m', 'fast', '-w']).catch(() => {});
    if (await waitStopped(STOP_TIMEOUT_MS)) return;
  } else {
    signal(info.pid, 'SIGINT'); // "fast" shutdown: roll back open transactions, checkpoint, exit
    if (await waitStopped(STOP_TIMEOUT_MS)) return;
    signal(info.pid, 'SIGQUIT'); // "immediate": crash-recovery on next start, but no data loss
    if (await waitStopped(5_000)) return;
  }
  throw new Error(`PostgreSQL (pid ${info.pid}) did not stop within ${STOP_TIMEOUT_MS / 1000}s`);
}

function signal(pid: number, sig: NodeJS.Signals) {
  try {
    process.kill(pid, sig);
  } catch {
    // Already gone.
  }
}

async function choosePort(candidates: number[], exclude: Set<number>): Promise<number> {
  for (const port of candidates) {
    if (!exclude.has(port) && (await isPortFree(port))) return port;
  }
  return osFreePort();
}

function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => resolve(true)));
  });
}

function osFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen({ port: 0, host: '127.0.0.1', exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port ? resolve(port) : reject(new Error('The OS did not assign a free port'))));
    });
  });
}

/** Environment for initdb/postgres: English messages (we parse some) and no PG* overrides. */
export function serverEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('PG') && !key.startsWith('LC_') && key !== 'LANG') env[key] = value;
  }
  env.LC_ALL = 'C';
  return env;
}

function client(port: number, password: string, database: string, timeoutMs: number): pg.Client {
  const c = new pg.Client({
    host: '127.0.0.1',
    port,
    user: SERVER_USER,
    password,
    database,
    connectionTimeoutMillis: timeoutMs,
    application_name: 'pgsession-embedded',
  });
  c.on('error', () => {});
  return c;
}

async function ping(port: number, password: string) {
  const c = client(port, password, 'postgres', 2_000);
  try {
    await c.connect();
    await c.query('SELECT 1');
  } finally {
    await c.end().catch(() => {});
  }
}

/** Creates `database` if it does not exist yet. */
export async function ensureDatabase(port: number, password: string, database: string): Promise<void> {
  const c = client(port, password, 'postgres', 5_000);
  try {
    await c.connect();
    const found = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (found.rowCount === 0) {
      await c.query(`CREATE DATABASE ${quoteIdent(database)}`).catch((err: { code?: string }) => {
        if (err.code !== '42P04') throw err; // created concurrently by someone else
      });
    }
  } finally {
    await c.end().catch(() => {});
  }
}
