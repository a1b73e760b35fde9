import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { lstat, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { commitModel, resetStaging } from '../../disk/atomic.ts';
import { MARKER_FILE, modelPaths } from '../../disk/layout.ts';

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'modelcache-marker-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Another complete model whose weights a planted link aims at. */
async function victim(key: string): Promise<string> {
  const dir = modelPaths(root, key).final;
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'w.bin'), 'weights');
  await writeFile(join(dir, MARKER_FILE), JSON.stringify({ storageKey: key }));
  return join(dir, 'w.bin');
}

test('the marker is written without following what sits at its names (High #1, third hole)', async () => {
  const plants: Array<[string, (staging: string, target: string) => Promise<void>]> = [
    ['temp is a symlink', (s, t) => symlink(t, join(s, `${MARKER_FILE}.tmp`))],
    ['temp is a folder', (s) => mkdir(join(s, `${MARKER_FILE}.tmp`, 'x'), { recursive: true }).then(() => undefined)],
    ['marker is a symlink', (s, t) => symlink(t, join(s, MARKER_FILE))],
    ['marker is a folder', (s) => mkdir(join(s, MARKER_FILE))],
  ];
  for (const [i, [label, plant]] of plants.entries()) {
    const target = await victim(`victim-${i}`);
    const key = `model-${i}`;
    const staging = await resetStaging(root, key);
    await writeFile(join(staging, 'config.json'), '{}');
    await plant(staging, target);
    await commitModel(root, key, { uri: 'https://example.com/m.tar', bytes: 2, files: 1 });
    assert.equal(await readFile(target, 'utf8'), 'weights', `${label}: the other model's weights were overwritten`);
    const marker = join(modelPaths(root, key).final, MARKER_FILE);
    assert.ok((await lstat(marker)).isFile(), `${label}: the marker is not a regular file`);
    assert.equal(JSON.parse(await readFile(marker, 'utf8')).storageKey, key, label);
    assert.equal(
      await lstat(join(modelPaths(root, key).final, `${MARKER_FILE}.tmp`)).catch(() => 'absent'),
      'absent',
      label,
    );
  }
});
