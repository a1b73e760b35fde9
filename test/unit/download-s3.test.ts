import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { downloadModel, type DownloadOptions } from '../../download/fetch.ts';
import type { SourceCredentials } from '../../download/types.ts';
import { makeTar } from '../../localcluster/archives.ts';
import { S3_ACCESS_KEY, S3_SECRET_KEY, S3Server } from '../helpers/object-stores.ts';
import { generated, toBuffer } from '../../localcluster/origin.ts';
import { Reaper } from '../../localcluster/processes.ts';
import { downloadFailure } from '../helpers/download-errors.ts';

const reaper = new Reaper();
let s3: S3Server;
let base: string;
const big = toBuffer(generated(5 * 1024 * 1024 + 123, 7));

before(async () => {
  s3 = await S3Server.start(reaper);
  base = await mkdtemp(join(tmpdir(), 'modelcache-s3-test-'));
  await s3.putObject('models', 'llama/config.json', '{"layers":2}');
  await s3.putObject('models', 'llama/weights/model-00001.safetensors', big);
  await s3.putObject('models', 'llama/odd name (1)+!.txt', 'odd');
  await s3.putObject('models', 'llama-2/other.bin', 'not part of llama');
  await s3.putObject(
    'models',
    'bundle.tar.gz',
    await makeTar(
      [
        { name: 'm/a.txt', content: 'A' },
        { name: 'm/b.txt', content: 'B' },
      ],
      true,
    ),
  );
  await s3.createBucket('empty');
});
after(async () => {
  await s3.stop();
  await rm(base, { recursive: true, force: true });
  reaper.close();
});

const creds = (extra: Record<string, string> = {}): SourceCredentials => ({
  AWS_ACCESS_KEY_ID: S3_ACCESS_KEY,
  AWS_SECRET_ACCESS_KEY: S3_SECRET_KEY,
  AWS_ENDPOINT_URL: s3.endpoint,
  ...extra,
});
let n = 0;
function run(
  uri: string,
  credentials: SourceCredentials,
  options: Partial<DownloadOptions> = {},
  maxBytes = 10_000_000,
) {
  const workDir = join(base, `w${n++}`);
  const progress: number[] = [];
  const result = downloadModel({
    uri,
    workDir,
    maxBytes,
    signal: AbortSignal.timeout(30_000),
    credentials,
    onProgress: (p) => progress.push(p.bytesDone),
    options: { backoffBaseMs: 10, backoffMaxMs: 50, ...options },
  });
  return { workDir, result, progress };
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

test('s3: every object under the prefix, signed, with the folder layout; a sibling prefix is not included; the big one in parallel ranges', async () => {
  const { workDir, result } = run('s3://models/llama', creds(), { partSizeBytes: 1024 * 1024, partParallelism: 3 });
  assert.deepEqual(await result, { bytes: big.length + 12 + 3, files: 3 });
  assert.equal(await readFile(join(workDir, 'config.json'), 'utf8'), '{"layers":2}');
  assert.equal(await readFile(join(workDir, 'odd name (1)+!.txt'), 'utf8'), 'odd');
  assert.equal(sha(await readFile(join(workDir, 'weights', 'model-00001.safetensors'))), sha(big));
  assert.deepEqual(
    (await readdir(workDir)).sort(),
    ['config.json', 'odd name (1)+!.txt', 'weights'],
    'no .download left, no llama-2',
  );
});

test('s3: a single object is fetched by name and an archive is extracted; S3_ENDPOINT without a scheme works as in KServe', async () => {
  const host = new URL(s3.endpoint).host;
  const { workDir, result } = run('s3://models/bundle.tar.gz', {
    ...creds(),
    AWS_ENDPOINT_URL: '',
    S3_ENDPOINT: host,
    S3_USE_HTTPS: '0',
  });
  assert.equal((await result).files, 2);
  assert.equal(await readFile(join(workDir, 'm', 'b.txt'), 'utf8'), 'B');
  const plain = run('s3://models/llama/config.json', creds());
  await plain.result;
  assert.deepEqual(await readdir(plain.workDir), ['config.json']);
});

test('s3: errors map to reasons and never carry the secret', async () => {
  const wrong = await downloadFailure(
    run('s3://models/llama', creds({ AWS_SECRET_ACCESS_KEY: 'not-the-secret' })).result,
  );
  assert.equal(wrong.code, 'AccessDenied');
  assert.match(wrong.message, /SignatureDoesNotMatch|AccessDenied|InvalidAccessKeyId/);
  assert.doesNotMatch(wrong.message, /not-the-secret|modelcache-test-secret-key/);
  assert.equal(
    (await downloadFailure(run('s3://models/llama', { AWS_ENDPOINT_URL: s3.endpoint }).result)).code,
    'AccessDenied',
    'anonymous',
  );
  const half = await downloadFailure(
    run('s3://models/llama', { AWS_ACCESS_KEY_ID: 'x', AWS_ENDPOINT_URL: s3.endpoint }).result,
  );
  assert.match(half.message, /need both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/);
  const noBucket = await downloadFailure(run('s3://no-such-bucket/llama', creds()).result);
  assert.equal(noBucket.code, 'SourceNotFound');
  assert.match(noBucket.message, /NoSuchBucket/);
  assert.equal((await downloadFailure(run('s3://empty/anything', creds()).result)).code, 'SourceEmpty');
  assert.equal((await downloadFailure(run('s3://models/nothing-here', creds()).result)).code, 'SourceEmpty');
  const big = await downloadFailure(run('s3://models/llama', creds(), {}, 1_000_000).result);
  assert.equal(big.code, 'SizeExceeded');
  assert.match(big.message, /holds 5243\d+ bytes in 3 objects/);
  const down = await downloadFailure(
    run('s3://models/llama', creds({ AWS_ENDPOINT_URL: 'http://127.0.0.1:9' }), { attempts: 2 }).result,
  );
  assert.equal(down.code, 'SourceUnavailable');
  assert.match(down.message, /failed after 2 attempts/);
  assert.equal((await downloadFailure(run('s3://Bad_Bucket/x', creds()).result)).code, 'InvalidUri');
});
