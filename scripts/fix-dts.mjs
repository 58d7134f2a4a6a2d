#!/usr/bin/env node
// Post-build step on the bundled declaration files (run after `tsup` and fix-cjs.mjs):
//
// 1. The auth layer and the Express types augment the core's SessionData
//    (`declare module '../core/session.js'`). After bundling, that relative specifier points at
//    nothing, so the augmentation would be lost; point it at the bundled file that declares
//    SessionData (relative, so it resolves in every moduleResolution: a package naming itself
//    resolves only under node16/nodenext and bundler).
// 2. `import pg from 'pg'` needs esModuleInterop / allowSyntheticDefaultImports in the consumer's
//    tsconfig (@types/pg has no default export: TS1192 otherwise); the declarations only use its
//    types, so a namespace import works in every configuration.
// 3. index: the default export, `session`, gets a type namespace with every named export, so
//    express-session's spellings keep compiling (`session.SessionOptions`, `session.Store`,
//    `session.SessionData`). In the CommonJS declarations the module *is* that function
//    (`export = session`), as `require('pgsession')` is at run time, so
//    `import session = require('pgsession')` is callable, with or without esModuleInterop:
//    tsup's bundle moves to index.api.d.cts and index.d.cts becomes a wrapper around it.
//
// Idempotent; a declaration layout it does not recognise is an error (the build changed).
import { existsSync } from 'node:fs';
import { readdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';

const dist = path.resolve(process.argv[2] ?? 'dist');
const MARKER = '// pgsession: the type namespace of `session` (scripts/fix-dts.mjs)';
const API = 'index.api'; // the bundle behind the CommonJS wrapper

const files = (await readdir(dist)).filter((f) => /\.d\.c?ts$/.test(f));
/**
 * Per extension, the bundled file declaring SessionData (as its import specifier) and the name
 * it exports it under (chunks export short aliases: `SessionData as c`). An augmentation merges
 * with a module's exports by name, so it must use that alias.
 */
const home = {};
for (const file of files) {
  const text = await readFile(path.join(dist, file), 'utf8');
  if (!/^interface SessionData \{/m.test(text)) continue;
  const alias =
    /^export \{[^}]*\bSessionData as ([A-Za-z_$][\w$]*)\b[^}]*\};$/m.exec(text)?.[1] ?? 'SessionData';
  home[file.endsWith('.d.cts') ? 'cts' : 'ts'] = {
    from: `./${file.replace(/\.d\.(c?)ts$/, '.$1js')}`,
    alias,
  };
}
if (!home.ts || !home.cts)
  throw new Error(`${dist}: no declaration file declares SessionData; did the build change?`);

let augmented = 0;
for (const file of files) {
  const full = path.join(dist, file);
  const before = await readFile(full, 'utf8');
  const { from, alias } = home[file.endsWith('.d.cts') ? 'cts' : 'ts'];
  const text = before
    // The augmentation block (up to its closing brace at the start of a line).
    .replace(
      /^declare module ['"](?:\.\.\/)+core\/session\.js['"] \{\n([\s\S]*?)^\}/gm,
      (_all, body) =>
        `declare module '${from}' {\n${body.replace(/^( {4}interface )SessionData\b/gm, `$1${alias}`)}}`,
    )
    .replace(/^import ([A-Za-z_$][\w$]*) from 'pg';$/gm, "import * as $1 from 'pg';")
    // `export { type X }` and `export type { X }`: an import alias (the namespace below) cannot
    // name a type-only export. In a declaration file the modifier changes nothing else.
    .replace(/^export type \{/gm, 'export {')
    .replace(
      /^export \{([^}]*)\}/gm,
      (_all, specs) => `export {${specs.replace(/(^|,)(\s*)type /g, '$1$2')}}`,
    );
  if (text.includes(`declare module '${from}'`)) augmented++;
  if (text !== before) await writeFile(full, text);
}
if (augmented === 0)
  throw new Error(`${dist}: no declaration file augments '../core/session.js'; did the build change?`);

await esmNamespace(path.join(dist, 'index.d.ts'));
await commonjsWrapper(path.join(dist, 'index.d.cts'));

/** The names an index declaration file exports (from its `export { … }` statements). */
function exportedNames(text) {
  const names = [];
  for (const match of text.matchAll(/^export \{([^}]*)\}(?: from '[^']+')?;$/gm)) {
    for (const raw of match[1].split(',')) {
      const spec = raw.trim().replace(/^type /, '');
      if (spec) names.push(spec.split(/\s+as\s+/).at(-1));
    }
  }
  if (!names.includes('default') || !names.includes('session')) {
    throw new Error('index declarations: `session` is not the default export; did the build change?');
  }
  return names.filter((n) => n !== 'default' && n !== 'session');
}

/** `export import X = api.X;` for every name: values and types alike, augmentable interfaces included. */
function namespaceMembers(names, api) {
  return names.map((name) => `    export import ${name} = ${api}.${name};`);
}

/** index.d.ts: a namespace for `session`, through a namespace import of the module itself. */
async function esmNamespace(file) {
  const text = await readIfPresent(file);
  if (text === undefined || text.includes(MARKER)) return;
  const members = namespaceMembers(exportedNames(text), '__pgsession');
  await writeFile(
    file,
    `${text.trimEnd()}\n\n${MARKER}\nimport * as __pgsession from './index.js';\ndeclare namespace session {\n${members.join('\n')}\n}\n`,
  );
}

/** index.d.cts: `export = session`, a function whose namespace is everything the bundle exports. */
async function commonjsWrapper(file) {
  const text = await readIfPresent(file);
  if (text === undefined || text.includes(MARKER)) return;
  if (!/^declare function session\(options: SessionOptions\): SessionMiddleware;$/m.test(text)) {
    throw new Error(
      `${file}: no \`declare function session(options: SessionOptions)\`; did the build change?`,
    );
  }
  const names = exportedNames(text);
  await rename(file, path.join(path.dirname(file), `${API}.d.cts`));
  await writeFile(
    file,
    `${MARKER}
// The bundled declarations are in ./${API}.d.cts; this module is the function itself, as
// \`require('pgsession')\` is.
import * as __pgsession from './${API}.cjs';
/** The middleware factory (express-session's \`session(options)\`); see the ESM declarations. */
declare function session(options: __pgsession.SessionOptions): __pgsession.SessionMiddleware;
declare namespace session {
${namespaceMembers(names, '__pgsession').join('\n')}
}
export = session;
`,
  );
}

/** The file's text; undefined when a partial build (one entry) did not produce it. */
async function readIfPresent(file) {
  return existsSync(file) ? readFile(file, 'utf8') : undefined;
}
