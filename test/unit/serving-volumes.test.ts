// The serving volumes' rules, one short test per rule: which consumers a cache has, which PV and PVC each
// namespace gets (KServe's names and shapes), and when they go.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { InferenceService, LLMInferenceService } from '../../api/kserve.ts';
import type { LocalModelCache, LocalModelNodeGroup } from '../../api/types.ts';
import type { PersistentVolume, PersistentVolumeClaim, Pod } from '../../kube/resources.ts';
import { findConsumers, type CacheConsumer, type ConsumerSources } from '../../controller/serving-volumes/consumers.ts';
import { planServingVolumes, type VolumeObservation } from '../../controller/serving-volumes/plan.ts';
import { servingVolume, SPEC_HASH_ANNOTATION } from '../../controller/serving-volumes/volumes.ts';
import { cache as cacheObj, group as groupObj } from '../helpers/fixtures.ts';

const URI = 's3://models/llama';
const CACHE = cacheObj('llama', URI, '2Gi', ['gpu', 'cpu']);
const GPU = groupObj('gpu', { pool: 'gpu' }, '100Gi', '/mnt/cache');
const CPU = groupObj('cpu', { pool: 'cpu' }, '50Gi');

/** KServe's node group as its e2e test writes it. */
const KSERVE: LocalModelNodeGroup = {
  metadata: { name: 'workers' },
  spec: {
    storageLimit: '1Gi',
    persistentVolumeSpec: {
      accessModes: ['ReadWriteOnce'],
      storageClassName: 'standard',
      capacity: { storage: '1Gi' },
      local: { path: '/models' },
      persistentVolumeReclaimPolicy: 'Delete',
      nodeAffinity: {
        required: {
          nodeSelectorTerms: [
            { matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: ['node-a', 'node-b'] }] },
          ],
        },
      },
    },
    persistentVolumeClaimSpec: {
      accessModes: ['ReadWriteOnce'],
      resources: { requests: { storage: '1Gi' } },
      storageClassName: 'standard',
    },
  },
};

const groupsOf = (...gs: LocalModelNodeGroup[]) => new Map(gs.map((g) => [g.metadata.name ?? '', g]));
const GROUPS = groupsOf(GPU, CPU, KSERVE);

function isvc(namespace: string, name: string, uri: string, extra: Partial<InferenceService['metadata']> = {}) {
  return {
    metadata: { name, namespace, ...extra },
    spec: { predictor: { model: { modelFormat: { name: 'pytorch' }, storageUri: uri } } },
  } as InferenceService;
}

const none: ConsumerSources = { inferenceServices: [], llmInferenceServices: [], pods: [] };

function consumersOf(sources: Partial<ConsumerSources>, caches: LocalModelCache[] = [CACHE]): CacheConsumer[] {
  return findConsumers({ ...none, ...sources }, caches, GROUPS);
}

function observe(o: Partial<VolumeObservation>): VolumeObservation {
  return {
    cache: CACHE,
    groups: GROUPS,
    consumers: [],
    volumes: new Map(),
    claims: new Map(),
    inUse: new Set(),
    unusedSince: new Map(),
    consumersKnown: true,
    now: 1_000_000,
    graceMs: 60_000,
    ...o,
  };
}

/** The objects as the apiserver would hold them once made and bound. */
function existing(ns: string, group = 'gpu', cache = CACHE) {
  const v = servingVolume(cache, GROUPS.get(group) as LocalModelNodeGroup, ns);
  assert.ok(!('error' in v));
  const pvc: PersistentVolumeClaim = {
    ...v.pvc,
    metadata: { ...v.pvc.metadata, uid: `pvc-${ns}` },
    status: { phase: 'Bound' },
  };
  const pv: PersistentVolume = {
    ...v.pv,
    metadata: { ...v.pv.metadata, uid: `pv-${ns}` },
    spec: { ...v.pv.spec, claimRef: { ...v.pv.spec?.claimRef, uid: `pvc-${ns}` } },
    status: { phase: 'Bound' },
  };
  return {
    pv,
    pvc,
    volumes: new Map([[pv.metadata.name ?? '', pv]]),
    claims: new Map([[`${ns}/${pvc.metadata.name}`, pvc]]),
  };
}

test("an InferenceService using the cache (or below it) is a consumer in its namespace, through the cache's first group", () => {
  assert.deepEqual(consumersOf({ inferenceServices: [isvc('a', 'svc', `${URI}/sub`), isvc('b', 'x', 's3://other')] }), [
    { kind: 'InferenceService', name: 'svc', namespace: 'a', cache: 'llama', group: 'gpu' },
  ]);
});

test('the group: the PVC already named by the annotation, else serving.kserve.io/nodegroup, else where the predictor runs', () => {
  const named = isvc('a', 'named', URI, {
    annotations: { 'internal.serving.kserve.io/localmodel-pvc-name': 'llama-cpu' },
  });
  const asked = isvc('a', 'asked', URI, { annotations: { 'serving.kserve.io/nodegroup': 'cpu' } });
  const placed = isvc('a', 'placed', URI);
  (placed.spec.predictor as Record<string, unknown>).nodeSelector = { pool: 'cpu' };
  assert.deepEqual(
    consumersOf({ inferenceServices: [named, asked, placed] }).map((c) => c.group),
    ['cpu', 'cpu', 'cpu'],
  );
});

test('serving.kserve.io/disable-localmodel and namespaced-cache objects are not consumers', () => {
  const off = isvc('a', 'off', URI, { annotations: { 'serving.kserve.io/disable-localmodel': '' } });
  const ns = isvc('a', 'ns', URI, { labels: { 'internal.serving.kserve.io/localmodel-namespace': 'a' } });
  assert.deepEqual(consumersOf({ inferenceServices: [off, ns] }), []);
});

test('an LLMInferenceService by spec.model.uri, and pods by label, the group from the claim they mount', () => {
  const llm: LLMInferenceService = { metadata: { name: 'chat', namespace: 'l' }, spec: { model: { uri: URI } } };
  const opted: Pod = {
    metadata: { name: 'vllm', namespace: 'p', labels: { 'modelcache.io/cache': 'llama' } },
    spec: { volumes: [{ name: 'modelcache-model', persistentVolumeClaim: { claimName: 'llama-cpu' } }] },
  };
  const predictor: Pod = {
    metadata: { name: 'pred', namespace: 'k', labels: { 'internal.serving.kserve.io/localmodel': 'llama' } },
    spec: { volumes: [{ name: 'kserve-pvc-source', persistentVolumeClaim: { claimName: 'llama-gpu' } }] },
  };
  const missing: Pod = { metadata: { name: 'typo', namespace: 'p', labels: { 'modelcache.io/cache': 'lama' } } };
  assert.deepEqual(consumersOf({ llmInferenceServices: [llm], pods: [opted, predictor, missing] }), [
    { kind: 'LLMInferenceService', name: 'chat', namespace: 'l', cache: 'llama', group: 'gpu' },
    { kind: 'Pod', name: 'vllm', namespace: 'p', cache: 'llama', group: 'cpu' },
    { kind: 'Pod', name: 'pred', namespace: 'k', cache: 'llama', group: 'gpu' },
  ]);
});

const consumer = (namespace: string, group = 'gpu'): CacheConsumer => ({
  kind: 'InferenceService',
  name: 'svc',
  namespace,
  cache: 'llama',
  group,
});

test("KServe's group: PV <cache>-<group>-<ns> is its persistentVolumeSpec, PVC <cache>-<group> its claim spec", () => {
  const cache = cacheObj('llama', URI, '1Gi', ['workers']);
  const plan = planServingVolumes(observe({ cache, consumers: [{ ...consumer('team-a'), group: 'workers' }] }));
  assert.deepEqual(plan.problems, []);
  const [pv, pvc] = plan.actions.map((a) => (a.kind === 'create' ? a.object : assert.fail(a.kind)));
  assert.equal(pv?.metadata.name, 'llama-workers-team-a');
  const { claimRef, ...pvSpec } = pv?.spec ?? {};
  assert.deepEqual(pvSpec, KSERVE.spec.persistentVolumeSpec);
  assert.deepEqual(claimRef, {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    namespace: 'team-a',
    name: 'llama-workers',
  });
  assert.equal(pvc?.metadata.name, 'llama-workers');
  assert.equal(pvc?.metadata.namespace, 'team-a');
  assert.deepEqual(pvc?.spec, { ...KSERVE.spec.persistentVolumeClaimSpec, volumeName: 'llama-workers-team-a' });
  for (const o of [pv, pvc])
    assert.deepEqual(o?.metadata.ownerReferences, [
      { apiVersion: 'serving.kserve.io/v1alpha1', kind: 'LocalModelCache', name: 'llama', uid: 'uid-llama' },
    ]);
});

test("our group: a local PV at the group's path, node affinity = its node selector, and a claim that binds to it", () => {
  const plan = planServingVolumes(observe({ consumers: [consumer('a')] }));
  const [pv, pvc] = plan.actions.map((a) => (a.kind === 'create' ? a.object : assert.fail(a.kind)));
  assert.deepEqual(pv?.spec?.local, { path: '/mnt/cache' });
  assert.deepEqual(pv?.spec?.nodeAffinity, {
    required: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'pool', operator: 'In', values: ['gpu'] }] }] },
  });
  assert.deepEqual(pv?.spec?.capacity, { storage: '100Gi' });
  assert.equal(pv?.spec?.persistentVolumeReclaimPolicy, 'Retain', 'deleting the PV never touches the files');
  assert.deepEqual(pvc?.spec, {
    accessModes: ['ReadOnlyMany'],
    storageClassName: '',
    volumeMode: 'Filesystem',
    resources: { requests: { storage: '100Gi' } },
    volumeName: 'llama-gpu-a',
  });
});

test('a group with a node selector and a PV node affinity: the PV requires both', () => {
  const both: LocalModelNodeGroup = {
    ...KSERVE,
    spec: { ...KSERVE.spec, nodeSelector: { matchLabels: { zone: 'z1' } } },
  };
  const v = servingVolume(cacheObj('llama', URI, '1Gi', ['workers']), both, 'a');
  assert.ok(!('error' in v));
  assert.deepEqual(v.pv.spec?.nodeAffinity, {
    required: {
      nodeSelectorTerms: [
        {
          matchExpressions: [
            { key: 'kubernetes.io/hostname', operator: 'In', values: ['node-a', 'node-b'] },
            { key: 'zone', operator: 'In', values: ['z1'] },
          ],
        },
      ],
    },
  });
});

test('at steady state nothing is written; two consumers in a namespace share one volume', () => {
  const have = existing('a');
  const plan = planServingVolumes(observe({ consumers: [consumer('a'), consumer('a')], ...have }));
  assert.deepEqual(plan.actions, []);
  assert.deepEqual(plan.unusedSince, new Map());
});

test('a namespace whose consumers left keeps its volumes for the grace period, then loses both', () => {
  const have = existing('a');
  const first = planServingVolumes(observe({ ...have }));
  assert.deepEqual(first.actions, []);
  assert.equal(first.requeueAfterMs, 60_000);
  const later = planServingVolumes(observe({ ...have, unusedSince: first.unusedSince, now: 1_030_000 }));
  assert.deepEqual(later.actions, []);
  assert.equal(later.requeueAfterMs, 30_000);
  const after = planServingVolumes(observe({ ...have, unusedSince: first.unusedSince, now: 1_060_000 }));
  assert.deepEqual(
    after.actions.map((a) => [a.kind, 'name' in a ? a.name : '']),
    [
      ['delete-pvc', 'llama-gpu'],
      ['delete-pv', 'llama-gpu-a'],
    ],
  );
});

test('a consumer coming back within the grace finds the volumes, and the grace starts over', () => {
  const have = existing('a');
  const gone = planServingVolumes(observe({ ...have }));
  const back = planServingVolumes(observe({ ...have, consumers: [consumer('a')], unusedSince: gone.unusedSince }));
  assert.deepEqual(back.actions, []);
  assert.deepEqual(back.unusedSince, new Map());
});

test('never removed while a pod mounts the claim, however long the grace is past', () => {
  const have = existing('a');
  const plan = planServingVolumes(
    observe({ ...have, inUse: new Set(['a/llama-gpu']), unusedSince: new Map([['a/llama-gpu', 0]]) }),
  );
  assert.deepEqual(plan.actions, []);
});

test('nothing is removed while consumers are not known yet', () => {
  const have = existing('a');
  const plan = planServingVolumes(
    observe({ ...have, consumersKnown: false, unusedSince: new Map([['a/llama-gpu', 0]]) }),
  );
  assert.deepEqual(plan.actions, []);
});

test('a PV or PVC of that name owned by something else is reported, never taken over', () => {
  const have = existing('a');
  const foreign = { ...have.pvc, metadata: { ...have.pvc.metadata, ownerReferences: [] } };
  const plan = planServingVolumes(observe({ consumers: [consumer('a')], claims: new Map([['a/llama-gpu', foreign]]) }));
  assert.deepEqual(plan.actions, []);
  assert.match(plan.problems[0] ?? '', /PersistentVolumeClaim a\/llama-gpu already exist.*delete it/);
  // And a PVC of someone else with no consumer is not ours to remove.
  assert.deepEqual(planServingVolumes(observe({ claims: new Map([['a/llama-gpu', foreign]]) })).actions, []);
});

test('a volume made from an older group spec is replaced when nothing mounts it, and reported while mounted', () => {
  const have = existing('a');
  const old = { ...have.pv, metadata: { ...have.pv.metadata, annotations: { [SPEC_HASH_ANNOTATION]: 'older' } } };
  const o = { consumers: [consumer('a')], volumes: new Map([['llama-gpu-a', old]]), claims: have.claims };
  assert.deepEqual(
    planServingVolumes(observe(o)).actions.map((a) => a.kind),
    ['delete-pvc', 'delete-pv'],
  );
  const held = planServingVolumes(observe({ ...o, inUse: new Set(['a/llama-gpu']) }));
  assert.deepEqual(held.actions, []);
  assert.match(held.problems[0] ?? '', /replaced once no pod mounts it/);
});

test('a PV released by its deleted claim is removed (it never binds again), then made anew', () => {
  const have = existing('a');
  const released = { ...have.pv, status: { phase: 'Released' } };
  const plan = planServingVolumes(
    observe({ consumers: [consumer('a')], volumes: new Map([['llama-gpu-a', released]]) }),
  );
  assert.deepEqual(
    plan.actions.map((a) => a.kind),
    ['delete-pv'],
  );
  const orphan = planServingVolumes(observe({ volumes: new Map([['llama-gpu-a', released]]) }));
  assert.deepEqual(
    orphan.actions.map((a) => a.kind),
    ['delete-pv'],
  );
});

test('a consumer through a missing group, or a group with no nodes, is reported and gets nothing', () => {
  const bare: LocalModelNodeGroup = { metadata: { name: 'bare' }, spec: { storageLimit: '1Gi' } };
  const plan = planServingVolumes(
    observe({ groups: groupsOf(GPU, bare), consumers: [consumer('a', 'bare'), consumer('b', 'cpu')] }),
  );
  assert.deepEqual(plan.actions, []);
  assert.equal(plan.problems.length, 2);
  assert.match(plan.problems.join('\n'), /'cpu', which does not exist/);
  assert.match(plan.problems.join('\n'), /'bare' selects no nodes/);
});
