/**
 * Every guide runs as written, as a new user runs it: in a fresh folder outside the repository,
 * the page's install lines (with `pgsession` installed from an `npm pack` tarball of this build
 * instead of the registry), the page's files as written, the page's run commands as written.
 *
 * A page marks what the test runs (README.md and docs/*.md):
 *
 * - `<!-- install: <name> -->` before a ```sh block: the lines, run in order in a new folder
 *   (after `npm init -y` when the block does not start with it). Pages whose install lines are
 *   the same share one installed node_modules. Every `npm warn` of the install must be named in
 *   the page (its code and the package), so a warning a user sees is explained where they see it.
 * - `<!-- example: <name> <file> -->` before a code block: written to `<file>` as is. Without a
 *   file (`<!-- example: <name> -->`, pages that show a snippet with no install of their own), the
 *   block is `<name>.ts`, installed and run as the getting-started guide says.
 * - `<!-- run: <name> -->` before a ```sh block: one command per file (`npx tsx app.ts`,
 *   `node app.js`), run as written.
 * - `<!-- try: <name> -->` before a ```sh block: for a server (it prints `listening on <url>`),
 *   the requests, run as written against it (`localhost:3000` pointed at the port it got);
 *   a `# …` after a command is the output it must print. After the first request the table holds
 *   one row, under the SHA-256 of the cookie's id; the server is then restarted (sessions live in
 *   PostgreSQL). On SIGTERM it must stop by itself (`node app.js`: exit 0).
 * - A `.json` file (a `tsconfig.json`) is configuration: written, never run.
 * - Any other file is a script: it must exit 0 and print each `// prints: <text>` in order.
 *
 * Each TypeScript example is also type-checked with tsc against the sources (project settings).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, statSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashId } from '../../src/core/id.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

// ---------------------------------------------------------------------------------------------
// What the pages say

interface Block {
  page: string;
  name: string;
  code: string;
}
interface ExampleFile extends Block {
  file: string;
}
interface Guide {
  name: string;
  page: string;
  install: string;
  files: ExampleFile[];
  runs: string[];
  tries?: string;
}

const PAGES = [
  'README.md',
  ...(await readdir(path.join(root, 'docs'))).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`),
];
const TEXT = new Map(
  await Promise.all(PAGES.map(async (p) => [p, await readFile(path.join(root, p), 'utf8')] as const)),
);

function blocks(kind: string): Array<Block & { rest: string }> {
  const marker = new RegExp(
    `<!--\\s*${kind}:\\s*([\\w-]+)((?:[ \\t]+[\\w.-]+)?)\\s*-->\\s*\\n\`\`\`[\\w]*\\n([\\s\\S]*?)\\n\`\`\``,
    'g',
  );
  return PAGES.flatMap((page) =>
    [...TEXT.get(page)!.matchAll(marker)].map(([, name, rest, code]) => ({
      page,
      name: name!,
      rest: rest!.trim(),
      code: code!,
    })),
  );
}

function one(kind: string, name: string): Block | undefined {
  const found = blocks(kind).filter((b) => b.name === name);
  if (found.length > 1) throw new Error(`two "${kind}: ${name}" blocks`);
  return found[0];
}

/** Shell lines of a block: comments and blank lines dropped. */
function commands(code: string): Array<{ line: string; expect?: string }> {
  return code
    .split('\n')
    .map((raw) => {
      const [, line = '', comment] = /^(.*?)(?:\s+#\s?(.*))?$/.exec(raw.trim())!;
      return { line: line.trim(), expect: comment?.trim() };
    })
    .filter((c) => c.line !== '' && !c.line.startsWith('#'));
}

function guides(): Guide[] {
  const byName = new Map<string, Guide>();
  const fallback = one('install', 'getting-started');
  for (const example of blocks('example')) {
    let guide = byName.get(example.name);
    if (!guide) {
      const install = one('install', example.name) ?? fallback;
      if (!install) throw new Error(`${example.page}: no install block for "${example.name}"`);
      const runs = one('run', example.name);
      guide = {
        name: example.name,
        page: example.page,
        install: install.code,
        files: [],
        runs: runs ? commands(runs.code).map((c) => c.line) : [],
        tries: one('try', example.name)?.code,
      };
      byName.set(example.name, guide);
    }
    const file = example.rest || `${example.name}.ts`;
    if (!example.rest) guide.runs.push(`npx tsx ${file}`);
    guide.files.push({ ...example, file });
  }
  return [...byName.values()];
}

// ---------------------------------------------------------------------------------------------
// The tarball, the folders, the processes

let work: string;
let tarball: string;
let db: TestDatabase;
const secret = randomBytes(32).toString('base64'); // what `openssl rand -base64 32` gives

/** The environment of a user's shell: none of vitest's or of an enclosing `npm run`. */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(npm_|VITEST|NODE_ENV$|NODE_OPTIONS$|INIT_CWD$|TSX_)/i.test(k)) continue;
    env[k] = v;
  }
  return {
    ...env,
    // The registry is reachable, but what `npm ci` of this repository cached is enough.
    npm_config_prefer_offline: 'true',
    npm_config_audit: 'false',
    npm_config_fund: 'false',
    npm_config_update_notifier: 'false',
    DATABASE_URL: db.url,
    SESSION_SECRET: secret,
    ...extra,
  };
}

function sh(
  line: string,
  cwd: string,
  timeout = 240_000,
): Promise<{ code: number; stdout: string; output: string }> {
  return new Promise((resolve) => {
    execFile(
      '/bin/sh',
      ['-c', line],
      { cwd, env: userEnv(), timeout, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const status = (err as { code?: unknown } | null)?.code;
        const code = !err ? 0 : typeof status === 'number' ? status : 1;
        resolve({ code, stdout, output: `${stdout}${stderr}` });
      },
    );
  });
}

/** `npm warn <code> …` lines, grouped by consecutive code: what each warning names. */
function npmWarnings(log: string): Array<{ code: string; text: string; packages: string[] }> {
  const groups: Array<{ code: string; text: string; packages: string[] }> = [];
  for (const line of log.split('\n')) {
    const code = /^npm warn (\S+)/.exec(line)?.[1];
    if (!code) continue;
    let group = groups.at(-1);
    if (group?.code !== code) {
      group = { code, text: '', packages: [] };
      groups.push(group);
    }
    group.text += `${line}\n`;
    for (const [, name] of line.matchAll(/((?:@[\w.-]+\/)?[a-z][\w.-]*)@\d[\w.-]*/g))
      if (!group.packages.includes(name!)) group.packages.push(name!);
  }
  return groups;
}

/** Newest modification time under a folder. */
async function newest(dir: string): Promise<number> {
  let latest = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile())
      latest = Math.max(latest, (await stat(path.join(entry.parentPath, entry.name))).mtimeMs);
  }
  return latest;
}

/**
 * `npm pack` of what `files` publishes. dist/ is the repository's when it was built after the
 * last change to the sources (CI builds first), otherwise a private build.
 */
async function pack(): Promise<string> {
  const stage = path.join(work, 'package');
  const pkg = JSON.parse(await readFile(path.join(root, 'package.json'), 'utf8')) as { files: string[] };
  await mkdir(stage, { recursive: true });
  await cp(path.join(root, 'package.json'), path.join(stage, 'package.json'));
  for (const entry of pkg.files) {
    if (entry !== 'dist' && existsSync(path.join(root, entry)))
      await cp(path.join(root, entry), path.join(stage, entry), { recursive: true });
  }
  const built = path.join(root, 'dist', 'index.js');
  const sources = Math.max(
    ...(await Promise.all(['src', 'cli', 'migrations'].map((d) => newest(path.join(root, d))))),
  );
  const bin = (name: string) => path.join(root, 'node_modules', '.bin', name);
  if (existsSync(built) && statSync(built).mtimeMs > sources) {
    await cp(path.join(root, 'dist'), path.join(stage, 'dist'), { recursive: true });
  } else {
    const out = path.join(stage, 'dist');
    for (const line of [
      `"${bin('tsup')}" --out-dir "${out}" --silent`,
      `node scripts/fix-cjs.mjs "${out}"`,
      `node scripts/fix-dts.mjs "${out}"`,
    ]) {
      const { code, output } = await sh(line, root, 300_000);
      if (code !== 0) throw new Error(`${line}: ${output}`);
    }
  }
  const { code, output } = await sh(`npm pack --silent --ignore-scripts --pack-destination "${work}"`, stage);
  if (code !== 0) throw new Error(`npm pack: ${output}`);
  return path.join(work, output.trim().split('\n').pop()!);
}

/** `npm install pgsession …` → the tarball; every other word as written. */
function fromTarball(line: string): string {
  if (!/^npm (install|i|add)\b/.test(line)) return line;
  return line.replace(/(?<=\s)pgsession(?=\s|$)/, `"${tarball}"`);
}

/** One installed folder per distinct install block. */
const installs = new Map<string, Promise<string>>();
function install(lines: string, page: string): Promise<string> {
  const key = commands(lines)
    .map((c) => c.line)
    .join('\n');
  let done = installs.get(key);
  if (!done) {
    done = (async () => {
      const dir = path.join(work, `install-${installs.size}`);
      await mkdir(dir);
      const steps = commands(lines).map((c) => c.line);
      if (!/^npm init -y\b/.test(steps[0] ?? '')) steps.unshift('npm init -y');
      let log = '';
      for (const step of steps) {
        const { code, output } = await sh(fromTarball(step), dir);
        log += output;
        if (code !== 0) throw new Error(`${page}: \`${step}\` failed (${code}):\n${output}`);
      }
      // Each npm warning must be explained on the page, or in the README's Install section that
      // every page links to: its code and the packages it names.
      const text = `${TEXT.get(page)}\n${TEXT.get('README.md')}`;
      const unexplained = npmWarnings(log).flatMap(({ code, text: warning, packages }) => {
        const missing = [code, ...packages].filter((word) => !text.includes(word));
        return missing.length > 0 ? [`${warning}(${page} does not mention ${missing.join(', ')})`] : [];
      });
      if (unexplained.length > 0) throw new Error(`unexplained npm warnings:\n${unexplained.join('\n')}`);
      return dir;
    })();
    installs.set(key, done);
  }
  return done;
}

/** The install a guide uses: its page's, or getting-started's for a snippet without one. */
function installFor(guide: Guide): Promise<string> {
  return install(guide.install, one('install', guide.name) ? guide.page : 'docs/getting-started.md');
}

/** A folder of its own for one guide, on the shared node_modules of its install. */
async function folder(guide: Guide): Promise<string> {
  const installed = await installFor(guide);
  const dir = path.join(work, `guide-${guide.name}`);
  await mkdir(dir, { recursive: true });
  await cp(path.join(installed, 'package.json'), path.join(dir, 'package.json'));
  if (!existsSync(path.join(dir, 'node_modules')))
    await symlink(path.join(installed, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
  for (const f of guide.files) await writeFile(path.join(dir, f.file), `${f.code}\n`);
  return dir;
}

interface Running {
  child: ChildProcess;
  output: () => string;
}

/**
 * The run command as written, without a shell, in a process group of its own: what a terminal
 * does, so a signal reaches every process of the command (npx passes none on to its child).
 */
function start(command: string, cwd: string): Running {
  const [file, ...args] = command.split(/\s+/);
  const child = spawn(file!, args, {
    cwd,
    env: userEnv({ PORT: '0' }),
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
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

/** Signal the command's process group (started by {@link start}); false once it is gone. */
function signalGroup(run: Running, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-run.child.pid!, signal);
    return true;
  } catch {
    return false;
  }
}

async function exitOf(run: Running, ms: number): Promise<number | null> {
  const { child } = run;
  if (child.exitCode === null && child.signalCode === null) {
    const timer = setTimeout(() => signalGroup(run, 'SIGKILL'), ms);
    await once(child, 'exit');
    clearTimeout(timer);
  }
  return child.exitCode;
}

async function listening(run: Running): Promise<string> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline && run.child.exitCode === null) {
    const url = /listening on (http:\/\/\S+)/.exec(run.output())?.[1];
    if (url) return url.replace('localhost', '127.0.0.1');
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`never printed "listening on <url>":\n${run.output()}`);
}

/**
 * SIGTERM, as a process manager sends it: the server must stop by itself. `node app.js` must
 * exit 0 (its graceful shutdown ran); npx exits 143 whatever its child does, so for `npx …` the
 * whole group must be gone instead.
 */
async function stop(run: Running, command: string): Promise<void> {
  signalGroup(run, 'SIGTERM');
  const code = await exitOf(run, 15_000);
  if (command.startsWith('node ') && code !== 0)
    throw new Error(`did not shut down cleanly on SIGTERM (exit ${code}):\n${run.output()}`);
  const deadline = Date.now() + 15_000;
  while (signalGroup(run, 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (signalGroup(run, 0)) throw new Error(`still running 15 s after SIGTERM:\n${run.output()}`);
}

/**
 * What the guides say of the table (`SELECT * FROM session`): the row is there, under the
 * SHA-256 of the id in the cookie (curl's jar), never under the id itself.
 */
async function rowIsHashed(dir: string): Promise<void> {
  const jar = await readFile(path.join(dir, 'jar'), 'utf8');
  const value = jar.trim().split('\n').at(-1)!.split('\t').at(-1)!;
  const id = /^s:([^.]+)\./.exec(decodeURIComponent(value))?.[1];
  expect(id, `a signed session cookie in the jar:\n${jar}`).toBeDefined();
  const { rows } = await db.pool.query<{ sid: string }>('SELECT sid FROM session');
  expect(rows.map((r) => r.sid)).toEqual([hashId(id!)]);
}

/** Drive a server with the page's requests, restarting it after the first. */
async function tryServer(command: string, dir: string, tries: string): Promise<void> {
  await rm(path.join(dir, 'jar'), { force: true }); // a fresh browser for each run
  let run = start(command, dir);
  try {
    let base = await listening(run);
    const requests = commands(tries);
    for (const [i, request] of requests.entries()) {
      const host = new URL(base).host;
      const line = request.line.replaceAll('localhost:3000', host);
      const { code, stdout, output } = await sh(line, dir, 30_000);
      expect(code, `${request.line}:\n${output}`).toBe(0);
      if (request.expect !== undefined) expect(stdout.trim(), request.line).toBe(request.expect);
      if (i === 0) await rowIsHashed(dir);
      if (i === 0 && requests.length > 1) {
        await stop(run, command);
        run = start(command, dir);
        base = await listening(run);
      }
    }
    await stop(run, command);
  } finally {
    signalGroup(run, 'SIGKILL');
  }
}

async function runScript(command: string, dir: string, code: string): Promise<void> {
  const run = start(command, dir);
  try {
    const status = await exitOf(run, 90_000);
    expect(status, `exited with ${status}:\n${run.output()}`).toBe(0);
    let from = 0;
    for (const [, wanted] of code.matchAll(/\/\/ prints: (.+)$/gm)) {
      const at = run.output().indexOf(wanted!.trim(), from);
      expect(at, `did not print ${JSON.stringify(wanted)}:\n${run.output()}`).toBeGreaterThanOrEqual(0);
      from = at + wanted!.trim().length;
    }
  } finally {
    signalGroup(run, 'SIGKILL');
  }
}

// ---------------------------------------------------------------------------------------------

const GUIDES = guides();
const TYPESCRIPT_ONLY = ['metrics', 'nestjs'];
const isConfig = (f: ExampleFile) => f.file.endsWith('.json');

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'pgsession-guides-'));
  db = await createTestDatabase();
  tarball = await pack();
  // Start every distinct install at once (they wait on the network and the disk as much as on
  // the CPU); each test awaits its own, and reports its failure.
  for (const guide of GUIDES) void installFor(guide).catch(() => {});
}, 600_000);

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
  await db?.drop();
});

describe('the guides, as written, in a fresh folder', () => {
  it('finds the guides, each file with its run command, in JavaScript and TypeScript', () => {
    const names = GUIDES.map((g) => g.name);
    expect(names).toEqual(
      expect.arrayContaining(['readme', 'getting-started', 'fastify', 'hono', 'metrics', 'nestjs']),
    );
    for (const guide of GUIDES) {
      for (const f of guide.files.filter((file) => !isConfig(file))) {
        expect(
          guide.runs.filter((r) => r.split(/\s+/).includes(f.file)),
          `${guide.page}: one run command for ${f.file}`,
        ).toHaveLength(1);
      }
      // TypeScript only: metrics (a snippet), and NestJS (its decorators are TypeScript's).
      if (!TYPESCRIPT_ONLY.includes(guide.name)) {
        const scripts = guide.files.filter((f) => !isConfig(f));
        expect(scripts.map((f) => path.extname(f.file)).sort(), guide.page).toEqual(['.js', '.ts']);
      }
    }
  });

  for (const guide of GUIDES) {
    for (const example of guide.files.filter((f) => !isConfig(f))) {
      const command = guide.runs.find((r) => r.split(/\s+/).includes(example.file)) ?? '';
      it(`${guide.page}: ${command}`, { timeout: 600_000 }, async () => {
        const dir = await folder(guide);
        try {
          if (example.code.includes('// prints: ')) await runScript(command, dir, example.code);
          else {
            expect(guide.tries, `${guide.page}: a server needs a "try: ${guide.name}" block`).toBeDefined();
            await tryServer(command, dir, guide.tries!);
          }
        } finally {
          await db.pool.query('DROP TABLE IF EXISTS session');
        }
      });
    }
  }
});

describe('the TypeScript examples type-check (tsc, project settings, against the sources)', () => {
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
  const localize = (code: string, dir: string) =>
    code.replace(
      /(from\s+|import\s*\(\s*|declare module\s+)'(pgsession(?:\/[\w-]+)?)'/g,
      (_all, lead, spec) => {
        const target = ENTRIES[spec as string];
        if (!target) throw new Error(`unknown entry point in an example: ${spec}`);
        let rel = path
          .relative(dir, path.join(root, target.replace(/\.ts$/, '.js')))
          .split(path.sep)
          .join('/');
        if (!rel.startsWith('.')) rel = `./${rel}`;
        return `${lead}'${rel}'`;
      },
    );

  it('tsc reports nothing', { timeout: 180_000 }, async () => {
    // Inside the repository, so express, pg, fastify, hono and their types resolve.
    const dir = path.join(root, 'node_modules', '.cache', `pgsession-doc-types-${process.pid}`);
    await mkdir(dir, { recursive: true });
    try {
      const files = GUIDES.flatMap((g) =>
        g.files.filter((f) => f.file.endsWith('.ts')).map((f) => ({ g, f })),
      );
      for (const { g, f } of files) {
        await writeFile(path.join(dir, `${g.name}.mts`), `${localize(f.code, dir)}\nexport {};\n`);
      }
      const extendsPath = path.relative(dir, path.join(root, 'tsconfig.json')).split(path.sep).join('/');
      await writeFile(
        path.join(dir, 'tsconfig.json'),
        // experimentalDecorators: the NestJS guide's (the other examples have no decorators).
        JSON.stringify({
          extends: extendsPath,
          include: ['*.mts'],
          compilerOptions: { experimentalDecorators: true },
        }),
      );
      const result = await new Promise<string>((resolve) => {
        execFile(
          path.join(root, 'node_modules', '.bin', 'tsc'),
          ['-p', path.join(dir, 'tsconfig.json')],
          { cwd: root },
          (err, stdout) => resolve(err ? stdout || String(err) : ''),
        );
      });
      expect(result).toBe('');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
