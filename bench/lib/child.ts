import { type ChildProcess, fork, spawnSync } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { CONFIG_ENV, configName, type ServerConfig } from './config.js';
import { request } from './http.js';

const SERVER = fileURLToPath(new URL('../server.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** A benchmark server running in its own process. */
export interface ServerProcess {
  readonly config: ServerConfig;
  readonly pid: number;
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  /** Whether the store has the per-process cache in front of it (pgsession with its default store). */
  readonly cacheActive: boolean;
  stats(): Promise<ServerStats>;
  /** Graceful stop (closes the pool and listener), killed after 5 s; resolves when it has exited. */
  stop(): Promise<void>;
}

/** What `GET /__stats` answers. */
export interface ServerStats {
  config: string;
  cacheActive: boolean;
  allStatements: number;
  /** Of which not SELECTs (touches, saves). */
  writeStatements: number;
  poolStatements: number;
  /** Connections this process opened so far. */
  connects: number;
  /** `GET /dashboard` requests received so far. */
  dashboardRequests: number;
  /** CPU time (user + system) this process used so far, µs. */
  cpuMicros: number;
  poolTotal: number;
  memory: { rss: number; heapUsed: number; heapTotal: number; external: number };
  cache: Record<string, unknown> | null;
  /** Sessions the floor holds (floor layers only). */
  floorSessions: number | null;
}

const children = new Set<ChildProcess>();

/** The CPU servers are pinned to (`taskset`), or undefined on a one-core machine. */
export const SERVER_CPU: string | undefined = os.cpus().length > 1 ? '1' : undefined;
/** The CPU the load generator runs on. */
export const LOAD_CPU: string | undefined = os.cpus().length > 1 ? '0' : undefined;

/** Kill every child still running (on the runner's exit or interruption). */
export function killAllServers(): void {
  for (const child of children) child.kill('SIGKILL');
}

/** How {@link startServer} runs the child beyond its configuration (the GC tool's needs). */
export interface StartOptions {
  /** Extra Node/V8 flags (`--trace-gc-nvp`, `--no-allocation-site-pretenuring`…). */
  nodeFlags?: readonly string[];
  /** Receives the child's stdout (where V8's traces go) instead of this process's stdout. */
  onStdout?: (text: string) => void;
  timeoutMs?: number;
}

/**
 * Start `bench/server.ts` in a child process (Node with tsx as loader, `--expose-gc`), and wait
 * until it listens. Start-up failures reject with the child's stderr tail.
 */
export async function startServer(config: ServerConfig, options: StartOptions = {}): Promise<ServerProcess> {
  const { nodeFlags = [], onStdout, timeoutMs = 60_000 } = options;
  const child = fork(SERVER, [], {
    cwd: ROOT,
    // BENCH_CPU_PROF=<dir>: write a V8 CPU profile of every server into <dir> (for finding hot spots).
    execArgv: [
      '--import',
      'tsx',
      '--expose-gc',
      ...(process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : []),
      ...nodeFlags,
    ],
    env: { ...process.env, [CONFIG_ENV]: JSON.stringify(config), NODE_ENV: 'production' },
    stdio: ['ignore', onStdout ? 'pipe' : 'inherit', 'pipe', 'ipc'],
  });
  if (onStdout) child.stdout?.on('data', (chunk: Buffer) => onStdout(chunk.toString()));
  children.add(child);
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    const text = chunk.toString();
    stderr = (stderr + text).slice(-4000);
    process.stderr.write(text.replace(/^(?=.)/gm, `  [server ${configName(config)}] `));
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  void exited.then(() => children.delete(child));

  const ready = await new Promise<{ port: number; cacheActive: boolean }>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(`bench server (${configName(config)}) did not start within ${timeoutMs} ms\n${stderr}`),
      );
    }, timeoutMs);
    child.on('message', (message: { ready?: boolean; port?: number; cacheActive?: boolean }) => {
      if (message?.ready && typeof message.port === 'number') {
        clearTimeout(timer);
        resolve({ port: message.port, cacheActive: message.cacheActive === true });
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(
        new Error(
          `bench server (${configName(config)}) exited during start-up (${code ?? signal})\n${stderr}`,
        ),
      );
    });
  });
  // One core for the server, the other for the load generator (and PostgreSQL): `-a` pins every
  // thread it has now, and threads started later inherit the mask.
  if (SERVER_CPU !== undefined && child.pid) {
    const pinned = spawnSync('taskset', ['-a', '-cp', SERVER_CPU, String(child.pid)], { encoding: 'utf8' });
    if (pinned.status !== 0) throw new Error(`taskset failed: ${pinned.stderr || pinned.error}`);
  }
  const url = `http://127.0.0.1:${ready.port}`;
  return {
    config,
    pid: child.pid ?? -1,
    url,
    cacheActive: ready.cacheActive,
    async stats() {
      const res = await request(`${url}/__stats`);
      return JSON.parse(res.body) as ServerStats;
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      if (child.connected) child.send('stop');
      else child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
