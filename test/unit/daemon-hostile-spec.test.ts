import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Registry } from 'prom-client';
import { storageKeyFor } from '../../api/storage-key.ts';
import type { LocalModelInfo } from '../../api/types.ts';
import { artifactRoutes } from '../../daemon/artifact-server.ts';
import { DownloadManager } from '../../daemon/downloads.ts';
import { DaemonMetrics } from '../../daemon/metrics.ts';
import { planNode } from '../../daemon/node-cache/plan.ts';
import { CapacityLedger } from '../../disk/capacity.ts';
import { modelPaths } from '../../disk/layout.ts';
import { createLogger } from '../../ops/logger.ts';
import { startOpsServer } from '../../ops/server.ts';
import { Origin, generated, toBuffer } from '../../localcluster/origin.ts';
import { eventually } from '../../localcluster/eventually.ts';

/** Unhandled rejections seen while the test runs (each one would crash the daemon). */
function recordUnhandled(t: TestContext): unknown[] {
  const seen: unknown[] = [];
  const onRejection = (reason: unknown): void => void seen.push(reason);
  process.on('unhandledRejection', onRejection);
  t.after(() => process.off('unhandledRejection', onRejection));
  return seen;
}

/** Lets rejections that nobody handles surface as 'unhandledRejection' events. */
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

interface Setup {
  root: string;
  origin: Origin;
  dm: DownloadManager;
  logs: () => string;
}

async function setup(
  t: TestContext,
  o: { maxConcurrent?: number; free?: (path: string) => Promise<number>; credentialsFail?: Error } = {},
): Promise<Setup> {
  const origin = await Origin.start();
  const root = await mkdtemp(join(tmpdir(), 'modelcache-hostile-'));
  const lines: Buffer[] = [];
  const sink = new Writable({
    write: (c: Buffer, _e, cb) => {
      lines.push(c);
      cb();
    },
  });
  const dm = new DownloadManager({
    root,
    ledger: new CapacityLedger(root, 0, o.free),
    maxConcurrent: o.maxConcurrent ?? 2,
    log: createLogger('daemon', 'debug', sink),
    metrics: new DaemonMetrics(),
    onChange: () => undefined,
    download: { attempts: 1, backoffBaseMs: 10, backoffMaxMs: 10 },
    ...(o.credentialsFail ? { credentials: () => Promise.reject(o.credentialsFail) } : {}),
    retry: { soonMs: [60_000, 60_000], laterMs: [60_000, 60_000] },
  });
  t.after(async () => {
    await dm.stop();
    await origin.close();
    await rm(root, { recursive: true, force: true });
  });
  return { root, origin, dm, logs: () => Buffer.concat(lines).toString() };
}

function modelFor(root: string, uri: string, name = 'm', size = 1_000_000): LocalModelInfo {
  return { sourceModelUri: uri, modelName: name, modelSize: size, storagePath: root, storageKey: storageKeyFor(uri) };
}

test('a sourceModelUri the CRD let through but no URL parser takes ends as InvalidUri on that model, never a crash', async (t) => {
  const unhandled = recordUnhandled(t);
  const { root, dm } = await setup(t);
  const bad = [
    modelFor(root, 'http://127.0.0.1:99999/m.bin', 'port'),
    modelFor(root, 'http://bad host/m.bin', 'space'),
  ];
  for (const m of bad) dm.start(m);
  await eventually(() =>
    assert.ok(bad.every((m) => dm.snapshot().failures.has(m.storageKey) && !dm.snapshot().inFlight.has(m.storageKey))),
  );
  await settle();
  assert.deepEqual(unhandled, [], 'no unhandled rejection');
  for (const m of bad) {
    const f = dm.snapshot().failures.get(m.storageKey);
    assert.equal(f?.reason, 'InvalidUri', m.sourceModelUri);
    assert.match(f?.message ?? '', /sourceModelUri/);
    assert.match(f?.message ?? '', /fix spec\.sourceModelUri/);
  }
  const plan = planNode({
    desired: bad,
    disk: { complete: new Map(), partial: new Set() },
    ...dm.snapshot(),
    reportedKeys: new Map(),
    now: Date.now() + 365 * 86_400_000,
  });
  assert.deepEqual(plan.actions, [], 'a bad spec is not retried until it changes, however long it waits');
  assert.deepEqual(plan.status.modelStatus, { port: 'ModelDownloadError', space: 'ModelDownloadError' });
  assert.equal(plan.status.models?.port?.reason, 'InvalidUri');
});

test('stop() with a download running and one queued resolves, rejects nothing, and keeps the partial data', async (t) => {
  const unhandled = recordUnhandled(t);
  const { root, origin, dm } = await setup(t, { maxConcurrent: 1 });
  origin.set('/slow.bin', generated(4_000_000, 3), { rate: 200_000 });
  origin.set('/next.bin', toBuffer(generated(1000, 4)));
  const slow = modelFor(root, origin.url('/slow.bin'), 'slow', 5_000_000);
  const next = modelFor(root, origin.url('/next.bin'), 'next');
  dm.start(slow);
  dm.start(next);
  await eventually(() => assert.ok((dm.snapshot().inFlight.get(slow.storageKey)?.bytesDone ?? 0) > 0));
  assert.equal(dm.snapshot().inFlight.get(next.storageKey)?.queued, true, 'the second waits for the only slot');
  await dm.stop();
  await settle();
  assert.deepEqual(unhandled, [], 'no unhandled rejection during the shutdown');
  assert.equal(dm.snapshot().inFlight.size, 0);
  assert.equal(origin.requestsFor('/next.bin').length, 0, 'the queued one never started');
  const staging = modelPaths(root, slow.storageKey).staging;
  const kept = await readdir(staging, { recursive: true });
  assert.ok(kept.length > 0, 'the partial data of the running download stays for a resume');
});

test('an error that is not a DownloadError is reported as Internal (a bug), not DiskError, and keeps partial data', async (t) => {
  const unhandled = recordUnhandled(t);
  const { root, origin, dm } = await setup(t, { credentialsFail: new TypeError('boom: x is undefined') });
  origin.set('/m.bin', toBuffer(generated(1000, 5)));
  const m = modelFor(root, origin.url('/m.bin'));
  const staging = modelPaths(root, m.storageKey).staging;
  await mkdir(staging, { recursive: true });
  await writeFile(join(staging, 'part'), 'bytes from an earlier attempt');
  dm.start(m);
  await eventually(() =>
    assert.ok(dm.snapshot().failures.has(m.storageKey) && !dm.snapshot().inFlight.has(m.storageKey)),
  );
  const f = dm.snapshot().failures.get(m.storageKey);
  assert.equal(f?.reason, 'Internal');
  assert.match(f?.message ?? '', /bug in modelcache.*boom: x is undefined/);
  assert.equal(await readFile(join(staging, 'part'), 'utf8'), 'bytes from an earlier attempt');
  await settle();
  assert.deepEqual(unhandled, []);
});

test('InsufficientCapacity keeps the bytes already downloaded: they are what a later attempt resumes from', async (t) => {
  const { root, origin, dm } = await setup(t, { free: () => Promise.resolve(10) });
  origin.set('/m.bin', toBuffer(generated(1000, 6)));
  const m = modelFor(root, origin.url('/m.bin'));
  const staging = modelPaths(root, m.storageKey).staging;
  await mkdir(join(staging, '.download'), { recursive: true });
  await writeFile(join(staging, '.download', 'm.bin.partial'), 'half');
  dm.start(m);
  await eventually(() =>
    assert.ok(dm.snapshot().failures.has(m.storageKey) && !dm.snapshot().inFlight.has(m.storageKey)),
  );
  assert.equal(dm.snapshot().failures.get(m.storageKey)?.reason, 'InsufficientCapacity');
  assert.equal(await readFile(join(staging, '.download', 'm.bin.partial'), 'utf8'), 'half');
});

test('a commit that fails keeps the downloaded bytes: the next attempt publishes them without fetching again', async (t) => {
  const { root, origin, dm } = await setup(t);
  const body = toBuffer(generated(300_000, 8));
  origin.set('/m.bin', body);
  const m = modelFor(root, origin.url('/m.bin'));
  // Publishing moves a stale folder aside into the trash first: a file where the trash goes makes that fail.
  await mkdir(join(root, 'models'), { recursive: true });
  await mkdir(join(root, '.modelcache'), { recursive: true });
  await writeFile(join(root, 'models', m.storageKey), 'a stale file where the model folder goes');
  await writeFile(join(root, '.modelcache', 'trash'), 'in the way');
  dm.start(m);
  await eventually(() =>
    assert.ok(dm.snapshot().failures.has(m.storageKey) && !dm.snapshot().inFlight.has(m.storageKey)),
  );
  const first = dm.snapshot().failures.get(m.storageKey);
  assert.equal(first?.reason, 'DiskError');
  assert.equal(origin.requestsFor('/m.bin').length, 1);

  await rm(join(root, '.modelcache', 'trash'));
  dm.start(m);
  await eventually(async () =>
    assert.ok(
      !dm.snapshot().inFlight.has(m.storageKey) &&
        (await stat(join(root, 'models', m.storageKey, '.modelcache.json')).catch(() => undefined)),
    ),
  );
  assert.equal(origin.requestsFor('/m.bin').length, 1, 'the bytes were not downloaded a second time');
  assert.deepEqual(await readFile(join(root, 'models', m.storageKey, 'm.bin')), body);
  assert.equal(dm.snapshot().failures.has(m.storageKey), false);
  assert.match(first?.message ?? '', /could not be published.*kept/);
});

test('credentials and signed queries of a source URI never reach the marker, /v1/models, statuses or logs', async (t) => {
  const { root, origin, dm, logs } = await setup(t);
  const body = toBuffer(generated(2000, 9));
  origin.set('/m.bin', body);
  const uri = origin.url('/m.bin').replace('http://', 'http://user:s3cr3tpw@') + '?X-Amz-Signature=abcdef123';
  const m = modelFor(root, uri);
  dm.start(m);
  await eventually(async () =>
    assert.ok(
      !dm.snapshot().inFlight.has(m.storageKey) &&
        (await stat(join(root, 'models', m.storageKey, '.modelcache.json')).catch(() => undefined)),
    ),
  );
  const marker = await readFile(join(root, 'models', m.storageKey, '.modelcache.json'), 'utf8');
  assert.doesNotMatch(marker, /s3cr3tpw|abcdef123/);
  assert.equal((JSON.parse(marker) as { uri: string }).uri, origin.url('/m.bin'));

  // Complete for the exact URI: asked again, nothing is fetched.
  dm.start(m);
  await eventually(() => assert.ok(!dm.snapshot().inFlight.has(m.storageKey)));
  assert.equal(origin.requestsFor('/m.bin').length, 1);

  const srv = await startOpsServer({
    addr: '127.0.0.1:0',
    registry: new Registry(),
    unready: () => undefined,
    extra: artifactRoutes(root),
  });
  t.after(() => srv.close());
  const listed = await (await fetch(`${srv.url}/v1/models`)).text();
  assert.doesNotMatch(listed, /s3cr3tpw|abcdef123/);
  assert.match(listed, new RegExp(m.storageKey));

  // A failure's message (which goes to status) and its log line are redacted too.
  origin.set('/gone.bin', toBuffer(generated(10, 1)));
  origin.fault('/gone.bin', { status: 403 });
  const gone = modelFor(root, origin.url('/gone.bin').replace('http://', 'http://user:s3cr3tpw@') + '?sig=abcdef123');
  dm.start(gone);
  await eventually(() =>
    assert.ok(dm.snapshot().failures.has(gone.storageKey) && !dm.snapshot().inFlight.has(gone.storageKey)),
  );
  assert.doesNotMatch(dm.snapshot().failures.get(gone.storageKey)?.message ?? '', /s3cr3tpw|abcdef123/);
  assert.match(logs(), /download started/);
  assert.doesNotMatch(logs(), /s3cr3tpw|abcdef123/);
});
