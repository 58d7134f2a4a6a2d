/**
 * Under Express the middleware switches `req` and `res` to dictionary properties (see
 * src/adapters/express/dictionary-mode.ts), which is what makes its per-request cost small
 * there; on objects that kept their class's prototype it must leave them as they are. Either
 * way every value stays, and the session works. Checked with V8's own verdict
 * (`%HasFastProperties`, which needs `--allow-natives-syntax`, hence the child process).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);

describe('property modes of req and res', () => {
  it('Express: dictionary mode, values kept; plain node:http: untouched', async () => {
    const { stdout } = await run(
      process.execPath,
      ['--allow-natives-syntax', '--import', 'tsx', 'test/express/fixtures/property-modes.ts'],
      { timeout: 60_000 },
    );
    const { viaExpress, viaHttp } = JSON.parse(stdout) as Record<string, Array<Record<string, unknown>>>;
    for (const seen of viaExpress!) {
      expect(seen).toMatchObject({ fastReq: false, fastRes: false, httpVersion: '1.1', sendDate: true });
    }
    for (const seen of viaHttp!) {
      expect(seen).toMatchObject({ fastReq: true, fastRes: true, httpVersion: '1.1', sendDate: true });
    }
    // The session itself works on both: the second request sees the first one's change.
    expect(viaExpress!.map((s) => s.views)).toEqual([1, 2]);
    expect(viaHttp!.map((s) => s.views)).toEqual([1, 2]);
  });
});
