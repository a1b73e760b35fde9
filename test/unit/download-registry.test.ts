import { test } from 'node:test';
import assert from 'node:assert/strict';
import { localModelCacheCrd, trainedModelCrd } from '../../api/schema.ts';
import { SOURCE_SCHEMES, TRAINED_MODEL_SCHEMES } from '../../api/uri-schemes.ts';
import { storageConfigValues } from '../../daemon/storage-config.ts';
import { credentialsFromEnv } from '../../download/env-credentials.ts';
import { SOURCE_REGISTRY, sourceFor } from '../../download/registry.ts';

/** Every `^(a|b|…)://` alternation in a CRD's CEL rules, as lists of schemes. */
function schemesInRules(crd: unknown): string[][] {
  const out: string[][] = [];
  for (const m of JSON.stringify(crd).matchAll(/self\.matches\('\^\(([a-z0-9|]+)\):\/\//g)) out.push(m[1]!.split('|'));
  return out;
}

const registered: string[] = SOURCE_REGISTRY.flatMap((s) => s.schemes);

test('registry: every scheme the schema accepts has exactly one source, and every source a scheme the schema accepts', () => {
  assert.deepEqual([...registered].sort(), [...SOURCE_SCHEMES].sort());
  assert.equal(new Set(registered).size, registered.length, 'no scheme has two sources');
  for (const s of SOURCE_SCHEMES) assert.ok(sourceFor(s)?.schemes.includes(s), `${s}:// has its entry`);
  for (const s of TRAINED_MODEL_SCHEMES) assert.ok(sourceFor(s), `TrainedModel's ${s}:// has a source`);
  assert.equal(sourceFor('ftp'), undefined);
});

test("registry: the CRDs' scheme rules are the registry's schemes", () => {
  const lmc = schemesInRules(localModelCacheCrd);
  assert.ok(lmc.length > 0, 'the LocalModelCache has a scheme rule');
  for (const list of lmc) assert.deepEqual([...list].sort(), [...registered].sort());
  const tm = schemesInRules(trainedModelCrd);
  assert.ok(tm.length > 0, 'the TrainedModel has a scheme rule');
  for (const list of tm)
    assert.ok(
      list.every((s) => registered.includes(s)),
      `${list.join('|')} all have a source`,
    );
});

test("registry: each source's code loads on demand, and object stores can list", async () => {
  for (const entry of SOURCE_REGISTRY) {
    const source = await entry.load();
    assert.equal(typeof source.download, 'function', `${entry.schemes.join('/')} downloads`);
    const lists = entry.schemes.some((s) => ['s3', 'gs', 'hf'].includes(s));
    assert.equal(typeof source.list === 'function', lists, `${entry.schemes.join('/')} lists: ${lists}`);
  }
});

test("registry: the environment, KServe's Secret annotations and storage-config types come from the entries", () => {
  const env = {
    AWS_REGION: 'r',
    S3_ENDPOINT: 'e',
    HF_TOKEN: 't',
    HUGGING_FACE_HUB_TOKEN: 'h',
    STORAGE_EMULATOR_HOST: 's',
    GCE_METADATA_HOST: 'g',
    GOOGLE_OAUTH_ACCESS_TOKEN: 'o',
    GOOGLE_APPLICATION_CREDENTIALS: '/not/read/from/env',
    AWS_: 'no name after the prefix',
    PATH: '/usr/bin',
    HOME: '/root',
  };
  assert.deepEqual(Object.keys(credentialsFromEnv(env)).sort(), [
    'AWS_REGION',
    'GCE_METADATA_HOST',
    'GOOGLE_OAUTH_ACCESS_TOKEN',
    'HF_TOKEN',
    'HUGGING_FACE_HUB_TOKEN',
    'S3_ENDPOINT',
    'STORAGE_EMULATOR_HOST',
  ]);
  const s3 = sourceFor('s3')!;
  assert.equal(s3.secretAnnotations?.['serving.kserve.io/s3-endpoint'], 'S3_ENDPOINT');
  const types = SOURCE_REGISTRY.flatMap((s) => (s.storageConfig ? [s.storageConfig.type] : []));
  assert.deepEqual(types, ['s3']);
  assert.throws(
    () => storageConfigValues(JSON.stringify({ type: 'azure' }), undefined, "entry 'a'"),
    new RegExp(`entry 'a' has type 'azure': only ${types.join(', ')} entries are read`),
  );
});
