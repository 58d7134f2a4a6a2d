/**
 * A PostgreSQL 15 primary and a streaming standby (`pg_basebackup -R`) built by a test with
 * Debian's binaries, on free loopback ports, in a temporary folder it removes. As root the
 * servers run as the `postgres` system user (PostgreSQL refuses root).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, chownSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from './support.js';

export const PG_BIN = '/usr/lib/postgresql/15/bin';

interface Owner {
  uid: number;
  gid: number;
}

function owner(): Owner | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  return { uid, gid };
}

export interface Server {
  port: number;
  dir: string;
  url(database?: string): string;
  /** The postmaster's pid (first line of postmaster.pid). */
  pid(): number;
}

export interface ReplicatedCluster {
  primary: Server;
  standby: Server;
  /** `pg_ctl promote` on the standby, waiting until it accepts writes. */
  promote(): void;
  /** Stop both servers (immediate) and remove the folder. */
  destroy(): void;
}

/**
 * Build the pair. `synchronous`: `synchronous_standby_names = 'standby1'` and
 * `synchronous_commit = on`, so a COMMIT is acknowledged only once the standby has it.
 */
export async function startReplicatedCluster(options: { synchronous: boolean }): Promise<ReplicatedCluster> {
  const who = owner();
  const root = mkdtempSync(path.join(tmpdir(), 'pgsession-failover-'));
  if (who) chownSync(root, who.uid, who.gid);
  const run = (bin: string, args: string[]) => {
    const r = spawnSync(path.join(PG_BIN, bin), args, {
      cwd: root,
      encoding: 'utf8',
      ...(who ? { uid: who.uid, gid: who.gid } : {}),
      env: { ...process.env, LC_ALL: 'C', PGUSER: 'postgres' },
      timeout: 60_000,
    });
    if (r.status !== 0) throw new Error(`${bin} ${args.join(' ')} failed: ${r.stderr}${r.stdout}`);
    return r.stdout;
  };
  const server = (name: string, port: number): Server => {
    const dir = path.join(root, name);
    return {
      port,
      dir,
      url: (database = 'postgres') => `postgres://postgres@127.0.0.1:${port}/${database}`,
      pid: () => Number(readFileSync(path.join(dir, 'postmaster.pid'), 'utf8').split('\n')[0]),
    };
  };
  const primary = server('primary', await freePort());
  const standby = server('standby', await freePort());
  const conf = (s: Server, lines: string[]) =>
    appendFileSync(path.join(s.dir, 'postgresql.conf'), `${lines.join('\n')}\n`);
  const start = (s: Server) =>
    run('pg_ctl', [
      '-D',
      s.dir,
      '-l',
      path.join(root, `${path.basename(s.dir)}.log`),
      '-w',
      '-t',
      '30',
      'start',
    ]);

  try {
    run('initdb', ['-D', primary.dir, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8']);
    conf(primary, [
      `port = ${primary.port}`,
      "listen_addresses = '127.0.0.1'",
      `unix_socket_directories = '${root}'`,
      'wal_level = replica',
      'max_wal_senders = 5',
      'max_connections = 100',
      'shared_buffers = 32MB',
      // A test cluster: the data need not survive the machine, only a server crash.
      'fsync = off',
      ...(options.synchronous ? ["synchronous_standby_names = 'standby1'", 'synchronous_commit = on'] : []),
    ]);
    start(primary);
    run('pg_basebackup', [
      '-h',
      '127.0.0.1',
      '-p',
      String(primary.port),
      '-U',
      'postgres',
      '-D',
      standby.dir,
      '-R',
      '-X',
      'stream',
    ]);
    appendFileSync(
      path.join(standby.dir, 'postgresql.auto.conf'),
      `primary_conninfo = 'host=127.0.0.1 port=${primary.port} user=postgres application_name=standby1'\n`,
    );
    conf(standby, [`port = ${standby.port}`]);
    start(standby);
  } catch (err) {
    spawnSync(path.join(PG_BIN, 'pg_ctl'), ['-D', primary.dir, '-m', 'immediate', 'stop'], {
      ...(who ?? {}),
    });
    rmSync(root, { recursive: true, force: true });
    throw err;
  }
  return {
    primary,
    standby,
    promote: () => run('pg_ctl', ['-D', standby.dir, '-w', '-t', '30', 'promote']),
    destroy: () => {
      for (const s of [primary, standby]) {
        spawnSync(path.join(PG_BIN, 'pg_ctl'), ['-D', s.dir, '-m', 'immediate', 'stop'], {
          ...(who ? { uid: who.uid, gid: who.gid } : {}),
          timeout: 30_000,
        });
      }
      rmSync(root, { recursive: true, force: true });
    },
  };
}
