/**
 * `pgsession/testing` runs under node:test as well as vitest: it takes the runner's `describe`
 * and `it` and imports no test framework. Here node:test runs the contract on the memory store
 * in a child process, as a store author's project would.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const run = promisify(execFile);

it('the store contract runs under node:test, and fails there when a rule is broken', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'pgsession-contract-'));
  const testing = JSON.stringify(path.join(root, 'src/testing/index.ts'));
  const memory = JSON.stringify(path.join(root, 'src/stores/memory/memory-store.ts'));
  const store = JSON.stringify(path.join(root, 'src/core/store.ts'));
  const script = (broken: boolean) => `import { describe, it } from 'node:test';
import { storeContract } from ${testing};
import { MemoryStore } from ${memory};
import { kSessionStore } from ${store};
storeContract({
  name: 'MemoryStore under node:test',
  describe,
  it,
  makeStore: (now) => {
    const face = new MemoryStore({ now })[kSessionStore];
    // A store that lets a destroyed session come back through touch.
    return ${broken} ? { ...face, touch: async () => true } : face;
  },
});
`;
  const node = async (file: string) => {
    try {
      const { stdout } = await run(
        process.execPath,
        ['--import', 'tsx', '--test', '--test-reporter=tap', file],
        {
          cwd: root,
          timeout: 120_000,
        },
      );
      return { code: 0, stdout };
    } catch (err) {
      const e = err as { code?: number; stdout?: string };
      return { code: e.code ?? 1, stdout: e.stdout ?? '' };
    }
  };
  try {
    await writeFile(path.join(dir, 'good.test.mts'), script(false));
    await writeFile(path.join(dir, 'broken.test.mts'), script(true));
    const good = await node(path.join(dir, 'good.test.mts'));
    expect(good.stdout).toMatch(/^# fail 0$/m);
    expect(Number(/^# pass (\d+)$/m.exec(good.stdout)?.[1])).toBeGreaterThan(10);
    expect(good.code).toBe(0);
    const broken = await node(path.join(dir, 'broken.test.mts'));
    expect(broken.code).not.toBe(0);
    expect(broken.stdout).toMatch(/not ok .*nothing brings it back/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}, 180_000);
