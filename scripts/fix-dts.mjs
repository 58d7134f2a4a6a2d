#!/usr/bin/env node
// Post-build step: the auth layer types `req.session` by augmenting the core's SessionData
// (`declare module '../core/session.js'`). After bundling, that relative specifier points at
// nothing a consumer can see, so the augmentation would be lost; point it at the package itself,
// which is where apps augment SessionData too.
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

const dist = path.resolve(process.argv[2] ?? 'dist');
const from = /declare module ['"]\.\.\/core\/session\.js['"]/g;
let changed = 0;
for (const file of await readdir(dist)) {
  if (!/\.d\.c?ts$/.test(file)) continue;
  const full = path.join(dist, file);
  const text = await readFile(full, 'utf8');
  if (!from.test(text)) continue;
  await writeFile(full, text.replace(from, "declare module 'pgsession'"));
  changed++;
}
if (changed === 0)
  throw new Error(`${dist}: no auth declaration file augments '../core/session.js'; did the build change?`);
