// What a copy from peers hands the next attempt when it fails after an earlier one did: the verified pieces of both,
// file by file, except where the file changed between them (another size or piece size), where only the later count.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mergeKept } from '../../daemon/peer-copy.ts';
import type { KeptPieces } from '../../download/types.ts';

const MiB = 1024 * 1024;
const kept = (path: string, size: number, pieces: number[], pieceSize = 16 * MiB): KeptPieces => ({
  path,
  size,
  file: `.download/peer-${path}`,
  pieceSize,
  pieces,
});

test('pieces of the same file from two copies are joined once each, in order', () => {
  const merged = mergeKept([kept('w.bin', 64 * MiB, [0, 2])], [kept('w.bin', 64 * MiB, [3, 2, 1])]);
  assert.deepEqual(merged, [kept('w.bin', 64 * MiB, [0, 1, 2, 3])]);
});

test('a file of another size or piece size in the later copy keeps only the later pieces', () => {
  const resized = mergeKept([kept('w.bin', 64 * MiB, [0, 1, 2])], [kept('w.bin', 48 * MiB, [2])]);
  assert.deepEqual(resized, [kept('w.bin', 48 * MiB, [2])]);
  const repieced = mergeKept([kept('w.bin', 64 * MiB, [0, 1])], [kept('w.bin', 64 * MiB, [3], 8 * MiB)]);
  assert.deepEqual(repieced, [kept('w.bin', 64 * MiB, [3], 8 * MiB)]);
});

test('files only one copy kept stay as they were', () => {
  const merged = mergeKept(
    [kept('a.bin', 32 * MiB, [1]), kept('b.bin', 32 * MiB, [0])],
    [kept('b.bin', 32 * MiB, [1]), kept('c.bin', 16 * MiB, [0])],
  );
  assert.deepEqual(
    [...merged].sort((x, y) => x.path.localeCompare(y.path)),
    [kept('a.bin', 32 * MiB, [1]), kept('b.bin', 32 * MiB, [0, 1]), kept('c.bin', 16 * MiB, [0])],
  );
  assert.deepEqual(mergeKept([], []), []);
});
