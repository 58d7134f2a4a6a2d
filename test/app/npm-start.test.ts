/**
 * `npm start` is `node scripts/start.mjs`: the demo with the environment of
 * scripts/start-env.json on every platform (cmd.exe has no `NAME=value command`), stopped
 * gracefully by one Ctrl-C.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from '../helpers/db.js';
import { migratedDatabase, TEST_SECRET } from './harness.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
let db: TestDatabase;
let launcher: ChildProcess | undefined;

beforeAll(async () => {
  db = await migratedDatabase();
});
afterAll(async () => {
  if (launcher?.pid && launcher.exitCode === null) process.kill(-launcher.pid, 'SIGKILL');
  await db?.drop();
});

/** The pids of a process's children (Linux). */
function childrenOf(pid: number): number[] {
  return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .map(Number);
}

describe('npm start (scripts/start.mjs)', () => {
  it.runIf(process.platform === 'linux')(
    'runs the demo with the allocator setting; one Ctrl-C stops it gracefully, exit 0',
    async () => {
      expect(JSON.parse(readFileSync(`${root}package.json`, 'utf8')).scripts.start).toBe(
        'node scripts/start.mjs',
      );
      const { MALLOC_MMAP_THRESHOLD_: _unset, ...env } = process.env;
      // Its own process group, as a shell in a terminal gives the foreground job.
      launcher = spawn(process.execPath, ['scripts/start.mjs'], {
        cwd: root,
        env: {
          ...env,
          PORT: '0',
          HOST: '127.0.0.1',
          LOG_LEVEL: 'info',
          DATABASE_URL: db.url,
          SESSION_SECRET: TEST_SECRET,
          NODE_ENV: 'development',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      });
      let out = '';
      launcher.stdout!.on('data', (d) => {
        out += d;
      });
      launcher.stderr!.on('data', (d) => {
        out += d;
      });
      const exited = once(launcher, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
      const deadline = Date.now() + 60_000;
      let port: number | undefined;
      while (!port && Date.now() < deadline) {
        port = Number(/listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out)?.[1]) || undefined;
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(port, out).toBeDefined();

      const [app] = childrenOf(launcher.pid!);
      expect(app).toBeDefined();
      const environ = readFileSync(`/proc/${app}/environ`, 'latin1').split('\0');
      expect(environ).toContain('MALLOC_MMAP_THRESHOLD_=4194304');
      expect((await fetch(`http://127.0.0.1:${port}/login`)).status).toBe(200);

      // What a terminal's Ctrl-C does: SIGINT to the foreground process group.
      process.kill(-launcher.pid!, 'SIGINT');
      const [code] = await exited;
      expect(code, out).toBe(0);
      expect(out).toMatch(/shutting down/);
      expect(out).not.toMatch(/second signal/);
      expect(out).toMatch(/stopped/);
    },
    90_000,
  );
});
