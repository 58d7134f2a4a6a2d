/**
 * TypeScript apps switching from express-session + connect-pg-simple, compiled with tsc
 * `--strict` (library checking on) against the built package, in every module mode: CommonJS
 * with and without esModuleInterop, NodeNext (CommonJS and ESM files) and bundler. The app's
 * source is the express-session app's with only its import specifiers changed. In each mode:
 *
 * - with express-session's declarations (`@types/express-session`, which
 *   `@types/connect-pg-simple` pulls in), the app keeps `declare module 'express-session' {
 *   interface SessionData … }` and `req.session.userId` keeps its type;
 * - without them, `declare module 'pgsession'` does the same;
 * - `session.SessionOptions`, `session.SessionData`, `session.Store`, `connectPgSimple.PGStore`…
 *   type-check, and a wrong type assigned to `req.session.userId` is an error (the
 *   `@ts-expect-error` lines fail the compile if it is not, e.g. if userId became `unknown`).
 *
 * Also the store-only switch: real express-session with `pgsession/connect-pg-simple`.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const exec = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));
const tsc = path.join(root, 'node_modules', '.bin', 'tsc');

/** Inside the repository (git-ignored) so the package's dependencies resolve from node_modules. */
let work: string;
let pkg: string;

beforeAll(async () => {
  await mkdir(path.join(root, 'node_modules/.cache'), { recursive: true });
  work = await mkdtemp(path.join(root, 'node_modules/.cache/pgsession-types-'));
  pkg = path.join(work, 'pgsession');
  await mkdir(pkg);
  await cp(path.join(root, 'package.json'), path.join(pkg, 'package.json'));
  // The declarations as published: dist/ from `npm run build`, or built here when it is missing.
  const built = path.join(root, 'dist', 'index.api.d.cts');
  if (existsSync(built)) {
    await cp(path.join(root, 'dist'), path.join(pkg, 'dist'), { recursive: true });
  } else {
    const out = path.join(pkg, 'dist');
    await exec(path.join(root, 'node_modules/.bin/tsup'), ['--out-dir', out, '--silent'], {
      cwd: root,
      timeout: 240_000,
    });
    await exec(process.execPath, ['scripts/fix-cjs.mjs', out], { cwd: root });
    await exec(process.execPath, ['scripts/fix-dts.mjs', out], { cwd: root });
  }
}, 300_000);

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

type Imports = 'default' | 'require' | 'star';

/** The app, as an express-session + connect-pg-simple app writes it, for one import style. */
function app(
  imports: Imports,
  augment: string,
  from = { session: 'pgsession', store: 'pgsession/connect-pg-simple' },
) {
  const lines = {
    default: [
      `import express from 'express';`,
      `import session from '${from.session}';`,
      `import connectPgSimple from '${from.store}';`,
    ],
    require: [
      `import express = require('express');`,
      `import session = require('${from.session}');`,
      `import connectPgSimple = require('${from.store}');`,
    ],
    star: [
      `import express = require('express');`,
      `import * as session from '${from.session}';`,
      `import connectPgSimple = require('${from.store}');`,
    ],
  }[imports];
  return `${lines.join('\n')}

declare module '${augment}' {
  interface SessionData {
    userId: number;
    cart?: string[];
  }
}

const PgSession = connectPgSimple(session);
const storeOptions: connectPgSimple.PGStoreOptions = {
  conString: 'postgres://localhost/app',
  tableName: 'session',
  createTableIfMissing: true,
  ttl: 3600,
  pruneSessionInterval: 60,
  errorLog: console.error,
};
const store = new PgSession(storeOptions);
const closeStore = (s: connectPgSimple.PGStore) => s.close();
const options: session.SessionOptions = {
  store,
  secret: 'a-long-enough-secret-for-the-type-test-only',
  resave: false,
  saveUninitialized: false,
  cookie: { maxAge: 86_400_000, sameSite: 'lax' },
};

const app = express();
app.use(session(options));
app.post('/login', (req, res, next) => {
  req.session.regenerate((err) => {
    if (err) return next(err);
    req.session.userId = 42;
    req.session.cart = ['book'];
    req.session.save(() => res.send('ok'));
  });
});
app.get('/me', (req, res) => {
  const id: number | undefined = req.session.userId;
  // @ts-expect-error userId is a number
  req.session.userId = 'forty-two';
  // @ts-expect-error so it is not a string either
  const asText: string | undefined = req.session.userId;
  const cart: string[] | undefined = req.session.cart;
  res.json({ id, asText, cart, sid: req.sessionID, maxAge: req.session.cookie.maxAge });
});
app.post('/logout', (req, res) => {
  req.session.destroy(() => res.send('bye'));
});

const data: Partial<session.SessionData> = { userId: 7 };
// @ts-expect-error SessionData's userId is a number
const bad: Partial<session.SessionData> = { userId: '7' };
const memory: session.Store = new session.MemoryStore();
export { bad, closeStore, data, memory };
`;
}

interface Mode {
  name: string;
  file: string;
  imports: Imports[];
  compilerOptions: Record<string, unknown>;
  /** package.json `type` of the app. */
  type?: 'module' | 'commonjs';
}

const modes: Mode[] = [
  {
    name: 'module commonjs, esModuleInterop',
    file: 'app.ts',
    imports: ['default', 'require'],
    compilerOptions: { module: 'commonjs', moduleResolution: 'node10', esModuleInterop: true },
  },
  {
    name: 'module commonjs, no esModuleInterop',
    file: 'app.ts',
    imports: ['require', 'star'],
    compilerOptions: { module: 'commonjs', moduleResolution: 'node10', esModuleInterop: false },
  },
  {
    name: 'NodeNext, a CommonJS file',
    file: 'app.cts',
    imports: ['require', 'default'],
    compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext' },
  },
  {
    name: 'NodeNext, an ES module',
    file: 'app.mts',
    imports: ['default'],
    compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext' },
  },
  {
    name: 'bundler',
    file: 'app.ts',
    imports: ['default'],
    compilerOptions: { module: 'esnext', moduleResolution: 'bundler' },
    type: 'module',
  },
];

let count = 0;

/** Compile apps (file name → source) in one project; resolves with tsc's output ('' when they compile). */
async function compile(
  mode: Mode,
  sources: Record<string, string>,
  options: { expressSessionTypes: boolean },
): Promise<string> {
  const dir = path.join(work, `app-${++count}`);
  await mkdir(path.join(dir, 'node_modules', '@types'), { recursive: true });
  await symlink(pkg, path.join(dir, 'node_modules', 'pgsession'), 'dir');
  if (options.expressSessionTypes) {
    // @types/express-session, installed under another name in this repository so that its
    // global declarations stay out of the repository's own program.
    await symlink(
      path.join(root, 'node_modules', 'types-express-session'),
      path.join(dir, 'node_modules', '@types', 'express-session'),
      'dir',
    );
  }
  // A user's app sees the @types of its own dependencies, not every @types package this
  // repository installs for its other adapters (@types/koa, say): the automatic inclusion is
  // limited to the app's own folder, which gets Node's types as any Node app has them.
  await symlink(
    path.join(root, 'node_modules', '@types', 'node'),
    path.join(dir, 'node_modules', '@types', 'node'),
    'dir',
  );
  for (const [file, source] of Object.entries(sources)) await writeFile(path.join(dir, file), source);
  await writeFile(
    path.join(dir, 'package.json'),
    JSON.stringify({ name: `types-app-${count}`, private: true, type: mode.type ?? 'commonjs' }),
  );
  await writeFile(
    path.join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'es2022',
        strict: true,
        noEmit: true,
        typeRoots: ['./node_modules/@types'],
        ...mode.compilerOptions,
      },
      files: Object.keys(sources),
    }),
  );
  try {
    await exec(tsc, ['-p', dir], { cwd: dir, timeout: 120_000 });
    return '';
  } catch (err) {
    const { stdout = '', stderr = '' } = err as { stdout?: string; stderr?: string };
    return `${stdout}${stderr}`.trim() || String(err);
  }
}

/** One file per import style of the mode (`app-require.cts`, …). */
function appsOf(mode: Mode, augment: string): Record<string, string> {
  const ext = path.extname(mode.file);
  return Object.fromEntries(mode.imports.map((imports) => [`app-${imports}${ext}`, app(imports, augment)]));
}

/** Two tsc at a time (each is one CPU-bound process), in the order the tests read them. */
const limit = pLimit(2);
const jobs = new Map<string, Promise<string>>();
function job(name: string, run: () => Promise<string>): Promise<string> {
  let started = jobs.get(name);
  if (!started) {
    started = limit(run);
    jobs.set(name, started);
  }
  return started;
}

function pLimit(n: number) {
  let active = 0;
  const queue: Array<() => void> = [];
  return <T>(run: () => Promise<T>): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const start = () => {
        active++;
        run()
          .then(resolve, reject)
          .finally(() => {
            active--;
            queue.shift()?.();
          });
      };
      if (active < n) start();
      else queue.push(start);
    });
}

const withTypes = (mode: Mode) =>
  job(`${mode.name} with`, () =>
    compile(mode, appsOf(mode, 'express-session'), { expressSessionTypes: true }),
  );
const withoutTypes = (mode: Mode) =>
  job(`${mode.name} without`, () => compile(mode, appsOf(mode, 'pgsession'), { expressSessionTypes: false }));
const storeOnly = (mode: Mode, file: string) =>
  job(`${mode.name} store only`, () =>
    compile(
      mode,
      {
        [file]: app('default', 'express-session', {
          session: 'express-session',
          store: 'pgsession/connect-pg-simple',
        }),
      },
      { expressSessionTypes: true },
    ),
  );
// A tsconfig that restricts `types`: the augmented module must be in the program (docs/migrating.md).
const restricted = () =>
  job('restricted types', () =>
    compile(
      { ...modes[0]!, compilerOptions: { ...modes[0]!.compilerOptions, types: ['node'] } },
      { 'app.ts': `import type {} from 'express-session';\n${app('default', 'express-session')}` },
      { expressSessionTypes: true },
    ),
  );
// Without the @ts-expect-error comments, every wrong type is reported.
const unchecked = () =>
  job('unchecked', () =>
    compile(
      modes[0]!,
      { 'app.ts': app('default', 'express-session').replaceAll(/^ *\/\/ @ts-expect-error.*\n/gm, '') },
      { expressSessionTypes: true },
    ),
  );

describe('TypeScript apps after the import switch (tsc --strict, built package)', () => {
  beforeAll(() => {
    // Queue every compile now, so two run at once while the tests wait for theirs in turn.
    for (const mode of modes) {
      void withTypes(mode).catch(() => {});
      void withoutTypes(mode).catch(() => {});
    }
    void storeOnly(modes[0]!, 'app.ts').catch(() => {});
    void storeOnly(modes[3]!, 'app.mts').catch(() => {});
    void unchecked().catch(() => {});
    void restricted().catch(() => {});
  });

  for (const mode of modes) {
    const styles = mode.imports.join(' and ');
    it(`${mode.name} (import ${styles}): with @types/express-session, declare module 'express-session'`, async () => {
      expect(await withTypes(mode)).toBe('');
    }, 300_000);
    it(`${mode.name} (import ${styles}): without it, declare module 'pgsession'`, async () => {
      expect(await withoutTypes(mode)).toBe('');
    }, 300_000);
  }

  it('only the store switched: real express-session with pgsession/connect-pg-simple', async () => {
    expect(await storeOnly(modes[0]!, 'app.ts')).toBe('');
    expect(await storeOnly(modes[3]!, 'app.mts')).toBe('');
  }, 300_000);

  it("a tsconfig restricting `types`: import type {} from 'express-session' next to the augmentation", async () => {
    expect(await restricted()).toBe('');
  }, 300_000);

  it('the checks bite: a wrong type for a declared key fails the compile', async () => {
    const output = await unchecked();
    expect(output).toMatch(
      /app\.ts\(\d+,\d+\): error TS2322: Type 'string' is not assignable to type 'number'/,
    );
    expect(output.match(/error TS/g)).toHaveLength(3);
  }, 300_000);
});

describe('the published declarations', () => {
  it("import pg's types without a default import (no TS1192 without esModuleInterop)", async () => {
    const dts = await readFile(path.join(pkg, 'dist', 'index.api.d.cts'), 'utf8');
    expect(dts).not.toMatch(/^import \w+ from 'pg';$/m);
    expect(dts).toMatch(/^import \* as \w+ from 'pg';$/m);
  });
});
