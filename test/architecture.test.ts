import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * The layering of docs/architecture.md, checked on every run so it stays true: the core owns its
 * ports and imports nothing of ours outside itself; adapters share `adapters/http.ts` and never
 * import each other; stores implement the core's port without knowing any framework; the
 * package entries never reach the development tooling in `src/dev`.
 */
const src = fileURLToPath(new URL('../src', import.meta.url));

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts') ? [path] : [];
  });
}

interface Edge {
  from: string;
  to: string;
}

/** Every relative import (static, dynamic, `export … from`, type-only) as paths under src/. */
function edges(): Edge[] {
  const specifier = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)['"](\.{1,2}\/[^'"]+)['"]/g;
  return sourceFiles(src).flatMap((file) => {
    const text = readFileSync(file, 'utf8');
    return [...text.matchAll(specifier)].map((match) => ({
      from: relative(src, file).split(sep).join('/'),
      to: relative(src, resolve(dirname(file), match[1] as string))
        .split(sep)
        .join('/')
        .replace(/\.js$/, '.ts'),
    }));
  });
}

const area = (path: string): string => {
  const [top, second] = path.split('/');
  return top === 'adapters' && second && !second.endsWith('.ts') ? `adapters/${second}` : (top as string);
};

const all = edges();

describe('architecture: import rules', () => {
  it('finds the imports it checks (the scan itself works)', () => {
    expect(all.some((e) => e.from === 'core/engine.ts' && e.to.startsWith('core/'))).toBe(true);
    expect(all.some((e) => e.from.startsWith('adapters/express/') && e.to === 'adapters/http.ts')).toBe(true);
  });

  it('src/core imports nothing of ours outside src/core', () => {
    const outside = all.filter((e) => e.from.startsWith('core/') && !e.to.startsWith('core/'));
    expect(outside).toEqual([]);
  });

  it('adapters never import each other (only adapters/http.ts is shared)', () => {
    const crossing = all.filter((e) => {
      const from = area(e.from);
      const to = area(e.to);
      return from.startsWith('adapters/') && to.startsWith('adapters/') && from !== to;
    });
    expect(crossing).toEqual([]);
  });

  it('adapters/http.ts depends on core and stores only (the default store, express-style stores)', () => {
    const deps = all.filter((e) => e.from === 'adapters/http.ts' && !/^(core|stores)\//.test(e.to));
    expect(deps).toEqual([]);
  });

  it('stores know no framework, no auth and no development tooling', () => {
    const bad = all.filter(
      (e) => e.from.startsWith('stores/') && /^(adapters|auth|dev|metrics)\//.test(e.to),
    );
    expect(bad).toEqual([]);
  });

  it('no library module imports src/dev (the embedded PostgreSQL is for the demo, tests and CLI)', () => {
    const bad = all.filter((e) => !e.from.startsWith('dev/') && e.to.startsWith('dev/'));
    expect(bad).toEqual([]);
  });
});
