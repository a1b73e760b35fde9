// The batch writer on a real disk that fills up (a small tmpfs): the bytes it reports written are exactly those on
// disk from its first position on, so a resume never skips a hole and a seed never hashes one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BatchWriter } from '../../download/batch-writer.ts';
import { DownloadError } from '../../download/errors.ts';
import { generated, toBuffer } from '../../localcluster/origin.ts';
import { smallTmpfs } from '../helpers/tmpfs.ts';

const MiB = 1024 * 1024;

test('a disk that fills mid-batch: only bytes really written are reported, and nothing is written after', async (t) => {
  const mnt = await smallTmpfs(t, '2m');
  if (!mnt) return;
  const filler = join(mnt, 'filler');
  await writeFile(filler, Buffer.alloc(256 * 1024, 1));
  const data = toBuffer(generated(3 * MiB, 4));
  const fh = await open(join(mnt, 'file'), 'w');
  let reported = 0;
  const w = new BatchWriter(fh, 0, (n) => (reported += n), 'file');
  const full = (e: unknown): boolean => e instanceof DownloadError && e.code === 'InsufficientCapacity';
  try {
    await w.push(data.subarray(0, 1.5 * MiB)); // written while the next arrives
    // The second batch fits only in part: a short write, then the disk is full.
    await assert.rejects(
      (async () => {
        await w.push(data.subarray(1.5 * MiB, 2.5 * MiB));
        await w.drain();
      })(),
      full,
    );
    const after = reported;
    // Space again (the filler removed): the writer stays failed, it writes and reports nothing more.
    await rm(filler);
    await assert.rejects(w.push(data.subarray(2.5 * MiB)), full);
    await assert.rejects(w.drain(), full);
    assert.equal(reported, after, 'nothing reported after the failure');
  } finally {
    await fh.close();
  }
  const disk = await readFile(join(mnt, 'file'));
  assert.ok(reported <= disk.length, `reported ${reported} bytes, ${disk.length} on disk`);
  assert.ok(disk.subarray(0, reported).equals(data.subarray(0, reported)), 'every reported byte is the data');
  assert.ok(reported >= 1.5 * MiB, `the first batch counts: ${reported}`);
});
