/**
 * The examples in the docs run, so they cannot rot. A code block preceded by
 * `<!-- example: <name> -->` (in docs/*.md and README.md) is extracted, its `pgsession` imports
 * pointed at the sources, written to a temporary .mts file inside the repository (so `express`,
 * `pg`, … resolve) and run with tsx against a private test database (`DATABASE_URL`), with
 * `SESSION_SECRET` set. Each block is also type-checked with tsc under the project settings.
 *
 * - A block with `// prints: <text>` comments is a script: it must exit 0, and each such text
 *   must appear in its output, in order.
 * - Any other block is a server: it must print `listening on <url>`; the test then drives it
 *   with the requests listed under its name in {@link SERVER_CHECKS} and stops it with SIGTERM,
 *   after which it must exit 0 by itself (graceful shutdown).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { Client } from '../helpers/http.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const work = path.join(root, 'node_modules', '.cache', `pgsession-doc-examples-${process.pid}`);

/** `pgsession[/subpath]` → the source file the published entry is built from. */
const ENTRIES: Record<string, string> = {
  pgsession: 'src/index.ts',
  'pgsession/connect-pg-simple': 'src/stores/postgres/connect-pg-simple.ts',
  'pgsession/fastify': 'src/adapters/fastify/index.ts',
  'pgsession/hono': 'src/adapters/hono/index.ts',
  'pgsession/koa': 'src/adapters/koa/index.ts',
  'pgsession/web': 'src/adapters/web/index.ts',
  'pgsession/metrics': 'src/metrics/index.ts',
  'pgsession/auth': 'src/auth/index.ts',
};

interface Example {
  name: string;
  file: string;
  code: string;
}

/** Every marked block of the docs and the README. */
async function collect(): Promise<Example[]> {
  const files = [
    'README.md',
    ...(await readdir(path.join(root, 'docs'))).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`),
  ];
  const examples: Example[] = [];
  for (const file of files) {
    const text = await readFile(path.join(root, file), 'utf8');
    const marker =
      /<!--\s*example:\s*([\w-]+)\s*-->\s*\n```(?:ts|typescript|js|javascript)\n([\s\S]*?)\n```/g;
    for (const [, name, code] of text.matchAll(marker)) examples.push({ name: name!, file, code: code! });
  }
  return examples;
}

/** Point `pgsession` imports (and `declare module 'pgsession'`) at the sources. */
function localize(code: string, dir: string): string {
  return code.replace(
    /(from\s+|import\s*\(\s*|declare module\s+)'(pgsession(?:\/[\w-]+)?)'/g,
    (_all, lead, spec) => {
      const target = ENTRIES[spec as string];
      if (!target) throw new Error(`unknown entry point in an example: ${spec}`);
      // `.js`, as NodeNext imports are written: tsx maps it to the .ts source, tsc too.
      let rel = path
        .relative(dir, path.join(root, target.replace(/\.ts$/, '.js')))
        .split(path.sep)
        .join('/');
      if (!rel.startsWith('.')) rel = `./${rel}`;
      return `${lead}'${rel}'`;
    },
  );
}

let db: TestDatabase;
let examples: Example[];

beforeAll(async () => {
  db = await createTestDatabase();
  examples = await collect();
  await mkdir(work, { recursive: true });
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
  await db?.drop();
});

function start(file: string): { child: ChildProcess; output: () => string } {
  const child = spawn(path.join(root, 'node_modules', '.bin', 'tsx'), [file], {
    cwd: root,
    env: {
      ...process.env,
      DATABASE_URL: db.url,
      SESSION_SECRET: 'example-secret-that-is-at-least-32-characters',
      PORT: '0',
      NODE_ENV: 'development',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  return { child, output: () => out };
}

async function exitOf(child: ChildProcess, ms: number): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  const timer = setTimeout(() => child.kill('SIGKILL'), ms);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  return code;
}

/** What each server example must do when driven over HTTP. */
const SERVER_CHECKS: Record<string, (base: string) => Promise<void>> = {
  'getting-started': async (base) => {
    const browser = new Client(base);
    expect(await (await browser.get('/me')).json()).toEqual({ userId: null });
    expect(browser.jar.size).toBe(0); // saveUninitialized: false
    expect(await (await browser.post('/login', { json: { userId: 42 } })).json()).toEqual({ loggedIn: true });
    expect(await (await browser.get('/me')).json()).toEqual({ userId: 42 });
    const { rows } = await db.pool.query<{ sid: string; user_id: string }>(
      'SELECT sid, user_id FROM session',
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]!.user_id).toBe('42');
    expect(await (await browser.post('/logout')).json()).toEqual({ loggedIn: false });
    expect(await (await browser.get('/me')).json()).toEqual({ userId: null });
    expect((await db.pool.query('SELECT 1 FROM session')).rowCount).toBe(0);
  },
};

describe('examples in the docs', () => {
  it('finds the marked examples', () => {
    expect(examples.map((e) => e.name)).toEqual(
      expect.arrayContaining(['getting-started', 'metrics', 'fastify', 'hono', 'web']),
    );
    expect(new Set(examples.map((e) => e.name)).size).toBe(examples.length);
  });

  it('runs every example', { timeout: 180_000 }, async () => {
    const failures: string[] = [];
    for (const example of examples) {
      const dir = path.join(work, example.name);
      await mkdir(dir, { recursive: true });
      const file = path.join(dir, 'example.mts');
      await writeFile(file, localize(example.code, dir));
      const { child, output } = start(file);
      const where = `${example.file} example "${example.name}"`;
      try {
        if (!example.code.includes('// prints: ')) {
          const check = SERVER_CHECKS[example.name];
          if (!check) throw new Error('a server example needs an entry in SERVER_CHECKS');
          const deadline = Date.now() + 30_000;
          let url: string | undefined;
          while (!url && Date.now() < deadline && child.exitCode === null) {
            url = /listening on (http:\/\/\S+)/.exec(output())?.[1];
            if (!url) await new Promise((r) => setTimeout(r, 50));
          }
          if (!url) throw new Error(`never printed "listening on <url>":\n${output()}`);
          await check(url.replace('localhost', '127.0.0.1'));
          child.kill('SIGTERM');
          const code = await exitOf(child, 10_000);
          if (code !== 0)
            throw new Error(`did not shut down cleanly on SIGTERM (exit ${code}):\n${output()}`);
        } else {
          const code = await exitOf(child, 60_000);
          if (code !== 0) throw new Error(`exited with ${code}:\n${output()}`);
          let from = 0;
          for (const [, expected] of example.code.matchAll(/\/\/ prints: (.+)$/gm)) {
            const at = output().indexOf(expected!.trim(), from);
            if (at === -1) throw new Error(`did not print ${JSON.stringify(expected)}:\n${output()}`);
            from = at + expected!.trim().length;
          }
        }
      } catch (err) {
        failures.push(`${where}: ${(err as Error).message}`);
      } finally {
        if (child.exitCode === null) child.kill('SIGKILL');
        await db.pool.query('DROP TABLE IF EXISTS session');
      }
    }
    expect(failures).toEqual([]);
  });

  it('type-checks every example (tsc, the project settings)', { timeout: 120_000 }, async () => {
    for (const example of examples) {
      const dir = path.join(work, example.name);
      await mkdir(dir, { recursive: true });
      await writeFile(path.join(dir, 'example.mts'), `${localize(example.code, dir)}\nexport {};\n`);
    }
    const config = path.join(work, 'tsconfig.json');
    const extendsPath = path.relative(work, path.join(root, 'tsconfig.json')).split(path.sep).join('/');
    await writeFile(config, JSON.stringify({ extends: extendsPath, include: ['*/example.mts'] }));
    const result = await new Promise<string>((resolve) => {
      execFile(path.join(root, 'node_modules', '.bin', 'tsc'), ['-p', config], { cwd: root }, (err, stdout) =>
        resolve(err ? stdout || String(err) : ''),
      );
    });
    expect(result).toBe('');
  });
});
