import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { storageKeyFor } from '../../api/storage-key.ts';
import {
  LOCAL_MODEL_CACHES,
  LOCAL_MODEL_NODE_GROUPS,
  LOCAL_MODEL_NODES,
  type LocalModelCache,
  type LocalModelNode,
} from '../../api/types.ts';
import { KubeClient } from '../../kube/client.ts';
import { CacheController } from '../../controller/controller.ts';
import { createLogger } from '../../ops/logger.ts';
import { ControlPlane } from '../../localcluster/control-plane.ts';
import { useControlPlane, uniqueName } from '../helpers/cluster.ts';
import { eventually } from '../../localcluster/eventually.ts';
import { createNode, grantShippedRbac, installShippedCrds, printedRow } from '../helpers/kube-fixtures.ts';
import { Origin, generated, toBuffer } from '../../localcluster/origin.ts';
import { makeTar } from '../../localcluster/archives.ts';
import { Reaper } from '../../localcluster/processes.ts';
import { S3_ACCESS_KEY, S3_SECRET_KEY, S3Server } from '../helpers/object-stores.ts';
import { EVENTS, NODES, SECRETS, SERVICE_ACCOUNTS } from '../../kube/resources.ts';
import type { Node } from '../../kube/types.ts';
import { startModelcache, type ModelcacheProcess } from '../../localcluster/modelcache-process.ts';

const stop = new AbortController();
let running: Promise<void> | undefined;
let origin: Origin;
let work: string;
let reaper: Reaper;
let daemonKubeconfig: string;
const group = uniqueName('grp');
const nodes = [`${group}-n1`, `${group}-n2`];
const daemons = new Map<string, ModelcacheProcess>();

const cluster = useControlPlane({
  controllerManager: false,
  setup: async (c) => {
    await installShippedCrds(c.client);
    await grantShippedRbac(c.client, 'daemon', ControlPlane.username('tester-2'));
    daemonKubeconfig = await c.cp.kubeconfigFor('tester-2');
    origin = await Origin.start();
    work = await mkdtemp(join(tmpdir(), 'modelcache-daemons-'));
    reaper = new Reaper();
    const quiet = new Writable({ write: (_c, _e, cb) => cb() });
    const controller = new CacheController({ client: c.client, log: createLogger('controller', 'warn', quiet) });
    controller.start(stop.signal);
    running = controller.run(stop.signal);
    await c.client.create(LOCAL_MODEL_NODE_GROUPS, {
      apiVersion: 'serving.kserve.io/v1alpha1',
      kind: 'LocalModelNodeGroup',
      metadata: { name: group },
      spec: { nodeSelector: { matchLabels: { [`${group}/cache`]: 'yes' } }, storageLimit: '10Gi' },
    });
    for (const n of nodes) {
      await createNode(c.client, n, { [`${group}/cache`]: 'yes' });
      await startDaemon(n);
    }
  },
  teardown: async () => {
    stop.abort();
    await running?.catch(() => undefined);
    await Promise.all([...daemons.values()].map((d) => d.stop('SIGKILL')));
    reaper.close();
    await origin.close();
    await rm(work, { recursive: true, force: true });
  },
});

const rootOf = (node: string): string => join(work, node);

async function startDaemon(node: string, root = rootOf(node)): Promise<ModelcacheProcess> {
  const d = await startModelcache(
    `daemon-${node}`,
    [
      'daemon',
      '--kubeconfig',
      daemonKubeconfig,
      '--node-name',
      node,
      '--root',
      root,
      '--listen',
      '127.0.0.1:0',
      '--progress-interval-ms',
      '200',
      '--safety-margin',
      '0',
      '--stall-timeout-seconds',
      '2',
      '--allow-file-root',
      join(work, 'host-models'),
    ],
    work,
    reaper,
  );
  daemons.set(node, d);
  return d;
}

/** The LocalModelCache this test calls `short`: cluster-scoped, so its name carries the test's prefix. */
const cacheName = (short: string): string => `${group}-${short}`;

async function createCache(short: string, uri: string, size: string, groups = [group]): Promise<void> {
  await cluster.client.create(LOCAL_MODEL_CACHES, {
    apiVersion: 'serving.kserve.io/v1alpha1',
    kind: 'LocalModelCache',
    metadata: { name: cacheName(short) },
    spec: { sourceModelUri: uri, modelSize: size, nodeGroups: groups },
  });
}
const getCache = (short: string) => cluster.client.get<LocalModelCache>(LOCAL_MODEL_CACHES, cacheName(short));
const sha = (b: Buffer | Uint8Array): string => createHash('sha256').update(b).digest('hex');

async function waitDownloaded(short: string, timeoutMs = 60_000): Promise<void> {
  await eventually(
    async () => {
      const c = await getCache(short);
      assert.deepEqual(c?.status?.copies, { available: 2, failed: 0, total: 2 }, JSON.stringify(c?.status));
    },
    { timeoutMs },
  );
}

test("a plain file and a tar.gz reach NodeDownloaded on both nodes; bytes on disk and served are the origin's", async () => {
  const weights = generated(3_000_000, 11);
  origin.set('/models/plain/model.safetensors', weights);
  const tarball = await makeTar(
    [
      { name: 'config.json', content: '{"arch":"x"}' },
      { name: 'weights/w0.bin', content: toBuffer(generated(500_000, 3)) },
    ],
    true,
  );
  origin.set('/models/archive/model.tar.gz', tarball);
  await createCache('plain', origin.url('/models/plain/model.safetensors'), '10Mi');
  await createCache('archive', origin.url('/models/archive/model.tar.gz'), '10Mi');
  await waitDownloaded('plain');
  await waitDownloaded('archive');
  for (const n of nodes) {
    const key = storageKeyFor(origin.url('/models/plain/model.safetensors'));
    assert.equal(sha(await readFile(join(rootOf(n), 'models', key, 'model.safetensors'))), sha(toBuffer(weights)));
    const akey = storageKeyFor(origin.url('/models/archive/model.tar.gz'));
    assert.deepEqual((await readdir(join(rootOf(n), 'models', akey))).sort(), [
      '.modelcache.json',
      'config.json',
      'weights',
    ]);
    const served = Buffer.from(
      await (await fetch(`${daemons.get(n)?.opsUrl}/v1/models/${key}/files/model.safetensors`)).arrayBuffer(),
    );
    assert.equal(sha(served), sha(toBuffer(weights)));
    const lmn = await cluster.client.get<LocalModelNode>(LOCAL_MODEL_NODES, n);
    assert.equal(lmn?.status?.models?.[cacheName('plain')]?.bytesDone, 3_000_000);
    assert.ok(lmn?.status?.models?.[cacheName('plain')]?.completedAt);
    assert.deepEqual(lmn?.status?.summary, { models: 2, downloaded: 2, failed: 0, progress: '100%' });
    const { Age: _age, ...printed } = await printedRow(cluster.client, LOCAL_MODEL_NODES, n);
    assert.deepEqual(printed, { Name: n, Models: 2, Downloaded: 2, Failed: 0, Progress: '100%' }, 'kubectl get lmn');
  }
});

test("kubectl get shows a download's progress on the cache and on each node, and 100% only once it is all in", async () => {
  origin.set('/models/slow/m.bin', generated(6_000_000, 41), { rate: 1_000_000 });
  await createCache('slow', origin.url('/models/slow/m.bin'), '8Mi');
  const partway = /^([1-9]|[1-9][0-9])%$/;
  await eventually(async () => {
    assert.match(String((await printedRow(cluster.client, LOCAL_MODEL_CACHES, cacheName('slow'))).Progress), partway);
    for (const n of nodes)
      assert.match(String((await printedRow(cluster.client, LOCAL_MODEL_NODES, n)).Progress), partway);
  });
  await waitDownloaded('slow');
  const printed = await printedRow(cluster.client, LOCAL_MODEL_CACHES, cacheName('slow'));
  assert.deepEqual(
    [printed.Progress, printed.Ready, printed.Reason],
    ['100%', 'True', 'Downloaded'],
    'kubectl get lmc -o wide',
  );
});

test('kill -9 mid-download, restart: resumed with a Range request, bytes identical, never Downloaded early', async () => {
  const body = generated(40_000_000, 21);
  origin.set('/models/big/model.bin', body);
  origin.fault(
    '/models/big/model.bin',
    { stallAfterBytes: 15_000_000, stallMs: 60_000 },
    { stallAfterBytes: 15_000_000, stallMs: 60_000 },
  );
  await createCache('big', origin.url('/models/big/model.bin'), '64Mi');
  const key = storageKeyFor(origin.url('/models/big/model.bin'));
  const [n1] = nodes as [string];
  const partial = join(rootOf(n1), '.modelcache', 'staging', key, '.download', 'model.bin.partial');
  await eventually(async () => assert.ok((await stat(partial)).size >= 15_000_000));
  const lmn = await cluster.client.get<LocalModelNode>(LOCAL_MODEL_NODES, n1);
  assert.notEqual(lmn?.status?.modelStatus?.[cacheName('big')], 'ModelDownloaded');
  await daemons.get(n1)?.stop('SIGKILL');
  await startDaemon(n1);
  await waitDownloaded('big', 90_000);
  const resumed = origin.requestsFor('/models/big/model.bin').filter((r) => r.range === 'bytes=15000000-');
  assert.ok(resumed.length >= 1, JSON.stringify(origin.requestsFor('/models/big/model.bin')));
  for (const n of nodes)
    assert.equal(sha(await readFile(join(rootOf(n), 'models', key, 'model.bin'))), sha(toBuffer(body)));
});

test('origin 503 ×3 then OK is retried; 404 is NodeDownloadError with reason SourceNotFound and no retry storm', async () => {
  origin.set('/models/flaky/m.bin', generated(100_000, 5));
  origin.fault('/models/flaky/m.bin', { status: 503 }, { status: 503 }, { status: 503 });
  await createCache('flaky', origin.url('/models/flaky/m.bin'), '1Mi');
  await createCache('missing', origin.url('/models/nope/m.bin'), '1Mi');
  await waitDownloaded('flaky');
  await eventually(async () => {
    const c = await getCache('missing');
    assert.deepEqual(c?.status?.copies, { available: 0, failed: 2, total: 2 });
    assert.equal(c?.status?.conditions?.find((x) => x.type === 'Ready')?.reason, 'DownloadFailed');
    const lmn = await cluster.client.get<LocalModelNode>(LOCAL_MODEL_NODES, nodes[0] as string);
    assert.equal(lmn?.status?.models?.[cacheName('missing')]?.reason, 'SourceNotFound');
    assert.match(lmn?.status?.models?.[cacheName('missing')]?.message ?? '', /HTTP 404/);
  });
  const before = origin.requestsFor('/models/nope/m.bin').length;
  assert.equal(before, 2, 'one request per node');
  await new Promise((r) => setTimeout(r, 3000));
  assert.equal(origin.requestsFor('/models/nope/m.bin').length, before, 'no retry storm');
});

test("restart with complete models: zero origin requests; a deleted cache's files are removed and its finalizer released", async () => {
  const count = origin.requests.length;
  const [, n2] = nodes as [string, string];
  await daemons.get(n2)?.stop('SIGTERM');
  const d = await startDaemon(n2);
  await eventually(async () => assert.equal((await fetch(`${d.opsUrl}/readyz`)).status, 200));
  await eventually(async () => {
    const lmn = await cluster.client.get<LocalModelNode>(LOCAL_MODEL_NODES, n2);
    assert.equal(lmn?.status?.modelStatus?.[cacheName('plain')], 'ModelDownloaded');
  });
  await new Promise((r) => setTimeout(r, 1000));
  const fresh = origin.requests.slice(count).filter((r) => !r.path.startsWith('/models/nope'));
  assert.deepEqual(fresh, [], 'a restart re-downloads nothing');

  const key = storageKeyFor(origin.url('/models/plain/model.safetensors'));
  await cluster.client.delete(LOCAL_MODEL_CACHES, cacheName('plain'));
  await eventually(async () => assert.equal(await getCache('plain'), undefined));
  for (const n of nodes) {
    assert.equal(await stat(join(rootOf(n), 'models', key)).catch(() => 'gone'), 'gone');
    const lmn = await cluster.client.get<LocalModelNode>(LOCAL_MODEL_NODES, n);
    assert.equal(lmn?.status?.modelStatus?.[cacheName('plain')], undefined);
  }
});

test('file:// from an allowed host directory reaches NodeDownloaded; outside it is AccessDenied', async () => {
  const src = join(work, 'host-models', 'bert');
  await mkdir(join(src, 'tokenizer'), { recursive: true });
  await writeFile(join(src, 'model.bin'), toBuffer(generated(200_000, 4)));
  await writeFile(join(src, 'tokenizer', 'vocab.txt'), 'a\nb\n');
  await createCache('from-host', pathToFileURL(src).href, '1Mi');
  await createCache('not-allowed', pathToFileURL(join(work, 'daemon-' + nodes[0] + '.log')).href, '1Mi');
  await waitDownloaded('from-host');
  const key = storageKeyFor(pathToFileURL(src).href);
  for (const n of nodes)
    assert.equal(await readFile(join(rootOf(n), 'models', key, 'tokenizer', 'vocab.txt'), 'utf8'), 'a\nb\n');
  await eventually(async () => {
    const lmn = await cluster.client.get<LocalModelNode>(LOCAL_MODEL_NODES, nodes[0] as string);
    assert.equal(lmn?.status?.models?.[cacheName('not-allowed')]?.reason, 'AccessDenied');
    assert.match(lmn?.status?.models?.[cacheName('not-allowed')]?.message ?? '', /not under an allowed file root/);
  });
});

test('the daemon identity can write LocalModelNode status and nothing more', async () => {
  const daemon = KubeClient.fromKubeconfig({ kubeconfig: daemonKubeconfig });
  try {
    await assert.rejects(
      daemon.mergePatch(LOCAL_MODEL_NODES, nodes[0] as string, { spec: { localModels: [] } }),
      (e: { status?: number }) => e.status === 403,
    );
    await assert.rejects(daemon.list(LOCAL_MODEL_CACHES), (e: { status?: number }) => e.status === 403);
    await assert.rejects(
      daemon.delete(LOCAL_MODEL_NODES, nodes[0] as string),
      (e: { status?: number }) => e.status === 403,
    );
    assert.ok(
      await daemon.get(SECRETS, 'anything', { namespace: 'modelcache-system' }).then(() => true),
      'get secrets in its namespace',
    );
    await assert.rejects(
      daemon.list(SECRETS, { namespace: 'modelcache-system' }),
      (e: { status?: number }) => e.status === 403,
    );
    await assert.rejects(
      daemon.get(SECRETS, 'anything', { namespace: 'default' }),
      (e: { status?: number }) => e.status === 403,
    );
    assert.equal(
      await daemon.get(SERVICE_ACCOUNTS, 'anything', { namespace: 'modelcache-system' }),
      undefined,
      'get service accounts in its namespace',
    );
    await assert.rejects(
      daemon.get(SERVICE_ACCOUNTS, 'default', { namespace: 'default' }),
      (e: { status?: number }) => e.status === 403,
    );
    assert.equal((await daemon.get<Node>(NODES, nodes[0] as string))?.metadata.name, nodes[0], 'reads its Node');
    await assert.rejects(
      daemon.mergePatch(NODES, nodes[0] as string, { metadata: { labels: { x: 'y' } } }),
      (e: { status?: number }) => e.status === 403,
    );
    await assert.rejects(
      daemon.create(EVENTS, {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { generateName: 'x-', namespace: 'default' },
        involvedObject: { kind: 'Node', name: nodes[0] },
        reason: 'X',
        message: 'x',
      } as never),
      (e: { status?: number }) => e.status === 403,
      'records no Events',
    );
  } finally {
    await daemon.close();
  }
});

test('a node the autoscaler is removing starts no new download (Pending, saying why) until the taint goes', async (t) => {
  const n2 = nodes[1] as string;
  const taint = { key: 'ToBeDeletedByClusterAutoscaler', value: '1763856000', effect: 'NoSchedule' };
  await cluster.client.mergePatch(NODES, n2, { spec: { taints: [taint] } });
  t.after(() => cluster.client.mergePatch(NODES, n2, { spec: { taints: null } }));
  // The daemon sees its Node and its LocalModelNode on two watches: wait until it has seen the taint.
  await eventually(async () =>
    assert.ok((await daemons.get(n2)!.logs()).some((l) => l.msg === 'new downloads paused')),
  );
  const pausedMetric = async () =>
    /^modelcache_daemon_new_downloads_paused (\d)$/m.exec(
      await (await fetch(`${daemons.get(n2)!.opsUrl}/metrics`)).text(),
    )?.[1];
  assert.equal(await pausedMetric(), '1');
  origin.set('/models/leaving/m.bin', generated(1_000_000, 31));
  await createCache('leaving', origin.url('/models/leaving/m.bin'), '2Mi');
  await eventually(async () => {
    const [a, b] = await Promise.all(nodes.map((n) => cluster.client.get<LocalModelNode>(LOCAL_MODEL_NODES, n)));
    assert.equal(a?.status?.modelStatus?.[cacheName('leaving')], 'ModelDownloaded');
    assert.equal(b?.status?.modelStatus?.[cacheName('leaving')], 'ModelDownloadPending');
    assert.equal(
      b?.status?.models?.[cacheName('leaving')]?.message,
      `not started: node ${n2} has taint ToBeDeletedByClusterAutoscaler: the cluster autoscaler is removing it`,
    );
  });
  const key = storageKeyFor(origin.url('/models/leaving/m.bin'));
  for (const where of [join(rootOf(n2), 'models', key), join(rootOf(n2), '.modelcache', 'staging', key)])
    assert.equal(await stat(where).catch(() => 'absent'), 'absent', `${where}: nothing fetched on the leaving node`);
  assert.ok(
    !(await daemons.get(n2)!.logs()).some(
      (l) => l.model === cacheName('leaving') && /download (started|resumed)/.test(String(l.msg)),
    ),
    'no download started on the leaving node',
  );
  // (a resume after a stall would send a Range; a second whole GET would be a download started twice)
  assert.equal(
    origin.requestsFor('/models/leaving/m.bin').filter((r) => r.method === 'GET' && !r.range).length,
    1,
    'one whole GET: the node that stays, once',
  );
  await cluster.client.mergePatch(NODES, n2, { spec: { taints: null } });
  await waitDownloaded('leaving');
  assert.equal(await pausedMetric(), '0');
});

test('a LocalModelNode deleted by hand is recreated by the controller and nothing is removed or fetched again', async () => {
  origin.set('/models/kept/m.bin', generated(1_500_000, 32));
  await createCache('kept', origin.url('/models/kept/m.bin'), '2Mi');
  await waitDownloaded('kept');
  const n1 = nodes[0] as string;
  const before = await cluster.client.get<LocalModelNode>(LOCAL_MODEL_NODES, n1);
  const fetched = origin.requestsFor('/models/kept/m.bin').length;
  await cluster.client.delete(LOCAL_MODEL_NODES, n1);
  await eventually(async () => {
    const lmn = await cluster.client.get<LocalModelNode>(LOCAL_MODEL_NODES, n1);
    assert.ok(lmn && lmn.metadata.uid !== before?.metadata.uid, 'recreated');
    assert.equal(lmn.status?.modelStatus?.[cacheName('kept')], 'ModelDownloaded');
    assert.deepEqual(lmn.status?.modelStatus, before?.status?.modelStatus, 'every model reported as before');
  });
  assert.equal(origin.requestsFor('/models/kept/m.bin').length, fetched, 'not fetched again');
  const key = storageKeyFor(origin.url('/models/kept/m.bin'));
  assert.equal((await stat(join(rootOf(n1), 'models', key, 'm.bin'))).size, 1_500_000);
});

test('/readyz says so when --node-name names no Node, and turns ready once that Node exists', async (t) => {
  const ghost = `${group}-ghost`;
  const d = await startDaemon(ghost);
  t.after(() => d.stop('SIGKILL'));
  await eventually(async () => {
    const res = await fetch(`${d.opsUrl}/readyz`);
    assert.equal(res.status, 503);
    assert.match(await res.text(), new RegExp(`Node ${ghost} not found: --node-name`));
  });
  // It has no LocalModelNode either: whatever is on its disk is kept for the grace period.
  await eventually(async () =>
    assert.match(await (await fetch(`${d.opsUrl}/metrics`)).text(), /^modelcache_daemon_removals_held 1$/m),
  );
  await createNode(cluster.client, ghost, {});
  await eventually(async () => assert.equal((await fetch(`${d.opsUrl}/readyz`)).status, 200));
});

test("s3:// with the node group's Secret, the cache's service account or its storage-config entry (KServe): downloaded on both nodes; a missing or wrong one is AccessDenied without leaking it", async (t) => {
  const s3 = await S3Server.start(reaper);
  t.after(() => s3.stop());
  const weights = toBuffer(generated(2_500_000, 5));
  await s3.putObject('models', 'llama/config.json', '{"l":1}');
  await s3.putObject('models', 'llama/weights/w.bin', weights);
  const ns = 'modelcache-system';
  const secret = (name: string, secretKey: string) =>
    cluster.client.create(SECRETS, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name, namespace: ns },
      stringData: { AWS_ACCESS_KEY_ID: S3_ACCESS_KEY, AWS_SECRET_ACCESS_KEY: secretKey, AWS_ENDPOINT_URL: s3.endpoint },
    } as never);
  await secret(`${group}-s3`, S3_SECRET_KEY);
  await secret(`${group}-s3-wrong`, 'wrong-secret-do-not-leak');
  const mkGroup = (name: string, secretName: string) =>
    cluster.client.create(LOCAL_MODEL_NODE_GROUPS, {
      apiVersion: 'serving.kserve.io/v1alpha1',
      kind: 'LocalModelNodeGroup',
      metadata: { name },
      spec: {
        nodeSelector: { matchLabels: { [`${group}/cache`]: 'yes' } },
        storageLimit: '1Gi',
        credentials: { secretName },
      },
    });
  await mkGroup(`${group}-s3`, `${group}-s3`);
  await mkGroup(`${group}-absent`, 'no-such-secret');
  await mkGroup(`${group}-wrong`, `${group}-s3-wrong`);
  await createCache('s3-llama', 's3://models/llama', '10Mi', [`${group}-s3`]);
  await createCache('s3-absent', 's3://models/llama/config.json', '1Mi', [`${group}-absent`]);
  await createCache('s3-wrong', 's3://models/llama/weights', '10Mi', [`${group}-wrong`]);
  await waitDownloaded('s3-llama');
  for (const n of nodes) {
    const dir = join(rootOf(n), 'models', storageKeyFor('s3://models/llama'));
    try {
      assert.equal(sha(await readFile(join(dir, 'weights', 'w.bin'))), sha(weights));
      assert.equal(await readFile(join(dir, 'config.json'), 'utf8'), '{"l":1}');
    } catch (err) {
      // Seen once and not reproduced since: say what the node held and reported.
      const held = await readdir(rootOf(n), { recursive: true }).catch((e: Error) => e.message);
      const lmn = await cluster.client.get<LocalModelNode>(LOCAL_MODEL_NODES, n);
      const logs = (await daemons.get(n)!.logs()).filter((l) => JSON.stringify(l).includes('llama')).slice(-20);
      throw new Error(
        `${n}: ${(err as Error).message}\nfiles: ${JSON.stringify(held)}\nstatus: ${JSON.stringify(lmn?.status?.models?.[cacheName('s3-llama')])}\nlogs: ${JSON.stringify(logs)}`,
        { cause: err },
      );
    }
  }
  await eventually(
    async () => {
      const lmn = await cluster.client.get<LocalModelNode>(LOCAL_MODEL_NODES, nodes[0] as string);
      const absent = lmn?.status?.models?.[cacheName('s3-absent')];
      assert.equal(absent?.reason, 'AccessDenied');
      assert.match(
        absent?.message ?? '',
        new RegExp(
          `Secret ${ns}/no-such-secret \\(spec.credentials.secretName of node group ${group}-absent\\) does not exist`,
        ),
      );
      const wrong = lmn?.status?.models?.[cacheName('s3-wrong')];
      assert.equal(wrong?.reason, 'AccessDenied');
      assert.equal(lmn?.status?.modelStatus?.[cacheName('s3-wrong')], 'ModelDownloadError');
      assert.doesNotMatch(JSON.stringify(lmn), /wrong-secret-do-not-leak|AKIAMODELCACHETEST/);
    },
    { timeoutMs: 30_000 },
  );
  // KServe's way: the cache names a service account whose attached Secret holds the keys, with
  // KServe's S3 annotations for the endpoint (the node groups here name no Secret).
  await cluster.client.create(SECRETS, {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: `${group}-kserve-s3`,
      namespace: ns,
      annotations: { 'serving.kserve.io/s3-endpoint': new URL(s3.endpoint).host, 'serving.kserve.io/s3-usehttps': '0' },
    },
    stringData: { AWS_ACCESS_KEY_ID: S3_ACCESS_KEY, AWS_SECRET_ACCESS_KEY: S3_SECRET_KEY },
  } as never);
  await cluster.client.create(SERVICE_ACCOUNTS, {
    apiVersion: 'v1',
    kind: 'ServiceAccount',
    metadata: { name: `${group}-models`, namespace: ns },
    secrets: [{ name: `${group}-kserve-s3` }],
  } as never);
  const saCache = (short: string, uri: string, sa: string) =>
    cluster.client.create(LOCAL_MODEL_CACHES, {
      apiVersion: 'serving.kserve.io/v1alpha1',
      kind: 'LocalModelCache',
      metadata: { name: cacheName(short) },
      spec: { sourceModelUri: uri, modelSize: '10Mi', nodeGroups: [group], serviceAccountName: sa },
    });
  await saCache('s3-sa', 's3://models/llama/weights/w.bin', `${group}-models`);
  await saCache('s3-sa-missing', 's3://models/elsewhere', `${group}-nobody`);
  await waitDownloaded('s3-sa');
  for (const n of nodes)
    assert.equal(
      sha(await readFile(join(rootOf(n), 'models', storageKeyFor('s3://models/llama/weights/w.bin'), 'w.bin'))),
      sha(weights),
    );
  await eventually(
    async () => {
      const missing = (await cluster.client.get<LocalModelNode>(LOCAL_MODEL_NODES, nodes[0] as string))?.status
        ?.models?.[cacheName('s3-sa-missing')];
      assert.equal(missing?.reason, 'AccessDenied');
      assert.match(
        missing?.message ?? '',
        new RegExp(
          `ServiceAccount ${ns}/${group}-nobody \\(spec.serviceAccountName of cache ${group}-s3-sa-missing\\) does not exist`,
        ),
      );
    },
    { timeoutMs: 30_000 },
  );

  // And KServe's storage-config Secret, picked by spec.storage (key, parameters over the entry).
  await cluster.client.create(SECRETS, {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'storage-config', namespace: ns },
    stringData: {
      localMinIO: JSON.stringify({
        type: 's3',
        access_key_id: S3_ACCESS_KEY,
        secret_access_key: 'overridden-below',
        endpoint_url: s3.endpoint,
        region: 'us-east-1',
      }),
    },
  } as never);
  const storageCache = (short: string, uri: string, storage: Record<string, unknown>) =>
    cluster.client.create(LOCAL_MODEL_CACHES, {
      apiVersion: 'serving.kserve.io/v1alpha1',
      kind: 'LocalModelCache',
      metadata: { name: cacheName(short) },
      spec: { sourceModelUri: uri, modelSize: '1Mi', nodeGroups: [group], storage },
    });
  await s3.putObject('models', 'tokenizers/t.json', '{"t":1}');
  await storageCache('s3-storage', 's3://models/tokenizers/t.json', {
    key: 'localMinIO',
    parameters: { secret_access_key: S3_SECRET_KEY },
  });
  await storageCache('s3-storage-nokey', 's3://models/other', { key: 'nowhere' });
  await waitDownloaded('s3-storage');
  for (const n of nodes)
    assert.equal(
      await readFile(join(rootOf(n), 'models', storageKeyFor('s3://models/tokenizers/t.json'), 't.json'), 'utf8'),
      '{"t":1}',
    );
  await eventually(
    async () => {
      const nokey = (await cluster.client.get<LocalModelNode>(LOCAL_MODEL_NODES, nodes[0] as string))?.status?.models?.[
        cacheName('s3-storage-nokey')
      ];
      assert.equal(nokey?.reason, 'AccessDenied');
      assert.match(
        nokey?.message ?? '',
        new RegExp(
          `entry 'nowhere' of Secret modelcache-system/storage-config \\(spec.storage of cache ${group}-s3-storage-nokey\\) does not exist: add it, or set spec.storage.key to one of: localMinIO`,
        ),
      );
    },
    { timeoutMs: 30_000 },
  );

  const logs = JSON.stringify(await daemons.get(nodes[0] as string)!.logs());
  assert.match(logs, new RegExp(cacheName('s3-wrong')));
  assert.doesNotMatch(logs, /wrong-secret-do-not-leak|modelcache-test-secret-key/);
});

test('disk full on a small tmpfs: InsufficientCapacity with the numbers, nothing partial left, other models still cached', async (t) => {
  if (process.getuid?.() !== 0) {
    t.skip('needs root to mount a tmpfs (run the suite as root to cover disk-full)');
    return;
  }
  const small = `${group}-small`;
  const node = `${group}-n3`;
  const root = join(work, 'tmpfs-root');
  await mkdir(root, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', root]);
  t.after(async () => {
    await daemons.get(node)?.stop('SIGKILL');
    execFileSync('umount', ['-l', root]);
  });
  await cluster.client.create(LOCAL_MODEL_NODE_GROUPS, {
    apiVersion: 'serving.kserve.io/v1alpha1',
    kind: 'LocalModelNodeGroup',
    metadata: { name: small },
    spec: { nodeSelector: { matchLabels: { [`${group}/small`]: 'yes' } }, storageLimit: '1Gi' },
  });
  await createNode(cluster.client, node, { [`${group}/small`]: 'yes' });
  await startDaemon(node, root);
  origin.set('/models/huge/m.bin', generated(12_000_000, 9));
  origin.set('/models/tiny/m.bin', generated(500_000, 8));
  await createCache('too-big', origin.url('/models/huge/m.bin'), '16Mi', [small]);
  await createCache('fits', origin.url('/models/tiny/m.bin'), '1Mi', [small]);
  await eventually(async () => {
    const lmn = await cluster.client.get<LocalModelNode>(LOCAL_MODEL_NODES, node);
    assert.equal(lmn?.status?.modelStatus?.[cacheName('too-big')], 'ModelDownloadError');
    assert.equal(lmn?.status?.models?.[cacheName('too-big')]?.reason, 'InsufficientCapacity');
    assert.match(lmn?.status?.models?.[cacheName('too-big')]?.message ?? '', /needs 16Mi but only .* is available/);
    assert.equal(lmn?.status?.modelStatus?.[cacheName('fits')], 'ModelDownloaded');
  });
  const key = storageKeyFor(origin.url('/models/huge/m.bin'));
  assert.equal(
    await stat(join(root, '.modelcache', 'staging', key)).catch(() => 'absent'),
    'absent',
    'nothing partial left behind',
  );
  assert.equal(await stat(join(root, 'models', key)).catch(() => 'absent'), 'absent');
  assert.equal(origin.requestsFor('/models/huge/m.bin').length, 0, 'refused before any byte was fetched');
});
