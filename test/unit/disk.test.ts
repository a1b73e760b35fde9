import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { commitModel, removeModel, resetStaging } from '../../disk/atomic.ts';
import { CapacityError, CapacityLedger } from '../../disk/capacity.ts';
import { emptyTrash, takeInventory } from '../../disk/inventory.ts';
import { MARKER_FILE, modelPaths } from '../../disk/layout.ts';
import { DownloadError } from '../../download/errors.ts';
import { asDownloadError } from '../../download/failure-policy.ts';
import { downloadModel } from '../../download/fetch.ts';
import { Origin, generated } from '../../localcluster/origin.ts';
import { smallTmpfs } from '../helpers/tmpfs.ts';

test('commit publishes staging with its marker; inventory sees complete, partial and unknown; remove leaves nothing', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'modelcache-disk-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const staging = await resetStaging(root, 'k1');
  await writeFile(join(staging, 'w.bin'), 'abc');
  const marker = await commitModel(root, 'k1', { uri: 's3://b/m', bytes: 3, files: 1 });
  assert.equal(JSON.parse(await readFile(join(root, 'models', 'k1', MARKER_FILE), 'utf8')).uri, 's3://b/m');
  assert.equal(marker.storageKey, 'k1');
  assert.deepEqual((await readdir(root)).sort(), ['.modelcache', 'models'], 'staging and trash stay out of models/');
  await resetStaging(root, 'k2');
  await mkdir(join(root, 'models', 'crashed-mid-commit'));
  const inv = await takeInventory(root);
  assert.deepEqual([...inv.complete.keys()], ['k1']);
  assert.deepEqual([...inv.partial], ['k2']);
  assert.deepEqual(inv.unknown, ['crashed-mid-commit']);
  await removeModel(root, 'k1');
  await removeModel(root, 'k2');
  assert.deepEqual(await readdir(join(root, 'models')), ['crashed-mid-commit']);
  assert.deepEqual(await readdir(join(root, '.modelcache', 'staging')), []);
  assert.throws(() => modelPaths(root, '../evil'), /invalid storage key/);
  await mkdir(join(root, '.modelcache', 'trash', 'interrupted-removal'), { recursive: true });
  await mkdir(join(root, '.trash', 'left-by-the-earlier-layout'), { recursive: true });
  await emptyTrash(root);
  assert.deepEqual(
    await readdir(join(root, '.modelcache')),
    ['staging'],
    'start-up empties what a crash left in the trash',
  );
  assert.ok(!(await readdir(root)).includes('.trash'), "and the earlier layout's trash");
});

test('capacity: reservations of downloads in flight and the margin count against free space; the message has the numbers', async () => {
  const ledger = new CapacityLedger('/models', 1024 ** 3, async () => 10 * 1024 ** 3);
  await ledger.reserve('a', 6 * 1024 ** 3);
  await assert.rejects(ledger.reserve('b', 4 * 1024 ** 3), (err: unknown) => {
    assert.ok(err instanceof CapacityError && err.code === 'InsufficientCapacity');
    assert.match(
      err.message,
      /needs 4Gi but only 3Gi is available on \/models \(10Gi free, 6Gi reserved by downloads in flight, 1Gi safety margin\)/,
    );
    // What reaches the status: the download code InsufficientCapacity with the same message.
    const reported = asDownloadError(err, 'reserving');
    assert.ok(reported instanceof DownloadError && reported.code === 'InsufficientCapacity');
    assert.equal(reported.message, err.message);
    return true;
  });
  ledger.release('a');
  await ledger.reserve('b', 4 * 1024 ** 3);
});

test('disk full on a real tmpfs: the capacity check refuses, and a download that fills the disk leaves nothing behind', async (t) => {
  const mnt = await smallTmpfs(t, '4m');
  if (!mnt) return;
  const origin = await Origin.start();
  t.after(() => origin.close());
  const ledger = new CapacityLedger(mnt, 0);
  await assert.rejects(ledger.reserve('big', 8 * 1024 * 1024), /needs 8Mi but only .* is available/);
  origin.set('/fill.bin', generated(6 * 1024 * 1024));
  const staging = await resetStaging(mnt, 'fill');
  const err = await downloadModel({
    uri: origin.url('/fill.bin'),
    workDir: staging,
    maxBytes: 8 * 1024 * 1024,
    signal: AbortSignal.timeout(20_000),
  }).catch((e: unknown) => e);
  assert.ok(err instanceof DownloadError && err.code === 'InsufficientCapacity', String(err));
  assert.deepEqual(await readdir(staging), [], 'no partial data left in staging');
  assert.deepEqual((await takeInventory(mnt)).complete.size, 0);
});
