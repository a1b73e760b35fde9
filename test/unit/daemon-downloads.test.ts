import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { storageKeyFor } from '../../api/storage-key.ts';
import type { LocalModelInfo } from '../../api/types.ts';
import { DownloadManager } from '../../daemon/downloads.ts';
import { DaemonMetrics } from '../../daemon/metrics.ts';
import { CapacityLedger } from '../../disk/capacity.ts';
import { createLogger } from '../../ops/logger.ts';
import { Origin, generated, toBuffer } from '../../localcluster/origin.ts';
import { eventually } from '../../localcluster/eventually.ts';

test('a download asked for again after it completed (a plan from an older look at the disk) fetches nothing and leaves the folder alone', async (t) => {
  const origin = await Origin.start();
  const root = await mkdtemp(join(tmpdir(), 'modelcache-dm-'));
  t.after(async () => {
    await origin.close();
    await rm(root, { recursive: true, force: true });
  });
  const body = toBuffer(generated(300_000, 7));
  origin.set('/m.bin', body);
  const uri = origin.url('/m.bin');
  const model: LocalModelInfo = {
    sourceModelUri: uri,
    modelName: 'm',
    modelSize: 1_000_000,
    storagePath: root,
    storageKey: storageKeyFor(uri),
  };
  const quiet = new Writable({ write: (_c, _e, cb) => cb() });
  const dm = new DownloadManager({
    root,
    ledger: new CapacityLedger(root, 0),
    maxConcurrent: 2,
    log: createLogger('daemon', 'warn', quiet),
    metrics: new DaemonMetrics(),
    onChange: () => undefined,
  });
  t.after(() => dm.stop());

  dm.start(model);
  await eventually(async () =>
    assert.ok(
      !dm.snapshot().inFlight.has(model.storageKey) &&
        (await stat(join(root, 'models', model.storageKey, '.modelcache.json')).catch(() => undefined)),
    ),
  );
  const folder = await stat(join(root, 'models', model.storageKey));
  assert.equal(origin.requestsFor('/m.bin').length, 1);

  dm.start(model);
  await eventually(async () => assert.ok(!dm.snapshot().inFlight.has(model.storageKey)));
  assert.equal(origin.requestsFor('/m.bin').length, 1, 'not fetched again');
  assert.equal(
    (await stat(join(root, 'models', model.storageKey))).ino,
    folder.ino,
    'the same folder: never swapped under readers',
  );
  assert.deepEqual(await readFile(join(root, 'models', model.storageKey, 'm.bin')), body);
});
