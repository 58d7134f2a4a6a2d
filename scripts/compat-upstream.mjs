#!/usr/bin/env node
// npm run compat:upstream [-- --only=express-session|connect-pg-simple] [-- --no-build] [-- --grep=TEXT]
//
// Runs express-session's and connect-pg-simple's own test suites against this build, with the
// harness in ../shared/upstream-suites (found in any parent folder, or PGSESSION_UPSTREAM_SUITES).
// The upstream tests come from git mirrors (.mirror/expressjs+session/repo and
// .mirror/voxpelli+node-connect-pg-simple/repo in a parent folder, or ES_REPO / CPS_REPO);
// nothing third-party is written into this repository. Exits 0 only when both suites reach the
// counts docs/compat.md promises. Not part of `npm test`: CI has no mirrors.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** The counts docs/compat.md promises (of 160 and 41). */
const TARGETS = { 'express-session': 155, 'connect-pg-simple': 37 };

const args = process.argv.slice(2);
const only = args.find((a) => a.startsWith('--only='))?.slice('--only='.length);
const grep = args.find((a) => a.startsWith('--grep='))?.slice('--grep='.length);
const build = !args.includes('--no-build');

/** The first `rel` found in `root` or one of its parents. */
function findUp(rel) {
  for (let dir = root; ; dir = dirname(dir)) {
    const candidate = join(dir, rel);
    if (existsSync(candidate)) return candidate;
    if (dirname(dir) === dir) return undefined;
  }
}

const suites = process.env.PGSESSION_UPSTREAM_SUITES ?? findUp(join('shared', 'upstream-suites'));
if (!suites || !existsSync(join(suites, 'run-express-session-suite.sh'))) {
  console.error(
    'compat:upstream: the upstream-suites harness was not found (looked for shared/upstream-suites in the parent folders); set PGSESSION_UPSTREAM_SUITES.',
  );
  process.exit(2);
}
const env = { ...process.env };
env.ES_REPO ??= findUp(join('.mirror', 'expressjs+session', 'repo'));
env.CPS_REPO ??= findUp(join('.mirror', 'voxpelli+node-connect-pg-simple', 'repo'));
for (const [name, value] of [
  ['ES_REPO', env.ES_REPO],
  ['CPS_REPO', env.CPS_REPO],
]) {
  if (!value) {
    console.error(
      `compat:upstream: no mirror for ${name} (bring it with the search tool's fetch: github:expressjs/session, github:voxpelli/node-connect-pg-simple), or set ${name}.`,
    );
    process.exit(2);
  }
}
// One scratch folder per checkout, so two checkouts can run the suites at the same time.
env.PEER_WORK_DIR ??= join(
  tmpdir(),
  `upstream-suites-work-${createHash('sha256').update(root).digest('hex').slice(0, 12)}`,
);
if (grep) env.PEER_MOCHA_ARGS = `${env.PEER_MOCHA_ARGS ?? ''} --grep=${grep}`.trim();

if (build) {
  const b = spawnSync('npm', ['run', 'build'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  if (b.status !== 0) process.exit(b.status ?? 1);
}

const runs = [
  { name: 'express-session', script: 'run-express-session-suite.sh', impl: root, extraEnv: {} },
  {
    name: 'connect-pg-simple',
    script: 'run-connect-pg-simple-suite.sh',
    impl: join(root, 'dist', 'connect-pg-simple.cjs'),
    extraEnv: { PEER_PROXYQUIRE_GLOBAL: '1' },
  },
].filter((r) => !only || r.name === only);

const results = [];
for (const run of runs) {
  const r = spawnSync('bash', [join(suites, run.script), run.impl], {
    cwd: root,
    env: { ...env, ...run.extraEnv },
    stdio: ['ignore', 'pipe', 'inherit'],
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  process.stdout.write(r.stdout);
  const last = r.stdout.trim().split('\n').at(-1) ?? '';
  const m = /^(\d+) passed, (\d+) failed/.exec(last);
  results.push({ ...run, passed: m ? Number(m[1]) : 0, failed: m ? Number(m[2]) : 1 });
}

console.log('\nupstream suites against this build:');
let ok = true;
for (const r of results) {
  const target = TARGETS[r.name];
  const met = !grep && r.passed >= target;
  if (!met) ok = false;
  console.log(
    `  ${r.name}: ${r.passed} passed, ${r.failed} failed (target ≥ ${target} of ${r.passed + r.failed})${grep ? '' : met ? '' : ' — below target'}`,
  );
}
const passed = results.reduce((n, r) => n + r.passed, 0);
const failed = results.reduce((n, r) => n + r.failed, 0);
console.log(`${passed} passed, ${failed} failed`);
process.exit(ok ? 0 : 1);
