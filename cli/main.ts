#!/usr/bin/env node
/**
 * `pgsession` — operator commands (see docs/cli.md). In this repository: `npm run cli -- <command>`.
 */
import { EXIT } from './errors.js';
import { processIo } from './output.js';
import { run } from './program.js';

const controller = new AbortController();
process.on('SIGINT', () => {
  if (controller.signal.aborted) process.exit(EXIT.interrupted);
  // A prune in progress stops after its current batch and reports; anything else ends now.
  controller.abort();
  if (!pruning) process.exit(EXIT.interrupted);
  process.stderr.write('\npgsession: stopping after the current batch (Ctrl-C again to quit now)\n');
});
const pruning = process.argv.slice(2).includes('prune');

// `pgsession sessions list | head` closes the pipe early: that is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(EXIT.ok);
  throw err;
});

// No top-level await: the file also builds as CommonJS.
void run(process.argv, { io: processIo(), signal: controller.signal }).then((code) => {
  // Everything is closed by now; exit without waiting for stray timers or sockets.
  process.exit(code);
});
