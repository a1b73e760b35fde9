import { test } from 'node:test';
import assert from 'node:assert/strict';
import { storageConfigKey, storageConfigValues } from '../../daemon/storage-config.ts';

const entry = JSON.stringify({
  type: 's3',
  access_key_id: 'AK',
  secret_access_key: 'SK',
  endpoint_url: 'http://minio:9000',
  region: 'us-south',
  default_bucket: 'models',
});

test('storage-config: an s3 entry becomes the S3 variables, parameters override it, anonymous drops the keys', () => {
  assert.deepEqual(storageConfigValues(entry, undefined, 'w'), {
    AWS_ACCESS_KEY_ID: 'AK',
    AWS_SECRET_ACCESS_KEY: 'SK',
    AWS_ENDPOINT_URL: 'http://minio:9000',
    AWS_REGION: 'us-south',
  });
  assert.equal(storageConfigValues(entry, { region: 'eu-de' }, 'w').AWS_REGION, 'eu-de');
  const anon = storageConfigValues(entry, { anonymous: 'True' }, 'w');
  assert.deepEqual(
    [anon.AWS_ACCESS_KEY_ID, anon.AWS_SECRET_ACCESS_KEY, anon.AWS_SESSION_TOKEN, anon.AWS_ENDPOINT_URL],
    ['', '', '', 'http://minio:9000'],
  );
  assert.equal(storageConfigKey(undefined, 's3://models/llama'), 'default_s3');
  assert.equal(storageConfigKey('localMinIO', 's3://models/llama'), 'localMinIO');
});

test('storage-config: entries that are not JSON or not s3 are refused, saying what to do', () => {
  assert.throws(
    () => storageConfigValues('{not json', undefined, "entry 'x'"),
    (e: Error & { code?: string }) =>
      e.code === 'AccessDenied' && /entry 'x' is not JSON: write it as KServe does/.test(e.message),
  );
  assert.throws(
    () => storageConfigValues(JSON.stringify({ type: 'gcs' }), undefined, "entry 'g'"),
    /entry 'g' has type 'gcs': only s3 entries are read/,
  );
});
