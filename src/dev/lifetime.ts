import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import path from 'node:path';
import { sleep } from './util.js';

/*
 * Who uses the embedded server: a cross-process lock serialising start and stop, and a
 * reference count (one file per open handle) so the server stops with its last user.
 */

const LOCK_WAIT_MS = 200_000;
// Longer than any legitimate hold (initdb + start with retries), so a lock whose pid was
// recycled by an unrelated process is eventually broken.
const LOCK_STALE_MS = 180_000;

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

export interface Lock {
  release(): Promise<void>;
}

/**
 * Exclusive lock through `open(…, 'wx')`. A lock whose holder died is broken; the re-read just
 * before unlinking narrows (but cannot close) the window in which two waiters both break it.
 */
export async function acquireLock(file: string): Promise<Lock> {
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

/** One reference: a file named `<pid>-<token>` in the clients folder. */
export interface ClientFile {
  path: string;
  token: string;
}

export async function registerClient(dir: string): Promise<ClientFile> {
  await fs.mkdir(dir, { recursive: true });
  await liveClients(dir); // prune files of dead processes while we are here
  const token = randomBytes(8).toString('hex');
  const file = path.join(dir, `${process.pid}-${token}`);
  await fs.writeFile(
    file,
    JSON.stringify({ pid: process.pid, at: new Date(), argv: process.argv.slice(1) }),
    {
      flag: 'wx',
    },
  );
  openClientTokens.add(token);
  return { path: file, token };
}

export async function unregisterClient(client: ClientFile): Promise<void> {
  openClientTokens.delete(client.token);
  await fs.rm(client.path, { force: true });
}

/** Counts references held by live processes, deleting those of dead ones. */
export async function liveClients(dir: string): Promise<number> {
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
 * program, so a pid recycled by an unrelated process does not look like our server; with
 * `uid`, it must also run as that user (root signals only processes of the server user).
 */
export async function isProcessAlive(pid: number, name?: string, uid?: number): Promise<boolean> {
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
  if (uid !== undefined) {
    const owner = (await fs.stat(`/proc/${pid}`).catch(() => undefined))?.uid;
    if (owner !== uid) return false;
  }
  return name === undefined || match[1]!.startsWith(name);
}
