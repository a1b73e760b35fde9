import { test } from 'node:test';
import assert from 'node:assert/strict';
import { get as httpGet } from 'node:http';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TRAINED_MODELS, type TrainedModel } from '../../api/kserve.ts';
import { storageKeyFor } from '../../api/storage-key.ts';
import { LOCAL_MODEL_NODES, type LocalModelNode } from '../../api/types.ts';
import { specHash } from '../../agent/plan.ts';
import { CONFIGMAPS, NAMESPACES, ROLES, ROLE_BINDINGS } from '../../kube/resources.ts';
import type { KubeObject } from '../../kube/types.ts';
import { fromYamlAll } from '../../kube/yaml.ts';
import { ControlPlane } from '../../localcluster/control-plane.ts';
import { useControlPlane, uniqueName } from '../helpers/cluster.ts';
import { eventually } from '../../localcluster/eventually.ts';
import { createNode, installShippedCrds } from '../helpers/kube-fixtures.ts';
import { makeTar } from '../../localcluster/archives.ts';
import { V2ModelServer } from '../helpers/model-server.ts';
import { Origin } from '../../localcluster/origin.ts';
import { Reaper } from '../../localcluster/processes.ts';
import { startModelcache, type ModelcacheProcess } from '../../localcluster/modelcache-process.ts';

let origin: Origin;
let work: string;
let reaper: Reaper;
let daemon: ModelcacheProcess;
let server: V2ModelServer;
let ns: string;
let agentKubeconfig: string;
const node = uniqueName('agent-node');
const modelDir = () => join(work, 'models');
const modelsJson = () => join(work, 'models.json');

const cluster = useControlPlane({
  controllerManager: false,
  setup: async (c) => {
    await installShippedCrds(c.client);
    work = await mkdtemp(join(tmpdir(), 'modelcache-agent-'));
    origin = await Origin.start();
    reaper = new Reaper();
    ns = uniqueName('serving');
    await c.client.create(NAMESPACES, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
    // The agent runs with exactly the shipped Role, bound to a rights-less test identity.
    for (const doc of fromYamlAll(
      await readFile(new URL('../../manifests/agent/rbac.yaml', import.meta.url), 'utf8'),
    ) as Array<KubeObject & { subjects?: unknown[] }>) {
      const rt = doc.kind === 'Role' ? ROLES : doc.kind === 'RoleBinding' ? ROLE_BINDINGS : undefined;
      if (!rt) continue;
      if (doc.subjects)
        doc.subjects = [
          { kind: 'User', name: ControlPlane.username('tester-3'), apiGroup: 'rbac.authorization.k8s.io' },
        ];
      await c.client.create(rt, { ...doc, metadata: { ...doc.metadata, namespace: ns } });
    }
    agentKubeconfig = await c.cp.kubeconfigFor('tester-3');
    await createNode(c.client, node, {});
    // Models are served on a Unix socket only, as the DaemonSet does: nothing on the network.
    daemon = await startModelcache(
      'daemon',
      [
        'daemon',
        '--kubeconfig',
        c.cp.kubeconfig,
        '--node-name',
        node,
        '--root',
        join(work, 'cache'),
        '--listen',
        '127.0.0.1:0',
        '--artifact-socket',
        socketPath(),
        '--safety-margin',
        '0',
      ],
      work,
      reaper,
    );
    server = await V2ModelServer.start(modelDir());
  },
  teardown: async () => {
    await daemon?.stop('SIGKILL');
    reaper.close();
    await origin.close();
    await server.close();
    await rm(work, { recursive: true, force: true });
  },
});

const socketPath = (): string => join(work, 'run', 'artifacts.sock');

/** GET over the daemon's artifact socket. */
function getOverSocket(path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    httpGet({ socketPath: socketPath(), path }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    }).on('error', reject);
  });
}

async function createTm(name: string, storageUri: string): Promise<void> {
  await cluster.client.create(TRAINED_MODELS, {
    apiVersion: 'serving.kserve.io/v1alpha1',
    kind: 'TrainedModel',
    metadata: { name, namespace: ns },
    spec: { inferenceService: 'shared', model: { storageUri, framework: 'sklearn', memory: '10Mi' } },
  } as TrainedModel);
}
const loadedCondition = async (name: string) =>
  (await cluster.client.get<TrainedModel>(TRAINED_MODELS, name, { namespace: ns }))?.status?.conditions?.find(
    (c) => c.type === 'ModelLoaded',
  );
const entry = (name: string, storageUri: string) => ({
  modelName: name,
  modelSpec: { storageUri, framework: 'sklearn', memory: '10Mi' },
});

test('the agent loads from the node cache with zero origin requests, from the origin when the cache lacks the model, reports outcomes, unloads on removal', async () => {
  const iris = origin.url('/models/iris.tar.gz');
  origin.set(
    '/models/iris.tar.gz',
    await makeTar(
      [
        { name: 'model.joblib', content: 'IRIS' },
        { name: 'sub/extra.bin', content: 'EXTRA' },
      ],
      true,
    ),
  );
  origin.set('/models/other.bin', Buffer.from('OTHER'));
  await cluster.client.create(LOCAL_MODEL_NODES, {
    apiVersion: 'serving.kserve.io/v1alpha1',
    kind: 'LocalModelNode',
    metadata: { name: node },
    spec: {
      localModels: [
        {
          sourceModelUri: iris,
          modelName: 'iris',
          modelSize: 1_000_000,
          storagePath: '/var/lib/modelcache',
          storageKey: storageKeyFor(iris),
        },
      ],
    },
  } as LocalModelNode);
  await eventually(
    async () => {
      const list = JSON.parse((await getOverSocket('/v1/models')).body) as Array<{ uri: string }>;
      assert.ok(
        list.some((m) => m.uri === iris),
        'cached on the node',
      );
    },
    { timeoutMs: 30_000 },
  );
  assert.equal((await fetch(`${daemon.opsUrl}/v1/models`)).status, 404, 'not served on the network listener');
  assert.equal((await fetch(`${daemon.opsUrl}/metrics`)).status, 200);
  const irisRequests = origin.requestsFor('/models/iris.tar.gz').length;

  for (const [n, uri] of [
    ['iris-a', iris],
    ['iris-sub', `${iris}/sub`],
    ['other', origin.url('/models/other.bin')],
    ['broken', iris],
  ] as const)
    await createTm(n, uri);
  server.failLoad.set('broken', 'out of GPU memory');
  const wanted = [
    entry('iris-a', iris),
    entry('iris-sub', `${iris}/sub`),
    entry('other', origin.url('/models/other.bin')),
    entry('broken', iris),
  ];
  await writeFile(modelsJson(), JSON.stringify(wanted));
  const agent = await startModelcache(
    'agent',
    [
      'agent',
      '--models-json',
      modelsJson(),
      '--model-dir',
      modelDir(),
      '--server',
      server.url,
      '--cache-url',
      `unix://${socketPath()}`,
      '--namespace',
      ns,
      '--kubeconfig',
      agentKubeconfig,
      '--poll-ms',
      '200',
      '--listen',
      '127.0.0.1:0',
    ],
    work,
    reaper,
  );
  try {
    await eventually(async () => assert.deepEqual([...server.loaded].sort(), ['iris-a', 'iris-sub', 'other']), {
      timeoutMs: 30_000,
    });
    assert.equal(await readFile(join(modelDir(), 'iris-a', 'model.joblib'), 'utf8'), 'IRIS');
    assert.deepEqual(
      (await readdir(join(modelDir(), 'iris-sub'))).sort(),
      [`SUCCESS.${specHash(wanted[1]!.modelSpec)}`, 'extra.bin'],
      'only the subpath',
    );
    assert.equal(await readFile(join(modelDir(), 'other', 'other.bin'), 'utf8'), 'OTHER');
    assert.equal(origin.requestsFor('/models/iris.tar.gz').length, irisRequests, 'no origin request for cached models');
    assert.ok(origin.requestsFor('/models/other.bin').length >= 1, 'the uncached model came from the origin');
    await eventually(async () => {
      assert.match((await loadedCondition('iris-a'))?.message ?? '', /files from the node cache/);
      assert.match((await loadedCondition('other'))?.message ?? '', /files from the source/);
      const broken = await loadedCondition('broken');
      assert.equal(broken?.status, 'False');
      assert.equal(broken?.reason, 'LoadFailed');
      assert.match(broken?.message ?? '', /out of GPU memory/);
    });

    await writeFile(modelsJson(), JSON.stringify(wanted.filter((w) => w.modelName !== 'iris-a')));
    await eventually(async () => {
      assert.deepEqual(server.callsFor('iris-a'), ['load', 'unload']);
      assert.ok(!(await readdir(modelDir())).includes('iris-a'), 'files removed');
    });
  } finally {
    await agent.stop();
  }
});

test("--configmap: the agent follows the InferenceService's ConfigMap directly (no mounted file)", async (t) => {
  const dir = join(work, 'cm-models');
  const cmServer = await V2ModelServer.start(dir);
  t.after(() => cmServer.close());
  const iris = origin.url('/models/iris.tar.gz');
  const cm = 'modelconfig-watched-0';
  await cluster.client.create(CONFIGMAPS, {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: cm, namespace: ns },
    data: { 'models.json': JSON.stringify([entry('watched', iris)]) },
  });
  const agent = await startModelcache(
    'agent-cm',
    [
      'agent',
      '--configmap',
      cm,
      '--namespace',
      ns,
      '--model-dir',
      dir,
      '--server',
      cmServer.url,
      '--cache-url',
      `unix://${socketPath()}`,
      '--kubeconfig',
      agentKubeconfig,
      '--poll-ms',
      '60000',
      '--listen',
      '127.0.0.1:0',
    ],
    work,
    reaper,
  );
  try {
    await eventually(async () => assert.deepEqual([...cmServer.loaded], ['watched']), { timeoutMs: 30_000 });
    assert.equal(await readFile(join(dir, 'watched', 'model.joblib'), 'utf8'), 'IRIS');
    // A change reaches the agent through the watch, long before the next poll (60 s).
    await cluster.client.mergePatch(CONFIGMAPS, cm, { data: { 'models.json': '[]' } }, { namespace: ns });
    await eventually(async () => assert.deepEqual(cmServer.callsFor('watched'), ['load', 'unload']), {
      timeoutMs: 20_000,
    });
  } finally {
    await agent.stop();
  }
});
