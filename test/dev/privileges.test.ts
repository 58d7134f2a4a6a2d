import { execFileSync } from 'node:child_process';
import { chmod, chown, link, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createExclusive,
  readOwnedFile,
  UntrustedPathError,
  verifyDirectory,
} from '../../src/dev/privileges.js';

const isRoot = process.getuid?.() === 0;
let root: string;

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'pgsession-privileges-'));
});
afterAll(() => rm(root, { recursive: true, force: true }));

describe('what root checks before it touches a path', () => {
  it('verifyDirectory: real directories of root, writable by nobody else, every ancestor too', async () => {
    const ok = path.join(root, 'ok', 'deeper');
    await mkdir(ok, { recursive: true, mode: 0o755 });
    await chmod(path.dirname(ok), 0o755);
    await chmod(ok, 0o755);
    const uid = process.getuid?.() ?? 0;
    expect(await verifyDirectory(ok, [uid], 'test')).toBe(ok);
    // A symlink on the way is resolved, and the real path returned.
    await symlink(ok, path.join(root, 'link'));
    expect(await verifyDirectory(path.join(root, 'link'), [uid], 'test')).toBe(ok);
    // Writable by others: refused, for the folder and for any ancestor.
    await chmod(path.dirname(ok), 0o777);
    await expect(verifyDirectory(ok, [uid], 'test')).rejects.toThrow(UntrustedPathError);
    await chmod(path.dirname(ok), 0o755);
    await chmod(ok, 0o775);
    await expect(verifyDirectory(ok, [uid], 'test')).rejects.toThrow(/writable by other users/);
    await chmod(ok, 0o755);
    // Owned by someone not allowed.
    await expect(verifyDirectory(ok, [uid + 1], 'test')).rejects.toThrow(/is owned by uid/);
    // A sticky shared folder (/tmp) is fine as an ancestor, and as the folder only with `shared`.
    await expect(verifyDirectory(tmpdir(), [0], 'test')).rejects.toThrow(/writable by other users/);
    if (isRoot) expect(await verifyDirectory(tmpdir(), [0], 'test', { shared: true })).toBeTruthy();
  });

  it.runIf(isRoot)('readOwnedFile: no symlink, no hard link, only the expected owner', async () => {
    const secret = path.join(root, 'secret');
    await writeFile(secret, 'root only', { mode: 0o600 });
    const dir = path.join(root, 'theirs');
    await mkdir(dir);
    const file = path.join(dir, 'pgsession-password');
    await writeFile(file, 'pw\n');
    await chown(file, 101, 101);
    expect(await readOwnedFile(file, 101)).toBe('pw\n');
    await expect(readOwnedFile(file, 102)).rejects.toThrow(UntrustedPathError);
    await symlink(secret, path.join(dir, 'sym'));
    await expect(readOwnedFile(path.join(dir, 'sym'), 0)).rejects.toThrow(/ELOOP|symbolic/);
    await link(secret, path.join(dir, 'hard'));
    await expect(readOwnedFile(path.join(dir, 'hard'), 0)).rejects.toThrow(UntrustedPathError);
  });

  it('createExclusive: never follows a symlink and never reuses an existing file', async () => {
    const target = path.join(root, 'target');
    await writeFile(target, 'keep', { mode: 0o600 });
    await symlink(target, path.join(root, 'planted'));
    await expect(createExclusive(path.join(root, 'planted'), 'x', 0o600)).rejects.toThrow(/EEXIST/);
    await expect(createExclusive(target, 'x', 0o600)).rejects.toThrow(/EEXIST/);
    expect(execFileSync('cat', [target], { encoding: 'utf8' })).toBe('keep');
    await createExclusive(path.join(root, 'fresh'), 'new', 0o640);
    expect(execFileSync('stat', ['-c', '%a', path.join(root, 'fresh')], { encoding: 'utf8' }).trim()).toBe(
      '640',
    );
  });
});
