import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { downloadModel, type DownloadOptions } from '../../download/fetch.ts';
import type { SourceCredentials } from '../../download/types.ts';
import { GcsServer } from '../helpers/object-stores.ts';
import { HfHub } from '../helpers/hf-hub.ts';
import { generated, toBuffer } from '../../localcluster/origin.ts';
import { Reaper } from '../../localcluster/processes.ts';
import { downloadFailure } from '../helpers/download-errors.ts';

const reaper = new Reaper();
const weights = toBuffer(generated(3 * 1024 * 1024 + 5, 11));
let gcs: GcsServer;
let hub: HfHub;
let base: string;

before(async () => {
  base = await mkdtemp(join(tmpdir(), 'modelcache-gcs-hf-'));
  gcs = await GcsServer.start(reaper, {
    models: {
      'bert/config.json': '{"h":1}',
      'bert/weights/w.bin': weights,
      'bert-large/x': 'no',
      'single/model.onnx': 'onnx',
    },
    empty: { 'other/x': 'x' },
  });
  hub = await HfHub.start();
  hub.addRepo('acme/tiny', {
    revisions: { main: 'a'.repeat(40), v1: 'b'.repeat(40) },
    files: {
      'config.json': Buffer.from('{"t":1}'),
      'model.safetensors': weights,
      'tokenizer/vocab.txt': Buffer.from('a\nb\n'),
    },
  });
  hub.addRepo('acme/private', {
    revisions: { main: 'c'.repeat(40) },
    files: { 'model.bin': weights },
    token: 'hf_secret_token',
  });
});
after(async () => {
  await gcs.stop();
  await hub.close();
  await rm(base, { recursive: true, force: true });
  reaper.close();
});

let n = 0;
function run(
  uri: string,
  credentials: SourceCredentials,
  options: Partial<DownloadOptions> = {},
  maxBytes = 10_000_000,
) {
  const workDir = join(base, `w${n++}`);
  const result = downloadModel({
    uri,
    workDir,
    maxBytes,
    signal: AbortSignal.timeout(30_000),
    credentials,
    options: { backoffBaseMs: 10, backoffMaxMs: 50, partSizeBytes: 1024 * 1024, partParallelism: 2, ...options },
  });
  return { workDir, result };
}
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

test('gs: a prefix through STORAGE_EMULATOR_HOST (host:port form), md5 checked, sibling prefix left out; a single object by name', async () => {
  const emu = { STORAGE_EMULATOR_HOST: new URL(gcs.endpoint).host };
  const { workDir, result } = run('gs://models/bert', emu);
  assert.deepEqual(await result, { bytes: weights.length + 7, files: 2 });
  assert.equal(sha(await readFile(join(workDir, 'weights', 'w.bin'))), sha(weights));
  assert.deepEqual((await readdir(workDir)).sort(), ['config.json', 'weights']);
  const one = run('gs://models/single/model.onnx', { STORAGE_EMULATOR_HOST: gcs.endpoint });
  await one.result;
  assert.equal(await readFile(join(one.workDir, 'model.onnx'), 'utf8'), 'onnx');
});

test('gs: missing bucket, empty prefix, oversized, unreachable and an unsupported key map to reasons', async () => {
  const emu = { STORAGE_EMULATOR_HOST: gcs.endpoint };
  assert.equal((await downloadFailure(run('gs://no-such-bucket/x', emu).result)).code, 'SourceNotFound');
  assert.equal((await downloadFailure(run('gs://empty/bert', emu).result)).code, 'SourceEmpty');
  assert.equal((await downloadFailure(run('gs://models/bert', emu, {}, 1000).result)).code, 'SizeExceeded');
  assert.equal(
    (await downloadFailure(run('gs://models/bert', { STORAGE_EMULATOR_HOST: '127.0.0.1:9' }, { attempts: 2 }).result))
      .code,
    'SourceUnavailable',
  );
  // A service-account key (KServe's GCS Secret) is explicit: refused with the way out, never replaced by another identity.
  const key = await downloadFailure(
    run('gs://models/bert', {
      'gcloud-application-credentials.json': '{"type":"service_account"}',
      GCE_METADATA_HOST: '127.0.0.1:9',
    }).result,
  );
  assert.equal(key.code, 'AccessDenied');
  assert.match(
    key.message,
    /service-account JSON keys \(gcloud-application-credentials.json\) are not read yet: give GOOGLE_OAUTH_ACCESS_TOKEN/,
  );
});

test('hf: every file of a revision (paginated tree), LFS files through the CDN in ranges with sha256 checked, pinned to the commit', async () => {
  const before = hub.requests.length;
  const { workDir, result } = run('hf://acme/tiny:v1', { HF_ENDPOINT: hub.endpoint, HF_TOKEN: 'hf_not_needed' });
  assert.deepEqual(await result, { bytes: weights.length + 7 + 4, files: 3 });
  assert.equal(sha(await readFile(join(workDir, 'model.safetensors'))), sha(weights));
  assert.equal(await readFile(join(workDir, 'tokenizer', 'vocab.txt'), 'utf8'), 'a\nb\n');
  const reqs = hub.requests.slice(before);
  assert.ok(
    reqs.filter((r) => r.server === 'hub' && r.path.startsWith('/api/models/acme/tiny/tree/')).length >= 2,
    'tree pages followed',
  );
  assert.ok(
    reqs.filter((r) => r.path.includes('/resolve/')).every((r) => r.path.includes(`/resolve/${'b'.repeat(40)}/`)),
    'files resolved at the commit of v1',
  );
  const cdn = reqs.filter((r) => r.server === 'cdn');
  assert.ok(cdn.length >= 4 && cdn.every((r) => r.range), `LFS file in ranged parts: ${cdn.length}`);
  assert.ok(
    cdn.every((r) => r.authorization === undefined),
    'the token never leaves the hub',
  );
});

test('hf: a private repo needs the token; unknown repo and revision are SourceNotFound; a bad URI is refused', async () => {
  const denied = await downloadFailure(run('hf://acme/private', { HF_ENDPOINT: hub.endpoint }).result);
  assert.equal(denied.code, 'AccessDenied');
  const wrong = await downloadFailure(
    run('hf://acme/private', { HF_ENDPOINT: hub.endpoint, HF_TOKEN: 'hf_wrong_token' }).result,
  );
  assert.equal(wrong.code, 'AccessDenied');
  assert.doesNotMatch(wrong.message, /hf_wrong_token/);
  const ok = run('hf://acme/private', { HF_ENDPOINT: hub.endpoint, HUGGING_FACE_HUB_TOKEN: 'hf_secret_token' });
  assert.equal((await ok.result).files, 1);
  assert.equal(
    (await downloadFailure(run('hf://acme/nope', { HF_ENDPOINT: hub.endpoint }).result)).code,
    'SourceNotFound',
  );
  assert.equal(
    (await downloadFailure(run('hf://acme/tiny:no-such-branch', { HF_ENDPOINT: hub.endpoint }).result)).code,
    'SourceNotFound',
  );
  assert.equal(
    (await downloadFailure(run('hf://just-a-name', { HF_ENDPOINT: hub.endpoint }).result)).code,
    'InvalidUri',
  );
});
