#!/usr/bin/env node
// Post-build step (run after `tsup`, as `tsup && node scripts/fix-cjs.mjs [outDir]`): make the
// CommonJS builds export what the packages they replace export. esbuild emits
// `exports.default = fn` for a default export, and tsup's `cjsInterop` does not rewrite entries
// that also have named exports.
//
// - dist/index.cjs: `require('pgsession')` is the middleware factory, as
//   `require('express-session')` is, with every named export as a property of the function
//   (`require('pgsession').MemoryStore`, `.Store`, `.Cookie`, …) and `.default` pointing back at
//   it (code compiled with esModuleInterop reads `.default`). Its .d.cts stays as emitted: it
//   declares `default` plus the named exports, which all exist.
// - dist/connect-pg-simple.cjs: `module.exports` = the factory, as connect-pg-simple does, so
//   `require('pgsession/connect-pg-simple')(session)` works unchanged (also kept as `.default`).
//   Its .d.cts: `export { …, x as default }` becomes `export = x` (types stay reachable through
//   the namespace merged with the function: `x.Options`, …).
//
// Idempotent: running it twice changes nothing the second time. Entries and declaration files
// that a partial build (one entry, no `--dts`) did not produce are skipped; finding none of the
// entries is an error (a wrong folder).
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

const dist = path.resolve(process.argv[2] ?? 'dist');
const MARKER = '// pgsession: CommonJS export is the default export itself';

let found = 0;

/**
 * Insert `patch` before the source-map comment (so the map stays valid) unless already there.
 * An entry the build did not produce is skipped (tests build single entries).
 */
async function patchJs(entry, patch) {
  const js = path.join(dist, `${entry}.cjs`);
  let code = await readIfPresent(js);
  if (code === undefined) return;
  found++;
  if (code.includes(MARKER)) return;
  const text = `${MARKER}\n${patch}`;
  const mapAt = code.lastIndexOf('//# sourceMappingURL=');
  code = mapAt === -1 ? `${code}\n${text}` : `${code.slice(0, mapAt)}${text}${code.slice(mapAt)}`;
  await writeFile(js, code);
}

async function readIfPresent(file) {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if (err?.code === 'ENOENT') return undefined;
    throw err;
  }
}

// index: the function, carrying the named exports. Property descriptors are copied as they are
// (esbuild may emit getters for live bindings), `__esModule` included, so that interop helpers
// (`__importDefault`, `__importStar`) read `.default` and the names as before.
await patchJs(
  'index',
  `{
  const named = module.exports;
  const main = named.default;
  if (typeof main !== 'function') throw new Error('pgsession: the default export is not a function');
  for (const [key, descriptor] of Object.entries(Object.getOwnPropertyDescriptors(named))) {
    Object.defineProperty(main, key, { ...descriptor, configurable: true });
  }
  module.exports = main;
}
`,
);

// connect-pg-simple: the factory itself.
await patchJs(
  'connect-pg-simple',
  'module.exports = module.exports.default;\nmodule.exports.default = module.exports;\n',
);
const dts = path.join(dist, 'connect-pg-simple.d.cts');
const types = await readIfPresent(dts);
if (types !== undefined) {
  const exportLine = /^export \{([^}]*)\};?\s*$/m;
  const match = exportLine.exec(types);
  if (match) {
    const name = /\b([A-Za-z_$][\w$]*) as default\b/.exec(match[1])?.[1];
    if (!name) throw new Error(`${dts}: no default export to turn into \`export =\``);
    await writeFile(dts, types.replace(exportLine, `export = ${name};\n`));
  } else if (!/^export = /m.test(types)) {
    throw new Error(`${dts}: unexpected declaration layout (no export list found)`);
  }
}

if (found === 0)
  throw new Error(`${dist}: neither index.cjs nor connect-pg-simple.cjs found; run tsup first`);
