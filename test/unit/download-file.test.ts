import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { downloadModel } from '../../download/fetch.ts';
import { DownloadError } from '../../download/errors.ts';
import { makeTar } from '../../localcluster/archives.ts';

async function setup(t: {
  after: (fn: () => Promise<void>) => void;
}): Promise<{ allowed: string; outside: string; work: () => Promise<string> }> {
  const base = await mkdtemp(join(tmpdir(), 'modelcache-file-'));
  t.after(() => rm(base, { recursive: true, force: true }));
  const allowed = join(base, 'models');
  const outside = join(base, 'secrets');
  await mkdir(join(allowed, 'llama', 'weights'), { recursive: true });
  await mkdir(outside);
  await writeFile(join(allowed, 'llama', 'config.json'), '{"a":1}');
  await writeFile(join(allowed, 'llama', 'weights', 'w0.bin'), Buffer.alloc(100_000, 7));
  await writeFile(join(outside, 'key'), 'secret');
  let n = 0;
  return {
    allowed,
    outside,
    work: async () => {
      const d = join(base, `w${n++}`);
      await mkdir(d);
      return d;
    },
  };
}

const run = (uri: string, workDir: string, fileRoots: string[], maxBytes = 1_000_000) =>
  downloadModel({ uri, workDir, maxBytes, signal: AbortSignal.timeout(10_000), options: { fileRoots } });

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    assert.ok(err instanceof DownloadError, String(err));
    return err.code;
  }
}

test('file://: a directory tree and a single file are copied; a tar.gz file is extracted', async (t) => {
  const { allowed, work } = await setup(t);
  const dir = await work();
  assert.deepEqual(await run(pathToFileURL(join(allowed, 'llama')).href, dir, [allowed]), { bytes: 100_007, files: 2 });
  assert.equal(await readFile(join(dir, 'config.json'), 'utf8'), '{"a":1}');
  assert.ok((await readFile(join(dir, 'weights', 'w0.bin'))).equals(Buffer.alloc(100_000, 7)));
  const single = join(await work(), 'not-yet-created');
  await run(pathToFileURL(join(allowed, 'llama', 'config.json')).href, single, [allowed]);
  assert.deepEqual(await readdir(single), ['config.json']);
  await writeFile(join(allowed, 'bundle.tgz'), await makeTar([{ name: 'm/a.txt', content: 'A' }], true));
  const tgz = await work();
  await run(pathToFileURL(join(allowed, 'bundle.tgz')).href, tgz, [allowed]);
  assert.equal(await readFile(join(tgz, 'm', 'a.txt'), 'utf8'), 'A');
});

test('file://: refused outside the allowed roots, through escaping symlinks, when disabled; missing and oversized are clear', async (t) => {
  const { allowed, outside, work } = await setup(t);
  await symlink(join(outside, 'key'), join(allowed, 'llama', 'sneaky'));
  assert.equal(
    await code(run(pathToFileURL(join(allowed, 'llama')).href, await work(), [allowed])),
    'AccessDenied',
    'symlink out of the root',
  );
  assert.equal(await code(run(pathToFileURL(join(outside, 'key')).href, await work(), [allowed])), 'AccessDenied');
  assert.equal(
    await code(run(pathToFileURL(join(allowed, '..', 'secrets', 'key')).href, await work(), [allowed])),
    'AccessDenied',
    '.. out of the root',
  );
  const disabled = await run(pathToFileURL(join(allowed, 'llama', 'config.json')).href, await work(), []).catch(
    (e: unknown) => e,
  );
  assert.match(
    (disabled as Error).message,
    /file:\/\/ sources are disabled on this daemon; start it with --allow-file-root DIR/,
  );
  assert.equal(await code(run(pathToFileURL(join(allowed, 'nope')).href, await work(), [allowed])), 'SourceNotFound');
  assert.equal(
    await code(run(pathToFileURL(join(allowed, 'llama', 'weights', 'w0.bin')).href, await work(), [allowed], 1000)),
    'SizeExceeded',
  );
});
