#!/usr/bin/env node
// Checks what `npm publish` would ship. Run after `npm run build`:
//
//   node scripts/check-package.mjs
//
// 1. The tarball (`npm pack --dry-run --json`) holds, for every entry of `exports`, the ESM and
//    CommonJS files and the type declarations of both; `main`, `module`, `types` and the `bin`
//    (with its shebang); the SQL migrations read from disk at run time (`migrations/auth/*.sql`,
//    see src/auth/migrations.ts); and nothing else from the repository: no tests, fixtures,
//    benchmarks, demo app, sources, docs or screenshots, `.data`. Source maps are fine.
// 2. The built JavaScript imports only Node built-ins, `dependencies` and `peerDependencies`
//    (a devDependency imported by dist/ would break every install).
// 3. `publint --strict` and `attw --pack .` (@arethetypeswrong/cli) report no problems.
//
// Prints one line per check and exits 1 if any failed.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = fileURLToPath(new URL('..', import.meta.url));
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
const failures = [];

function check(ok, label, detail = '') {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${label}${!ok && detail ? `\n       ${detail}` : ''}`);
  if (!ok) failures.push(label);
}

async function npx(args, options = {}) {
  try {
    const { stdout, stderr } = await run('npx', ['--no-install', ...args], {
      cwd: root,
      maxBuffer: 64 * 1024 * 1024,
      timeout: 300_000,
      ...options,
    });
    return { code: 0, output: `${stdout}${stderr}` };
  } catch (err) {
    return { code: err.code ?? 1, output: `${err.stdout ?? ''}${err.stderr ?? ''}` || String(err) };
  }
}

if (!existsSync(path.join(root, 'dist', 'index.js'))) {
  console.error('dist/ is missing: run `npm run build` first.');
  process.exit(1);
}

// --- 1. The file list -------------------------------------------------------------------------
const { stdout: packJson } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
  cwd: root,
  maxBuffer: 64 * 1024 * 1024,
});
const packed = JSON.parse(packJson)[0];
const files = new Set(packed.files.map((f) => f.path.replace(/^\.\//, '')));
const has = (p) => files.has(p.replace(/^\.\//, ''));
console.log(`${packed.filename}: ${packed.entryCount} files, ${(packed.size / 1024).toFixed(0)} kB packed`);

for (const [subpath, target] of Object.entries(pkg.exports)) {
  if (subpath === './package.json') continue;
  const wanted = [
    ['import.types', target?.import?.types, /\.d\.ts$/],
    ['import.default', target?.import?.default, /\.js$/],
    ['require.types', target?.require?.types, /\.d\.cts$/],
    ['require.default', target?.require?.default, /\.cjs$/],
  ];
  const missing = wanted
    .filter(([, file, shape]) => typeof file !== 'string' || !shape.test(file) || !has(file))
    .map(([condition, file]) => `${condition} (${file ?? 'not declared'})`);
  check(
    missing.length === 0,
    `exports["${subpath}"]: ESM + CJS + .d.ts + .d.cts`,
    `missing: ${missing.join(', ')}`,
  );
}

for (const field of ['main', 'module', 'types']) {
  if (pkg[field] !== undefined) check(has(pkg[field]), `${field} (${pkg[field]}) is in the tarball`);
}

for (const [name, file] of Object.entries(
  typeof pkg.bin === 'string' ? { [pkg.name]: pkg.bin } : (pkg.bin ?? {}),
)) {
  const present = has(file);
  const shebang = present && readFileSync(path.join(root, file), 'utf8').startsWith('#!/usr/bin/env node');
  check(present && shebang, `bin ${name} (${file}) is in the tarball and starts with #!/usr/bin/env node`);
}

// Migrations read from disk at run time (src/auth/migrations.ts: migrations/auth next to dist/).
const runtimeMigrations = readdirSync(path.join(root, 'migrations', 'auth'))
  .filter((f) => f.endsWith('.sql'))
  .map((f) => `migrations/auth/${f}`);
const missingSql = runtimeMigrations.filter((f) => !has(f));
check(
  runtimeMigrations.length > 0 && missingSql.length === 0,
  `the ${runtimeMigrations.length} auth migrations (migrations/auth/*.sql) are in the tarball`,
  `missing: ${missingSql.join(', ')}`,
);

// `pgsession --help` names docs/cli.md of the installed package.
check(has('docs/cli.md'), 'docs/cli.md (the CLI reference --help points to) is in the tarball');

const FORBIDDEN = [
  [
    /^(test|tests|__tests__|fixtures|bench|app|src|cli|scripts|coverage|\.data|\.ci|\.github)\//,
    'repository folder',
  ],
  // docs/cli.md ships: `pgsession --help` points to it.
  [/^docs\/(?!cli\.md$)/, 'docs (and screenshots)'],
  [/\.(test|spec)\.[cm]?[jt]sx?$/, 'test file'],
  [/(^|\/)fixtures?\//, 'fixture'],
  [/\.(png|jpe?g|gif|webp)$/i, 'image'],
  [/(^|\/)\.env/, 'environment file'],
  [/(^|\/)(tsconfig[^/]*\.json|vitest\.config\.[^/]+|tsup\.config\.[^/]+|biome\.json)$/, 'tool config'],
  [/\.vitest-results\.json$/, 'test results'],
  [/\.tgz$/, 'tarball'],
];
const unwanted = [...files].flatMap((f) => {
  const hit = FORBIDDEN.find(([pattern]) => pattern.test(f));
  return hit ? [`${f} (${hit[1]})`] : [];
});
check(
  unwanted.length === 0,
  'no tests, fixtures, bench, app, sources, docs or .data in the tarball',
  unwanted.join(', '),
);

// --- 2. What dist/ imports at run time ----------------------------------------------------------
const allowed = new Set([
  ...builtinModules,
  ...Object.keys(pkg.dependencies ?? {}),
  ...Object.keys(pkg.peerDependencies ?? {}),
]);
const packageOf = (spec) =>
  spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
const strays = new Set();
for (const file of files) {
  if (!/^dist\/.*\.(c?js|mjs)$/.test(file)) continue;
  const code = readFileSync(path.join(root, file), 'utf8');
  const specifiers = code.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\brequire\s*\(\s*)['"]([^'"]+)['"]/g);
  for (const [, spec] of specifiers) {
    if (spec.startsWith('.') || spec.startsWith('node:')) continue;
    if (!allowed.has(packageOf(spec))) strays.add(`${packageOf(spec)} (${file})`);
  }
}
check(
  strays.size === 0,
  'dist/ imports only Node built-ins, dependencies and peerDependencies',
  [...strays].join(', '),
);

// --- 3. publint and attw ---------------------------------------------------------------------------
const publint = await npx(['publint', '--strict']);
check(publint.code === 0, 'publint --strict', publint.output.trim().split('\n').join('\n       '));
const attw = await npx(['attw', '--pack', '.', '--format', 'ascii']);
check(
  attw.code === 0,
  'attw --pack . (@arethetypeswrong/cli)',
  attw.output.trim().split('\n').join('\n       '),
);

if (failures.length > 0) {
  console.error(`\n${failures.length} package check(s) failed.`);
  process.exit(1);
}
console.log('\nThe package is fine.');
