import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

/**
 * A real tmpfs of `size` (mount's notation: '2m', '4m') mounted for this test and removed after it, for disk-full
 * cases; undefined, with the test skipped and saying why, when not run as root.
 */
export async function smallTmpfs(t: TestContext, size: string): Promise<string | undefined> {
  if (process.getuid?.() !== 0) {
    t.skip('needs root to mount a tmpfs (run the suite as root to cover disk-full)');
    return undefined;
  }
  const mnt = await mkdtemp(join(tmpdir(), 'modelcache-tmpfs-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', mnt]);
  t.after(async () => {
    execFileSync('umount', [mnt]);
    await rm(mnt, { recursive: true, force: true });
  });
  return mnt;
}
