import assert from 'node:assert/strict';
import { DownloadError } from '../../download/errors.ts';

/** The DownloadError a download failed with (fails the test when it succeeded or failed otherwise). */
export async function downloadFailure(p: Promise<unknown>): Promise<DownloadError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(err instanceof DownloadError, `expected a DownloadError, got ${String(err)}`);
  return err;
}
