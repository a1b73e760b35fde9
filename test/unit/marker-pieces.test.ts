import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { commitModel } from '../../disk/atomic.ts';
import { readMarker } from '../../disk/inventory.ts';
import { modelPaths } from '../../disk/layout.ts';

test('marker: the piece summary and bytes from peers round-trip; a malformed summary only drops the summary', async () => {
  const root = await mkdtemp(join(tmpdir(), 'mc-marker-'));
  try {
    const key = 'k1';
    await mkdir(modelPaths(root, key).staging, { recursive: true });
    const pieces = { digest: `sha256:${'ab'.repeat(32)}`, pieceSize: 16, count: 3 };
    await commitModel(root, key, {
      uri: 'https://o/m',
      uriSha256: 'c'.repeat(64),
      bytes: 40,
      files: 2,
      pieces,
      bytesFromPeers: 40,
    });
    const m = await readMarker(root, key);
    assert.deepEqual([m?.pieces, m?.bytesFromPeers], [pieces, 40]);

    const path = modelPaths(root, key).marker;
    const raw = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
    for (const bad of [{ ...pieces, digest: 'md5:00' }, { ...pieces, pieceSize: 0 }, { ...pieces, count: -1 }, 'x']) {
      await writeFile(path, JSON.stringify({ ...raw, pieces: bad, bytesFromPeers: -5 }));
      const again = await readMarker(root, key, (p, why) => assert.fail(`${p} reported invalid: ${why}`));
      assert.equal(again?.bytes, 40, 'still a complete model');
      assert.equal(again?.pieces, undefined, `summary ${JSON.stringify(bad)} is not offered`);
      assert.equal(again?.bytesFromPeers, undefined);
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
