import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';

/** A server started as its own process (the demo app, the seed's app). */
export interface ChildServer {
  child: ChildProcess;
  /** The URL from its "listening on http://127.0.0.1:<port>" line. */
  url: string;
  /** Everything it printed so far (stdout and stderr). */
  output(): string;
  /** Send `signal` (default SIGTERM) and resolve with the exit code; no-op once it has exited. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface StartOptions {
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** Named in errors. */
  name?: string;
  timeoutMs?: number;
  /**
   * Own process group. `tsx` runs the app in a grandchild: killing the group (`process.kill(-pid)`)
   * is the only forced clean-up that reaches it.
   */
  detached?: boolean;
  /** Called at once with the process, so a clean-up can reach it even if it never listens. */
  onSpawn?: (child: ChildProcess) => void;
}

const LISTENING = /listening on (http:\/\/[^\s/]+)/;

/**
 * Start `command args` and resolve once it prints its "listening on" line. Rejects with its
 * output if it exits first or does not listen in time (and kills it then, so no orphan is left).
 */
export function startServer(command: string, args: string[], options: StartOptions): Promise<ChildServer> {
  const name = options.name ?? 'server';
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: options.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  child.stderr!.on('data', (d) => {
    out += d;
  });
  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
    const exited = once(child, 'exit');
    child.kill(signal);
    const [code] = (await exited) as [number | null];
    return code;
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name} did not start:\n${out}`));
    }, options.timeoutMs ?? 45_000);
    const onData = () => {
      const m = LISTENING.exec(out);
      if (!m) return;
      clearTimeout(timer);
      child.stdout!.off('data', onData);
      child.removeListener('exit', onExit);
      resolve({ child, url: m[1]!, output: () => out, stop });
    };
    const onExit = (code: number | null) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code} before listening:\n${out}`));
    };
    child.stdout!.on('data', onData);
    child.once('exit', onExit);
  });
}

/** Run `command args` to completion (killed after `timeoutMs`): its exit code and output. */
export async function runToExit(
  command: string,
  args: string[],
  options: StartOptions,
): Promise<{ code: number | null; output: string }> {
  const child = spawn(command, args, { cwd: options.cwd, env: options.env });
  let output = '';
  child.stdout.on('data', (d) => {
    output += d;
  });
  child.stderr.on('data', (d) => {
    output += d;
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 45_000);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  return { code, output };
}

/** A port that was free a moment ago (for a server that must come back on the same one). */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
