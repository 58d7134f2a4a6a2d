/**
 * What the framework tests share: one production build of the Next.js app per run (whichever
 * test file needs it first builds it, under a lock; the others wait and reuse it), the app
 * started with `next start`, and Chromium launched as the guide says (Debian's, never a
 * downloaded one).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runToExit } from '../helpers/process.js';

export { launchChromium } from '../helpers/browser.js';
export { freePort } from '../helpers/process.js';

export const root = fileURLToPath(new URL('../../', import.meta.url));
export const nextApp = path.join(root, 'test/frameworks/nextjs-app');
const nextBin = path.join(root, 'node_modules/.bin/next');

/** Next's telemetry off: no build or start of these tests may reach the network. */
export const NEXT_ENV = { NEXT_TELEMETRY_DISABLED: '1' };

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && !e.parentPath.includes(`${path.sep}.next`) && e.name !== 'next-env.d.ts')
    .map((e) => path.join(e.parentPath, e.name))
    .sort();
}

/** What the build depends on: the app's files, Next's version and the built pgsession it loads. */
function buildKey(): string {
  const hash = createHash('sha256');
  for (const f of files(nextApp)) hash.update(f).update(readFileSync(f));
  hash.update(readFileSync(path.join(root, 'node_modules/next/package.json')));
  for (const f of ['index.js', 'web.js']) hash.update(readFileSync(path.join(root, 'dist', f)));
  return hash.digest('hex');
}

/** dist/ is older than the sources: pgsession must be built first (CI builds before testing). */
function distIsStale(): boolean {
  const built = path.join(root, 'dist/web.js');
  if (!existsSync(built)) return true;
  const newest = Math.max(
    ...readdirSync(path.join(root, 'src'), { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => statSync(path.join(e.parentPath, e.name)).mtimeMs),
  );
  return statSync(built).mtimeMs < newest;
}

async function withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const lock = path.join(root, 'node_modules/.cache', `${name}.lock`);
  mkdirSync(path.dirname(lock), { recursive: true });
  const deadline = Date.now() + 300_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      // A lock older than the deadline is from a run that was killed.
      if (Date.now() > deadline || Date.now() - statSync(lock).mtimeMs > 300_000)
        rmSync(lock, { recursive: true, force: true });
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

/** pgsession's dist/, built when older than src/ (the apps load pgsession by its package name). */
export function ensureDist(): Promise<void> {
  return withLock('pgsession-dist-build', async () => {
    if (!distIsStale()) return;
    const built = await runToExit('npm', ['run', 'build'], {
      cwd: root,
      env: process.env,
      timeoutMs: 300_000,
    });
    if (built.code !== 0) throw new Error(`npm run build failed:\n${built.output}`);
  });
}

/**
 * The code block of `page` marked `<!-- <kind>: <name> <file> -->` (kind `example` for a guide
 * the doc test runs, `file` for a file of a multi-file app): what the framework apps must be.
 */
export async function docFile(page: string, name: string, file: string, kind = 'example'): Promise<string> {
  const text = readFileSync(path.join(root, page), 'utf8');
  const marker = `<!-- ${kind}: ${name} ${file} -->`;
  const at = text.indexOf(marker);
  if (at < 0) throw new Error(`${page}: no "${marker}" block`);
  const block = /```\w*\n([\s\S]*?)\n```/.exec(text.slice(at));
  if (!block) throw new Error(`${page}: no code block after "${marker}"`);
  return block[1]!;
}

/**
 * `next build` of the app, once: reused while the app, Next and pgsession's dist/ are unchanged.
 * Builds pgsession first when dist/ is older than src/ (the app loads pgsession by its name).
 */
export function buildNextApp(): Promise<void> {
  return withLock('pgsession-next-build', async () => {
    if (distIsStale()) {
      const built = await runToExit('npm', ['run', 'build'], {
        cwd: root,
        env: process.env,
        timeoutMs: 300_000,
      });
      if (built.code !== 0) throw new Error(`npm run build failed:\n${built.output}`);
    }
    const stamp = path.join(nextApp, '.next/pgsession-build-key');
    const key = buildKey();
    if (existsSync(stamp) && readFileSync(stamp, 'utf8') === key) return;
    const result = await runToExit(nextBin, ['build'], {
      cwd: nextApp,
      env: { ...process.env, ...NEXT_ENV, NODE_ENV: 'production' },
      timeoutMs: 300_000,
    });
    if (result.code !== 0) throw new Error(`next build failed (${result.code}):\n${result.output}`);
    writeFileSync(stamp, key);
  });
}

export interface NextServer {
  url: string;
  child: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}

/** `next start` on 127.0.0.1:`port`, with `env` (DATABASE_URL, SESSION_SECRET…); resolves once ready. */
export async function startNext(port: number, env: Record<string, string>): Promise<NextServer> {
  const child = spawn(nextBin, ['start', '-p', String(port), '-H', '127.0.0.1'], {
    cwd: nextApp,
    env: { ...process.env, ...NEXT_ENV, NODE_ENV: 'production', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  child.stderr!.on('data', (d) => {
    out += d;
  });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    try {
      process.kill(-child.pid!, 'SIGTERM');
    } catch {
      return;
    }
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // Gone.
      }
    }, 10_000);
    await exited;
    clearTimeout(timer);
  };
  const deadline = Date.now() + 60_000;
  while (!/Ready in/.test(out)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`next start did not get ready:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { url: `http://127.0.0.1:${port}`, child, output: () => out, stop };
}
