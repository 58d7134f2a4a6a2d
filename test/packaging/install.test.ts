/**
 * The published package, installed as a user installs it: `npm pack` the built package (dist/
 * from `npm run build`; built privately when missing), `npm install` the tarball into an empty
 * project outside the repository (offline, from the npm cache), then, in that project:
 * `require()` and `import` of every entry point, the `pgsession` bin, and a TypeScript file
 * that augments `SessionData` type-checked with tsc.
 *
 * If the offline install is impossible (a cold npm cache), the tarball is unpacked into
 * node_modules/pgsession and its dependencies are symlinked from the repository's node_modules,
 * which still proves the tarball's contents and its `exports`.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const exec = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));
const bin = (name: string) => path.join(root, 'node_modules', '.bin', name);

let work: string;
let project: string;
let installedBy: 'npm install --offline' | 'unpacked + symlinked deps';

async function sh(file: string, args: string[], cwd: string, timeout = 60_000): Promise<string> {
  try {
    const { stdout } = await exec(file, args, { cwd, timeout, maxBuffer: 16 * 1024 * 1024 });
    return stdout.trim();
  } catch (err) {
    const {
      stdout = '',
      stderr = '',
      code,
      signal,
    } = err as { stdout?: string; stderr?: string; code?: unknown; signal?: unknown };
    throw new Error(
      `${path.basename(file)} ${args.join(' ').slice(0, 200)} failed (${String(code)} ${String(signal)}):\n${stdout}${stderr}`,
    );
  }
}

async function node(args: string[]): Promise<string> {
  return sh(process.execPath, args, project, 30_000);
}

/** A copy of what `files` publishes, with dist/ from the repository (or built here if absent). */
async function stage(dir: string): Promise<void> {
  const pkg = JSON.parse(await readFile(path.join(root, 'package.json'), 'utf8')) as { files: string[] };
  await mkdir(dir, { recursive: true });
  await cp(path.join(root, 'package.json'), path.join(dir, 'package.json'));
  for (const entry of pkg.files) {
    if (entry === 'dist') continue;
    const from = path.join(root, entry);
    if (existsSync(from)) await cp(from, path.join(dir, entry), { recursive: true });
  }
  if (existsSync(path.join(root, 'dist', 'index.js')) && existsSync(path.join(root, 'dist', 'index.d.cts'))) {
    await cp(path.join(root, 'dist'), path.join(dir, 'dist'), { recursive: true });
  } else {
    const out = path.join(dir, 'dist');
    await sh(bin('tsup'), ['--out-dir', out, '--silent'], root, 180_000);
    await sh(process.execPath, ['scripts/fix-cjs.mjs', out], root);
    await sh(process.execPath, ['scripts/fix-dts.mjs', out], root);
  }
}

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'pgsession-install-'));
  const staged = path.join(work, 'package');
  await stage(staged);
  const tarball = path.join(
    work,
    await sh('npm', ['pack', '--silent', '--ignore-scripts', '--pack-destination', work], staged),
  );
  project = path.join(work, 'app');
  await mkdir(project);
  await writeFile(
    path.join(project, 'package.json'),
    JSON.stringify({ name: 'pgsession-install-test', private: true, type: 'commonjs' }),
  );
  try {
    await sh(
      'npm',
      // Install scripts run: argon2's checks its prebuilt binary and compiles one if that cannot load.
      ['install', '--offline', '--no-audit', '--no-fund', '--loglevel=error', tarball],
      project,
      90_000,
    );
    installedBy = 'npm install --offline';
  } catch {
    await rm(path.join(project, 'node_modules'), { recursive: true, force: true });
    const target = path.join(project, 'node_modules', 'pgsession');
    await mkdir(target, { recursive: true });
    await sh('tar', ['-xzf', tarball, '-C', target, '--strip-components=1'], project);
    const { dependencies = {} } = JSON.parse(await readFile(path.join(target, 'package.json'), 'utf8')) as {
      dependencies?: Record<string, string>;
    };
    for (const dep of Object.keys(dependencies)) await link(dep);
    installedBy = 'unpacked + symlinked deps';
  }
  // Types for the TypeScript check (tsc itself is the repository's).
  for (const dep of ['@types/node', '@types/express', '@types/pg']) await link(dep);
}, 240_000);

/** Symlink a package from the repository's node_modules into the project's. */
async function link(name: string): Promise<void> {
  const to = path.join(project, 'node_modules', name);
  if (existsSync(to)) return;
  await mkdir(path.dirname(to), { recursive: true });
  await symlink(path.join(root, 'node_modules', name), to, 'dir');
}

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe('the installed tarball', () => {
  it('is installed (offline npm install, or unpacked with symlinked deps)', () => {
    expect(['npm install --offline', 'unpacked + symlinked deps']).toContain(installedBy);
    expect(existsSync(path.join(project, 'node_modules', 'pgsession', 'dist', 'index.cjs'))).toBe(true);
  });

  it("require('pgsession') is the middleware function with MemoryStore and PgStore on it", async () => {
    const printed = await node([
      '-e',
      `const session = require('pgsession');
       console.log(typeof session, typeof session.MemoryStore, typeof session.PgStore, session.default === session);`,
    ]);
    expect(printed).toBe('function function function true');
  });

  it("require('pgsession/connect-pg-simple') is the factory, and takes require('pgsession')", async () => {
    const printed = await node([
      '-e',
      `const session = require('pgsession');
       const factory = require('pgsession/connect-pg-simple');
       const PgSession = factory(session);
       console.log(typeof factory, typeof PgSession, PgSession.prototype instanceof session.Store);`,
    ]);
    expect(printed).toBe('function function true');
  });

  it("import session, { PgStore } from 'pgsession' (ESM), and every subpath imports", async () => {
    const printed = await node([
      '--input-type=module',
      '-e',
      `import session, { PgStore, MemoryStore } from 'pgsession';
       import connectPgSimple from 'pgsession/connect-pg-simple';
       import { createAuth, runAuthMigrations } from 'pgsession/auth';
       import { createSessionMetrics } from 'pgsession/metrics';
       import { pgsessionFastify } from 'pgsession/fastify';
       console.log([session, PgStore, MemoryStore, connectPgSimple, createAuth, runAuthMigrations, createSessionMetrics, pgsessionFastify].map((x) => typeof x).join(' '));`,
    ]);
    expect(printed).toBe(Array(8).fill('function').join(' '));
  });

  it('ships the auth migrations where the auth layer looks for them', async () => {
    const printed = await node([
      '-e',
      `require('pgsession/auth').authMigrations().then((m) => console.log(m.map((x) => x.id).join(',')));`,
    ]);
    expect(printed).toMatch(/^auth\/001_users,auth\/002_login_rate_limits/);
  });

  it('installs the pgsession bin', async () => {
    const help = await sh(
      path.join(project, 'node_modules', '.bin', 'pgsession'),
      ['--help'],
      project,
      30_000,
    ).catch(
      // The unpacked fallback has no .bin link: run the declared bin file.
      () => node([path.join(project, 'node_modules', 'pgsession', 'dist', 'cli.js'), '--help']),
    );
    expect(help).toContain('Usage: pgsession');
  });

  it('types req.session through declaration merging (tsc, ESM and CommonJS)', async () => {
    const body = (importLine: string) => `${importLine}
declare module 'pgsession' {
  interface SessionData {
    userId: number;
  }
}

const app = express();
app.use(session({ secret: 'a-secret-of-at-least-thirty-two-characters', resave: false, saveUninitialized: false }));
app.get('/', (req, res) => {
  req.session.userId = 42;
  const id: number | undefined = req.session.userId;
  // @ts-expect-error userId is a number, not a string
  const wrong: string | undefined = req.session.userId;
  // @ts-expect-error only numbers go in
  req.session.userId = 'forty-two';
  req.session.regenerate((err) => res.send(String(err ?? id ?? wrong)));
});
const store = new PgStore({ conString: 'postgres://localhost/none', pruneSessionInterval: false });
void store;
`;
    await writeFile(
      path.join(project, 'esm.mts'),
      body(`import express from 'express';\nimport session, { PgStore } from 'pgsession';`),
    );
    await writeFile(
      path.join(project, 'cjs.cts'),
      // CommonJS TypeScript (esModuleInterop) reads the d.cts; `.default` is the function itself.
      body(`import express from 'express';\nimport session, { PgStore } from 'pgsession';`),
    );
    // One program per module kind: a program loading both the ESM and the CommonJS declarations
    // sees two copies of the global `Express.Request` augmentation (the dual-package hazard).
    const tsconfig = (file: string) =>
      JSON.stringify({
        compilerOptions: {
          module: 'nodenext',
          moduleResolution: 'nodenext',
          target: 'es2022',
          strict: true,
          noEmit: true,
          esModuleInterop: true,
          skipLibCheck: true,
          types: ['node'],
        },
        files: [file],
      });
    await writeFile(path.join(project, 'tsconfig.esm.json'), tsconfig('esm.mts'));
    await writeFile(path.join(project, 'tsconfig.cjs.json'), tsconfig('cjs.cts'));
    const tsc = (config: string) =>
      sh(bin('tsc'), ['-p', config], project, 60_000).catch((err: Error) => err.message);
    expect(await tsc('tsconfig.esm.json')).toBe('');
    expect(await tsc('tsconfig.cjs.json')).toBe('');
    // Two cold tsc runs (up to 60 s each on a loaded machine), not the default 30 s.
  }, 150_000);
});
