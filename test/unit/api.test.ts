import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { crdFiles } from '../../api/crd-files.ts';
import { formatBytes, parseQuantity } from '../../api/quantity.ts';
import { storageKeyFor } from '../../api/storage-key.ts';

test('manifests/crds are what api/schema.ts generates (run `npm run manifests` after changing the API)', async () => {
  for (const [path, text] of crdFiles()) {
    const onDisk = await readFile(new URL(`../../${path}`, import.meta.url), 'utf8').catch(() => '(missing)');
    assert.equal(onDisk, text, `${path} is stale: run npm run manifests`);
  }
});

test('quantities parse to bytes like Kubernetes does', () => {
  const cases: Array<[string | number, number]> = [
    ['10Gi', 10 * 2 ** 30],
    ['1.5Gi', 1.5 * 2 ** 30],
    ['500Mi', 500 * 2 ** 20],
    ['2G', 2e9],
    ['1k', 1000],
    ['1e3', 1000],
    ['1E6', 1e6],
    ['123', 123],
    [4096, 4096],
    ['100m', 1],
  ];
  for (const [q, bytes] of cases) assert.equal(parseQuantity(q), bytes, String(q));
  assert.throws(
    () => parseQuantity('10GB', 'spec.modelSize'),
    /spec\.modelSize: '10GB' is not a Kubernetes quantity; write e\.g\. 10Gi/,
  );
  assert.equal(formatBytes(3 * 2 ** 30), '3Gi');
  assert.equal(formatBytes(1.5 * 2 ** 20), '1.5Mi');
  assert.equal(formatBytes(12), '12');
});

test("storage key is KServe's: first 16 hex characters of sha256(sourceModelUri)", () => {
  // printf 's3://bucket/model' | sha256sum | cut -c1-16
  assert.equal(storageKeyFor('s3://bucket/model'), 'd270957640e91cf0');
  assert.notEqual(storageKeyFor('s3://bucket/model'), storageKeyFor('s3://bucket/model2'));
});

test('the CRD refuses a sourceModelUri no URL parser takes (a port outside 1-65535, whitespace in the host)', async () => {
  const { localModelCacheCrd } = await import('../../api/schema.ts');
  const spec = localModelCacheCrd.spec.versions[0]?.schema.openAPIV3Schema.properties?.spec as {
    properties: { sourceModelUri: { 'x-kubernetes-validations': ReadonlyArray<{ rule: string }> } };
  };
  // Each rule is `self.matches('re')` or `!self.matches('re')` (CEL's RE2 and JavaScript agree on these).
  const rules = spec.properties.sourceModelUri['x-kubernetes-validations']
    .filter((r) => !r.rule.includes('oldSelf'))
    .map((r) => {
      const m = /^(!?)self\.matches\('(.*)'\)$/.exec(r.rule);
      assert.ok(m, `a rule of the form self.matches('…'): ${r.rule}`);
      const re = new RegExp((m[2] ?? '').replace(/\\\\/g, '\\'));
      return (uri: string): boolean => re.test(uri) !== (m[1] === '!');
    });
  const accepted = (uri: string): boolean => rules.every((ok) => ok(uri));
  for (const uri of [
    's3://bucket/models/llama',
    'gs://b/m',
    'hf://org/model',
    'file:///models/llama',
    'https://host/model.tar.gz',
    'http://host:8080/m',
    'http://host:65535/m',
    'http://[::1]:8080/m',
    'http://user:123@host/m',
    'https://host/a b/model.bin',
  ]) {
    assert.ok(accepted(uri), `accepts ${uri}`);
    new URL(uri); // and so does a URL parser
  }
  for (const uri of [
    'http://host:99999/m',
    'http://host:65536/m',
    'http://host:0/m',
    'http://bad host/m',
    'http://h\tx/m',
  ])
    assert.equal(accepted(uri), false, `refuses ${uri}`);
});
