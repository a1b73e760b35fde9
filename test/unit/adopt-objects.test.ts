import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import aws4 from 'aws4';
import { storageKeyFor } from '../../api/storage-key.ts';
import type { LocalModelInfo } from '../../api/types.ts';
import { expectationFor, verifyFolder } from '../../daemon/adopt.ts';
import { DownloadManager } from '../../daemon/downloads.ts';
import { DaemonMetrics } from '../../daemon/metrics.ts';
import { CapacityLedger } from '../../disk/capacity.ts';
import { MARKER_FILE } from '../../disk/layout.ts';
import type { SourceCredentials } from '../../download/types.ts';
import { createLogger } from '../../ops/logger.ts';
import { eventually } from '../../localcluster/eventually.ts';
import { S3_ACCESS_KEY, S3_SECRET_KEY, S3Server } from '../helpers/object-stores.ts';
import { generated, toBuffer } from '../../localcluster/origin.ts';
import { Reaper } from '../../localcluster/processes.ts';

const reaper = new Reaper();
let s3: S3Server;
let base: string;
let accessLog: string;
const weights = toBuffer(generated(700_000, 11));
const config = Buffer.from('{"layers":2}');

/** An object PUT through the S3 API (not placed as a file), so the store keeps its MD5 ETag. */
async function put(bucket: string, key: string, body: Buffer): Promise<void> {
  const u = new URL(`${s3.endpoint}/${bucket}/${key}`);
  const signed = aws4.sign(
    { host: u.host, path: u.pathname, service: 's3', region: 'us-east-1', method: 'PUT', body },
    { accessKeyId: S3_ACCESS_KEY, secretAccessKey: S3_SECRET_KEY },
  );
  const res = await fetch(u, {
    method: 'PUT',
    body,
    headers: Object.fromEntries(Object.entries(signed.headers ?? {}).map(([k, v]) => [k, String(v)])),
  });
  assert.equal(res.status, 200, `PUT ${key}: ${await res.text()}`);
}

before(async () => {
  base = await mkdtemp(join(tmpdir(), 'modelcache-adopt-'));
  accessLog = join(base, 's3-access.log');
  // versitygw reads its access-log setting from the environment it starts in.
  process.env.VGW_ACCESS_LOG = accessLog;
  s3 = await S3Server.start(reaper);
  delete process.env.VGW_ACCESS_LOG;
  await s3.createBucket('models');
  for (const m of ['good', 'corrupt', 'short', 'extra']) {
    await put('models', `${m}/config.json`, config);
    await put('models', `${m}/weights/model.safetensors`, weights);
  }
});
after(async () => {
  await s3.stop();
  await rm(base, { recursive: true, force: true });
  reaper.close();
});

const creds = (): SourceCredentials => ({
  AWS_ACCESS_KEY_ID: S3_ACCESS_KEY,
  AWS_SECRET_ACCESS_KEY: S3_SECRET_KEY,
  AWS_ENDPOINT_URL: s3.endpoint,
});

/** What versitygw served for keys under `prefix`: one operation name (s3_GetObject, s3_ListObjectsV2…) per request. */
async function served(prefix: string): Promise<string[]> {
  const lines = (await readFile(accessLog, 'utf8').catch(() => '')).split('\n');
  return lines
    .filter((l) => l.includes(`/models/${prefix}/`) || l.includes(`prefix=${prefix}`))
    .map((l) => /\bs3_\w+/.exec(l)?.[0] ?? '?');
}

/** A model folder as KServe's agent leaves it: the files, no marker. */
async function folder(dir: string, files: Record<string, Buffer>): Promise<void> {
  for (const [path, body] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), body);
  }
}

const check = async (dir: string, uri: string) => {
  const signal = AbortSignal.timeout(20_000);
  return verifyFolder(dir, await expectationFor(uri, signal, { credentials: creds() }), signal);
};

test('an s3 folder that holds every listed object at its size and MD5 is adopted from the listing alone: zero object GETs', async () => {
  const dir = join(base, 'good');
  await folder(dir, { 'config.json': config, 'weights/model.safetensors': weights });
  assert.deepEqual(await check(dir, 's3://models/good'), {
    verified: true,
    bytes: config.length + weights.length,
    files: 2,
  });
  // The log has caught up once it shows the listing; any object GET would come after it.
  await eventually(async () => assert.ok((await served('good')).includes('s3_ListObjectsV2')));
  const ops = await served('good');
  assert.equal(ops.filter((o) => o === 's3_GetObject').length, 0, 'no object was fetched');
});

test('an s3 folder is not adopted when a file has other bytes of the same size, is short, or is not listed', async () => {
  const corrupt = Buffer.from(weights);
  corrupt[1234] = corrupt[1234]! ^ 0xff;
  const a = join(base, 'corrupt');
  await folder(a, { 'config.json': config, 'weights/model.safetensors': corrupt });
  const v1 = await check(a, 's3://models/corrupt');
  assert.deepEqual(v1, { verified: false, reason: "weights/model.safetensors does not match the source's md5" });

  const b = join(base, 'short');
  await folder(b, { 'config.json': config, 'weights/model.safetensors': weights.subarray(0, 1000) });
  assert.deepEqual(await check(b, 's3://models/short'), {
    verified: false,
    reason: `weights/model.safetensors is 1000 bytes, the source's is ${weights.length}`,
  });

  const c = join(base, 'extra');
  await folder(c, { 'config.json': config, 'weights/model.safetensors': weights, 'notes.txt': Buffer.from('x') });
  assert.deepEqual(await check(c, 's3://models/extra'), {
    verified: false,
    reason: 'it holds notes.txt, which the source does not list',
  });
  for (const p of ['corrupt', 'short', 'extra'])
    assert.equal((await served(p)).filter((o) => o === 's3_GetObject').length, 0, `${p}: nothing fetched to check`);
});

async function manager(t: TestContext, root: string): Promise<DownloadManager> {
  const dm = new DownloadManager({
    root,
    ledger: new CapacityLedger(root, 0),
    maxConcurrent: 2,
    log: createLogger(
      'daemon',
      'debug',
      new Writable({
        write: (_c, _e, cb) => cb(),
      }),
    ),
    metrics: new DaemonMetrics(),
    onChange: () => undefined,
    download: { attempts: 1, backoffBaseMs: 10, backoffMaxMs: 10 },
    credentials: () => Promise.resolve(creds()),
  });
  t.after(() => dm.stop());
  return dm;
}

test('a corrupted s3 folder at the model’s place is downloaded again and replaced at commit', async (t) => {
  const root = await mkdtemp(join(base, 'root-'));
  const dm = await manager(t, root);
  const uri = 's3://models/corrupt';
  const key = storageKeyFor(uri);
  const model: LocalModelInfo = {
    sourceModelUri: uri,
    modelName: 'm',
    modelSize: 2_000_000,
    storagePath: root,
    storageKey: key,
  };
  const dir = join(root, 'models', key);
  const corrupt = Buffer.from(weights);
  corrupt[99] = corrupt[99]! ^ 0xff;
  await folder(dir, { 'config.json': config, 'weights/model.safetensors': corrupt });
  dm.start(model);
  // The marker is written by the commit that puts the downloaded folder in place.
  await eventually(async () => assert.ok(await stat(join(dir, MARKER_FILE)).catch(() => undefined)));
  assert.deepEqual(await readFile(join(dir, 'weights', 'model.safetensors')), weights, 'the source’s bytes');
  const marker = JSON.parse(await readFile(join(dir, MARKER_FILE), 'utf8')) as { bytes: number; files: number };
  assert.deepEqual([marker.bytes, marker.files], [config.length + weights.length, 2]);
});
