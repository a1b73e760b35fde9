import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { storageKeyFor } from '../../api/storage-key.ts';
import type { LocalModelInfo } from '../../api/types.ts';
import { DownloadManager } from '../../daemon/downloads.ts';
import { DaemonMetrics } from '../../daemon/metrics.ts';
import { CapacityLedger } from '../../disk/capacity.ts';
import { emptyTrash, takeInventory } from '../../disk/inventory.ts';
import { migrateLegacyLayout } from '../../disk/legacy-layout.ts';
import { MARKER_FILE } from '../../disk/layout.ts';
import { createLogger } from '../../ops/logger.ts';
import { eventually } from '../../localcluster/eventually.ts';
import { Origin, generated, toBuffer } from '../../localcluster/origin.ts';

async function setup(
  t: TestContext,
): Promise<{ root: string; origin: Origin; dm: DownloadManager; logs: () => string }> {
  const origin = await Origin.start();
  const root = await mkdtemp(join(tmpdir(), 'modelcache-layout-'));
  const lines: Buffer[] = [];
  const sink = new Writable({
    write: (c: Buffer, _e, cb) => {
      lines.push(c);
      cb();
    },
  });
  const dm = new DownloadManager({
    root,
    ledger: new CapacityLedger(root, 0),
    maxConcurrent: 2,
    log: createLogger('daemon', 'debug', sink),
    metrics: new DaemonMetrics(),
    onChange: () => undefined,
    download: { attempts: 1, backoffBaseMs: 10, backoffMaxMs: 10 },
  });
  t.after(async () => {
    await dm.stop();
    await origin.close();
    await rm(root, { recursive: true, force: true });
  });
  return { root, origin, dm, logs: () => Buffer.concat(lines).toString() };
}

const modelFor = (root: string, uri: string): LocalModelInfo => ({
  sourceModelUri: uri,
  modelName: 'm',
  modelSize: 1_000_000,
  storagePath: root,
  storageKey: storageKeyFor(uri),
});

/** Waits until the download manager is done with the model and returns the marker it left, if any. */
async function settled(dm: DownloadManager, root: string, key: string): Promise<Record<string, unknown>> {
  await eventually(async () =>
    assert.ok(
      !dm.snapshot().inFlight.has(key) && (await stat(join(root, 'models', key, MARKER_FILE)).catch(() => undefined)),
    ),
  );
  return JSON.parse(await readFile(join(root, 'models', key, MARKER_FILE), 'utf8')) as Record<string, unknown>;
}

test('the earlier layout moves under models/ at start: no byte is fetched again, a partial download resumes', async (t) => {
  const { root, origin, dm } = await setup(t);
  const done = toBuffer(generated(200_000, 1));
  const half = toBuffer(generated(400_000, 2));
  origin.set('/done.bin', done);
  origin.set('/half.bin', half, { etag: '"v1"' });
  const a = modelFor(root, origin.url('/done.bin'));
  const b = modelFor(root, origin.url('/half.bin'));
  // What a daemon of the earlier layout left: <root>/<key> with its marker, <root>/.staging/<key>, <root>/.trash.
  await mkdir(join(root, a.storageKey));
  await writeFile(join(root, a.storageKey, 'done.bin'), done);
  const marker = { uri: a.sourceModelUri, storageKey: a.storageKey, bytes: done.length, files: 1 };
  await writeFile(
    join(root, a.storageKey, MARKER_FILE),
    JSON.stringify({ ...marker, completedAt: '2026-11-01T00:00:00Z' }),
  );
  await mkdir(join(root, '.staging', b.storageKey, '.download'), { recursive: true });
  await writeFile(join(root, '.staging', b.storageKey, '.download', 'half.bin.partial'), half.subarray(0, 150_000));
  await writeFile(
    join(root, '.staging', b.storageKey, '.download', 'half.bin.partial.json'),
    JSON.stringify({ url: b.sourceModelUri, etag: '"v1"', total: half.length }),
  );
  await mkdir(join(root, '.trash', 'interrupted'), { recursive: true });
  await mkdir(join(root, 'not-ours'));

  const first = await migrateLegacyLayout(root);
  assert.deepEqual(first, { moved: [a.storageKey], staged: [b.storageKey], kept: [] });
  assert.deepEqual(
    await migrateLegacyLayout(root),
    { moved: [], staged: [], kept: [] },
    'a second start moves nothing',
  );
  await emptyTrash(root);
  assert.deepEqual((await readdir(root)).sort(), ['.modelcache', 'models', 'not-ours']);
  const inv = await takeInventory(root);
  assert.deepEqual([...inv.complete.keys()], [a.storageKey]);
  assert.deepEqual([...inv.partial], [b.storageKey]);

  dm.start(a);
  assert.equal((await settled(dm, root, a.storageKey)).completedAt, '2026-11-01T00:00:00Z', 'the same marker');
  assert.deepEqual(await readFile(join(root, 'models', a.storageKey, 'done.bin')), done);
  assert.equal(origin.requestsFor('/done.bin').length, 0, 'zero origin requests for the moved model');

  dm.start(b);
  await settled(dm, root, b.storageKey);
  assert.deepEqual(await readFile(join(root, 'models', b.storageKey, 'half.bin')), half);
  assert.deepEqual(
    origin.requestsFor('/half.bin').map((r) => r.range),
    ['bytes=150000-'],
    'the moved partial download resumed',
  );
});

test("a folder KServe's agent downloaded (no marker) is adopted when it verifies, downloaded again when it does not", async (t) => {
  const { root, origin, dm, logs } = await setup(t);
  const good = toBuffer(generated(300_000, 3));
  const bad = toBuffer(generated(300_000, 4));
  origin.set('/good.bin', good);
  origin.set('/bad.bin', bad);
  const a = modelFor(root, origin.url('/good.bin'));
  const b = modelFor(root, origin.url('/bad.bin'));
  await mkdir(join(root, 'models', a.storageKey), { recursive: true });
  await writeFile(join(root, 'models', a.storageKey, 'good.bin'), good);
  await mkdir(join(root, 'models', b.storageKey), { recursive: true });
  await writeFile(join(root, 'models', b.storageKey, 'bad.bin'), bad.subarray(0, 1000)); // an interrupted copy

  dm.start(a);
  const adopted = await settled(dm, root, a.storageKey);
  assert.equal(adopted.bytes, good.length);
  assert.equal(adopted.files, 1);
  assert.deepEqual(
    origin.requestsFor('/good.bin').map((r) => r.method),
    ['HEAD'],
    'verified by a HEAD, not downloaded',
  );
  assert.deepEqual(await readFile(join(root, 'models', a.storageKey, 'good.bin')), good);

  dm.start(b);
  await settled(dm, root, b.storageKey);
  assert.deepEqual(await readFile(join(root, 'models', b.storageKey, 'bad.bin')), bad, 'replaced at commit');
  assert.ok(origin.requestsFor('/bad.bin').some((r) => r.method === 'GET'));
  assert.match(logs(), /bad\.bin is 1000 bytes, the source's is 300000/);
});
