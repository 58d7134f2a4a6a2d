#!/usr/bin/env node
// `npm start`: the demo app (app/main.ts, through tsx) with the environment of
// scripts/start-env.json, on every platform. npm runs scripts with cmd.exe on Windows, which has
// no `NAME=value command` form, and the setting there (glibc's mmap threshold, docs/reliability.md,
// "Memory and argon2id") is read when a process starts, so it cannot be set from JavaScript.
// A variable already set in the environment wins.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const startEnv = JSON.parse(readFileSync(new URL('./start-env.json', import.meta.url), 'utf8'));

// On POSIX the app gets its own process group, so a Ctrl-C in the terminal (which signals the
// whole foreground group) reaches it once, forwarded from here: the demo exits at once on a
// second signal. A Windows console delivers Ctrl-C to every process attached to it, so there
// SIGINT is not forwarded (and `detached` would open a new console window).
const posix = process.platform !== 'win32';
const app = spawn(process.execPath, ['--import', 'tsx', 'app/main.ts', ...process.argv.slice(2)], {
  cwd: root,
  env: { ...startEnv, ...process.env },
  stdio: 'inherit',
  detached: posix,
});

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    if (posix || signal !== 'SIGINT') app.kill(signal);
  });
}
app.on('error', (err) => {
  console.error(`npm start: cannot start the demo app: ${err.message}`);
  process.exitCode = 1;
});
app.on('exit', (code, signal) => {
  process.exitCode = code ?? 128 + (constants.signals[signal] ?? 0);
});
