#!/usr/bin/env node
// Post-build step (run after `tsup`): make the CommonJS build of `pgsession/connect-pg-simple`
// export the factory itself, as connect-pg-simple does, so that
//   const PgSession = require('pgsession/connect-pg-simple')(session);
// works unchanged. esbuild emits `module.exports = { default: factory }` for a default export,
// and tsup's `cjsInterop` only rewrites it when code splitting is on.
//
// - dist/<entry>.cjs:   module.exports = the default export (also kept as `.default`, so code
//                       compiled with esModuleInterop, which reads `.default`, keeps working).
// - dist/<entry>.d.cts: `export { …, x as default }` becomes `export = x` (types stay reachable
//                       through the namespace merged with the function: `x.Options`, …).
//
// Idempotent: running it twice changes nothing the second time.
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

const dist = path.resolve(process.argv[2] ?? 'dist');
const entries = ['connect-pg-simple'];
const MARKER = '// pgsession: CommonJS export is the default export itself';

for (const entry of entries) {
  const js = path.join(dist, `${entry}.cjs`);
  let code = await readFile(js, 'utf8');
  if (!code.includes(MARKER)) {
    const patch = `${MARKER}\nmodule.exports = module.exports.default;\nmodule.exports.default = module.exports;\n`;
    const mapAt = code.lastIndexOf('//# sourceMappingURL=');
    code = mapAt === -1 ? `${code}\n${patch}` : `${code.slice(0, mapAt)}${patch}${code.slice(mapAt)}`;
    await writeFile(js, code);
  }

  const dts = path.join(dist, `${entry}.d.cts`);
  const types = await readFile(dts, 'utf8');
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
