// The model agent takes a model from the node daemon's artifact server (a real one, on a real cache root)
// when the daemon holds its exact URI, even though /v1/models shows that URI without its query or
// credentials; another revision of the same model is never taken for it.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { fetchModel, type FetchDeps } from '../../agent/fetch-model.ts';
import { specHash, type DesiredModel } from '../../agent/plan.ts';
import { artifactRoutes } from '../../daemon/artifact-server.ts';
import { shownUri } from '../../daemon/source-uri.ts';
import { uriSha256 } from '../../disk/inventory.ts';
import { MARKER_FILE, modelPaths } from '../../disk/layout.ts';
import { HttpClient } from '../../download/http-client.ts';
import { startOpsServer } from '../../ops/server.ts';
import { Origin } from '../../localcluster/origin.ts';

interface Fixture {
  origin: Origin;
  /** The node cache's root, served by a real artifact server at `cacheUrl`. */
  root: string;
  cacheUrl: string;
  deps: (cacheUrl?: string) => FetchDeps;
  modelDir: string;
}

async function setup(t: TestContext): Promise<Fixture> {
  const work = await mkdtemp(join(tmpdir(), 'modelcache-agent-cache-'));
  const root = join(work, 'cache');
  const modelDir = join(work, 'models');
  await mkdir(root);
  await mkdir(modelDir);
  const origin = await Origin.start();
  const srv = await startOpsServer({
    addr: '127.0.0.1:0',
    registry: new Registry(),
    unready: () => undefined,
    extra: artifactRoutes(root),
  });
  const http = new HttpClient({ connectTimeoutMs: 5000, responseTimeoutMs: 10_000 });
  t.after(async () => {
    await srv.close();
    await origin.close();
    await rm(work, { recursive: true, force: true });
  });
  const deps = (cacheUrl = srv.url): FetchDeps => ({
    modelDir,
    cacheUrl: cacheUrl.replace(/\/$/, ''),
    maxModelBytes: 1_000_000,
    credentials: {},
    download: { attempts: 1 },
    http,
  });
  return { origin, root, cacheUrl: srv.url, deps, modelDir };
}

/** A complete model in the cache, with the marker the daemon writes: the URI shown, and the exact URI's hash. */
async function cached(root: string, key: string, uri: string, files: Record<string, string>): Promise<void> {
  const dir = modelPaths(root, key).final;
  for (const [path, content] of Object.entries(files)) {
    await mkdir(join(dir, path, '..'), { recursive: true });
    await writeFile(join(dir, path), content);
  }
  const marker = { uri: shownUri(uri), uriSha256: uriSha256(uri), storageKey: key, bytes: 1, files: 1 };
  await writeFile(join(dir, MARKER_FILE), JSON.stringify({ ...marker, completedAt: '2026-11-22T00:00:00Z' }));
}

const desired = (name: string, storageUri: string): DesiredModel => {
  const spec = { storageUri, framework: 'sklearn', memory: '10Mi' };
  return { name, spec, hash: specHash(spec) };
};
const modelFiles = async (dir: string): Promise<string[]> =>
  (await readdir(dir, { recursive: true })).filter((f) => !f.startsWith('SUCCESS.')).sort();

test('a URI with a query is taken from the node cache with zero origin requests; another revision is not', async (t) => {
  const f = await setup(t);
  const rev1 = f.origin.url('/models/iris.joblib?revision=1');
  f.origin.set('/models/iris.joblib', Buffer.from('IRIS FROM ORIGIN'));
  await cached(f.root, 'iris1', rev1, { 'iris.joblib': 'IRIS REV 1' });
  const shown = (await (await fetch(`${f.cacheUrl}/v1/models`)).json()) as Array<{ uri: string }>;
  assert.deepEqual(
    shown.map((m) => m.uri),
    [f.origin.url('/models/iris.joblib')],
    'the daemon shows no query',
  );

  assert.deepEqual(await fetchModel(desired('iris', rev1), f.deps(), AbortSignal.timeout(20_000)), { from: 'cache' });
  assert.equal(await readFile(join(f.modelDir, 'iris', 'iris.joblib'), 'utf8'), 'IRIS REV 1');
  assert.equal(f.origin.requests.length, 0, 'no request reached the origin');

  // Same shown URI, other query: another revision, fetched from its source.
  const rev2 = f.origin.url('/models/iris.joblib?revision=2');
  assert.deepEqual(await fetchModel(desired('iris2', rev2), f.deps(), AbortSignal.timeout(20_000)), {
    from: 'source',
  });
  assert.equal(await readFile(join(f.modelDir, 'iris2', 'iris.joblib'), 'utf8'), 'IRIS FROM ORIGIN');
  assert.equal(f.origin.requestsFor('/models/iris.joblib').length, 1);
});

test('a folder below a cached URI with credentials is taken from the cache (KServe subpath rule)', async (t) => {
  const f = await setup(t);
  const folder = f.origin.url('/llama/').replace('http://', 'http://token:s3cret@');
  await cached(f.root, 'llama', folder, { 'config.json': '{}', 'sub/w.bin': 'W', 'sub/x/y.bin': 'Y' });
  const r = await fetchModel(desired('part', `${folder}sub`), f.deps(), AbortSignal.timeout(20_000));
  assert.deepEqual(r, { from: 'cache' });
  assert.deepEqual(await modelFiles(join(f.modelDir, 'part')), ['w.bin', 'x', 'x/y.bin']);
  assert.equal(f.origin.requests.length, 0, 'no request reached the origin');
});

test('an older daemon without uriSha256 is matched by its (exact) uri', async (t) => {
  const f = await setup(t);
  // The older daemon's answers, served as they were: /v1/models with the full URI and no hash.
  const uri = 's3://bucket/models/sklearn';
  f.origin.set('/v1/models', Buffer.from(JSON.stringify([{ key: 'old1', uri }])));
  f.origin.set('/v1/models/old1/files', Buffer.from(JSON.stringify([{ path: 'model.joblib', size: 3 }])));
  f.origin.set('/v1/models/old1/files/model.joblib', Buffer.from('OLD'));
  const r = await fetchModel(desired('old', `${uri}/`), f.deps(f.origin.url('')), AbortSignal.timeout(20_000));
  assert.deepEqual(r, { from: 'cache' });
  assert.equal(await readFile(join(f.modelDir, 'old', 'model.joblib'), 'utf8'), 'OLD');
});
