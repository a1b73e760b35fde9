import { test } from 'node:test';
import assert from 'node:assert/strict';
import { computePlacement } from '../../controller/placement/plan.ts';
import { matchesSelector } from '../../controller/placement/selector.ts';
import { planCache } from '../../controller/local-model-cache/plan.ts';
import { planLocalModelNode } from '../../controller/local-model-node/plan.ts';
import { planGroup } from '../../controller/local-model-node-group/plan.ts';
import { createMergePatch } from '../../kube/merge-patch.ts';
import { CACHE_FINALIZER, type LocalModelNodeGroup, type ModelState } from '../../api/types.ts';
import { cache, group, node, reportedNode } from '../helpers/fixtures.ts';

const NOW = '2026-11-22T00:00:00Z';

test('selector semantics: matchLabels and every operator; {} matches all', () => {
  const labels = { gpu: 'a100', zone: 'z1' };
  assert.ok(matchesSelector(labels, {}));
  assert.ok(matchesSelector(labels, { matchLabels: { gpu: 'a100' } }));
  assert.ok(!matchesSelector(labels, { matchLabels: { gpu: 'h100' } }));
  assert.ok(matchesSelector(labels, { matchExpressions: [{ key: 'gpu', operator: 'In', values: ['h100', 'a100'] }] }));
  assert.ok(!matchesSelector(labels, { matchExpressions: [{ key: 'zone', operator: 'NotIn', values: ['z1'] }] }));
  assert.ok(matchesSelector(labels, { matchExpressions: [{ key: 'zone', operator: 'Exists' }] }));
  assert.ok(!matchesSelector(labels, { matchExpressions: [{ key: 'zone', operator: 'DoesNotExist' }] }));
  assert.ok(matchesSelector(undefined, { matchExpressions: [{ key: 'x', operator: 'NotIn', values: ['y'] }] }));
});

test('a cache goes to every node of ANY of its groups; a node in two groups gets it once', () => {
  const p = computePlacement({
    caches: [cache('llama', 's3://b/llama', '10Gi', ['ga', 'gb'])],
    groups: [group('ga', { pool: 'a' }, '100Gi'), group('gb', { pool: 'b' }, '100Gi')],
    nodes: [node('n1', { pool: 'a' }), node('n2', { pool: 'b' }), node('n3', { pool: 'c' })],
  });
  assert.deepEqual(p.caches.get('llama')?.nodes, ['n1', 'n2']);
  assert.deepEqual(p.caches.get('llama')?.problems, []);
  assert.equal(p.nodeModels.get('n1')?.[0]?.nodeGroup, 'ga');
  assert.equal(p.nodeModels.get('n2')?.[0]?.nodeGroup, 'gb');
  assert.equal(p.nodeModels.get('n1')?.[0]?.modelSize, 10 * 2 ** 30);
  assert.equal(p.nodeModels.has('n3'), false);
});

test('storageLimit: oldest caches placed first, the one that does not fit is refused with numbers; deleting one makes room', () => {
  const groups = [group('g', { pool: 'a' }, '25Gi')];
  const nodes = [node('n1', { pool: 'a' })];
  const caches = [
    cache('b-second', 's3://b/2', '10Gi', ['g'], '2026-01-02T00:00:00Z'),
    cache('a-first', 's3://b/1', '10Gi', ['g'], '2026-01-01T00:00:00Z'),
    cache('c-third', 's3://b/3', '10Gi', ['g'], '2026-01-03T00:00:00Z'),
  ];
  const p = computePlacement({ caches, groups, nodes });
  assert.deepEqual(p.groups.get('g')?.caches, ['a-first', 'b-second']);
  const third = p.caches.get('c-third');
  assert.deepEqual(third?.nodes, []);
  assert.equal(third?.problems[0]?.reason, 'StorageLimitExceeded');
  assert.match(third?.problems[0]?.message ?? '', /needs 10Gi but node group g has 5Gi of its 25Gi storageLimit left/);

  const deleting = { ...caches[1]!, metadata: { ...caches[1]!.metadata, deletionTimestamp: NOW } };
  const p2 = computePlacement({ caches: [caches[0]!, deleting, caches[2]!], groups, nodes });
  assert.deepEqual(p2.groups.get('g')?.caches, ['b-second', 'c-third']);
  assert.deepEqual(
    p2.nodeModels.get('n1')?.map((m) => m.modelName),
    ['b-second', 'c-third'],
  );
});

test('duplicate sourceModelUri: the newer cache is not placed; a missing group is reported', () => {
  const p = computePlacement({
    caches: [
      cache('old', 's3://b/m', '1Gi', ['g'], '2026-01-01T00:00:00Z'),
      cache('new', 's3://b/m', '1Gi', ['g', 'nope'], '2026-01-02T00:00:00Z'),
      cache('lost', 's3://b/x', '1Gi', ['nope']),
    ],
    groups: [group('g', {}, '10Gi')],
    nodes: [node('n1', {})],
  });
  assert.deepEqual(p.caches.get('old')?.nodes, ['n1']);
  assert.equal(p.caches.get('new')?.problems[0]?.reason, 'DuplicateSourceModelUri');
  assert.match(p.caches.get('new')?.problems[0]?.message ?? '', /already cached by LocalModelCache old/);
  assert.equal(p.caches.get('lost')?.problems[0]?.reason, 'NodeGroupNotFound');
});

test('cache status: nodeStatus follows node reports and readiness; copies equal what nodeStatus says', () => {
  const c = {
    ...cache('m', 's3://b/m', '1Gi', ['g']),
    metadata: { ...cache('m', 's3://b/m', '1Gi', ['g']).metadata, finalizers: [CACHE_FINALIZER] },
  };
  const placement = { name: 'm', deleting: false, nodes: ['n1', 'n2', 'n3', 'n4'], problems: [] };
  const nodes = new Map([
    ['n1', node('n1', {})],
    ['n2', node('n2', {})],
    ['n3', node('n3', {}, false)],
    ['n4', node('n4', {})],
  ]);
  const lmns = new Map([
    ['n1', reportedNode('n1', { m: 'ModelDownloaded' })],
    ['n2', reportedNode('n2', { m: 'ModelDownloadError' })],
    ['n3', reportedNode('n3', { m: 'ModelDownloaded' })],
  ]);
  const plan = planCache({ cache: c, placement, nodes, localModelNodes: lmns, now: NOW });
  assert.deepEqual(plan.status?.nodeStatus, {
    n1: 'NodeDownloaded',
    n2: 'NodeDownloadError',
    n3: 'NodeNotReady',
    n4: 'NodeDownloadPending',
  });
  assert.deepEqual(plan.status?.copies, { available: 1, failed: 1, total: 4 });
  assert.equal(plan.status?.progress, '25%', 'one of four nodes holds the model');
  assert.equal(plan.finalizer, 'keep');
  assert.ok(plan.events.some((e) => e.reason === 'NodeDownloadError' && e.message.startsWith('node n2')));
  const ready = plan.status?.conditions?.find((c) => c.type === 'Ready');
  assert.equal(ready?.reason, 'DownloadFailed');
  // Applying the planned status and planning again changes nothing: no write, no repeated Event.
  const again = planCache({
    cache: { ...c, status: plan.status },
    placement,
    nodes,
    localModelNodes: lmns,
    now: '2026-11-23T00:00:00Z',
  });
  assert.equal(again.status, undefined);
  assert.deepEqual(again.events, []);
});

test('cache deletion waits for Ready nodes that still hold the files; deleted or NotReady nodes count as gone', () => {
  const base = cache('m', 's3://b/m', '1Gi', ['g']);
  const c = { ...base, metadata: { ...base.metadata, finalizers: [CACHE_FINALIZER], deletionTimestamp: NOW } };
  const placement = { name: 'm', deleting: true, nodes: [], problems: [] };
  const lmns = new Map([
    ['n1', reportedNode('n1', { m: 'ModelDownloaded' }, [])],
    ['n2', reportedNode('n2', { m: 'ModelDownloaded' })],
  ]);
  const waiting = planCache({
    cache: c,
    placement,
    nodes: new Map([
      ['n1', node('n1', {})],
      ['n2', node('n2', {}, false)],
    ]),
    localModelNodes: lmns,
    now: NOW,
  });
  assert.equal(waiting.finalizer, 'keep');
  assert.deepEqual(Object.keys(waiting.status?.nodeStatus ?? {}), ['n1']);
  const done = planCache({
    cache: c,
    placement,
    nodes: new Map([['n2', node('n2', {}, false)]]),
    localModelNodes: lmns,
    now: NOW,
  });
  assert.equal(done.finalizer, 'remove');
});

test('LocalModelNode plan: apply when different, nothing when equal, delete when the node is gone or holds nothing', () => {
  const n = node('n1', {});
  const p = computePlacement({
    caches: [cache('m', 's3://b/m', '1Gi', ['g'])],
    groups: [group('g', {}, '10Gi')],
    nodes: [n],
  });
  const desired = p.nodeModels.get('n1') ?? [];
  const first = planLocalModelNode('n1', n, desired, undefined);
  assert.equal(first.action, 'create');
  const obj = first.action === 'create' ? first.object : undefined;
  assert.deepEqual(obj?.metadata.ownerReferences?.[0], { apiVersion: 'v1', kind: 'Node', name: 'n1', uid: 'uid-n1' });
  assert.equal(planLocalModelNode('n1', n, desired, obj).action, 'none');
  assert.equal(planLocalModelNode('n1', undefined, desired, obj).action, 'delete');
  const emptied = planLocalModelNode('n1', n, [], obj);
  assert.equal(emptied.action, 'update');
  assert.equal(planLocalModelNode('n1', n, [], { ...obj!, spec: { localModels: [] } }).action, 'delete');
});

test('group status: planned bytes against the limit and who did not fit', () => {
  const g = group('g', {}, '15Gi');
  const p = computePlacement({
    caches: [cache('a', 's3://b/a', '10Gi', ['g']), cache('b', 's3://b/b', '10Gi', ['g'], '2026-02-01T00:00:00Z')],
    groups: [g],
    nodes: [node('n1', {})],
  });
  const plan = planGroup(g, p.groups.get('g'), NOW);
  assert.equal(plan.status?.usage, '10Gi/15Gi');
  assert.equal(plan.status?.cacheCount, 1);
  assert.equal(plan.status?.conditions?.[0]?.reason, 'StorageLimitExceeded');
  assert.equal(plan.events.length, 1);
  assert.equal(planGroup({ ...g, status: plan.status }, p.groups.get('g'), NOW).status, undefined);
});

test('merge patch removes keys that are gone and leaves equal values out', () => {
  assert.deepEqual(createMergePatch({ a: 1, m: { x: 'A', y: 'B' } }, { a: 1, m: { x: 'A' } }), { m: { y: null } });
  assert.equal(createMergePatch({ a: [1] }, { a: [1] }), undefined);
  assert.deepEqual(createMergePatch({ a: [1] }, { a: [1, 2] }), { a: [1, 2] });
  assert.deepEqual(createMergePatch(undefined, { a: 1 }), { a: 1 });
});

test('cache progress: bytes on disk across its nodes in whole percents, rounded down; 100% only when every node has it', () => {
  const c = cache('m', 's3://b/m', '100', ['g']);
  const placement = { name: 'm', deleting: false, nodes: ['n1', 'n2'], problems: [] };
  const nodes = new Map([
    ['n1', node('n1', {})],
    ['n2', node('n2', {})],
  ]);
  const downloading = (name: string, bytesDone: number, bytesTotal?: number) => {
    const lmn = reportedNode(name, { m: 'ModelDownloading' });
    return {
      ...lmn,
      status: { ...lmn.status, models: { m: { bytesDone, ...(bytesTotal !== undefined ? { bytesTotal } : {}) } } },
    };
  };
  const at = (n1: ReturnType<typeof reportedNode>, n2: ReturnType<typeof reportedNode>) =>
    planCache({
      cache: c,
      placement,
      nodes,
      localModelNodes: new Map([
        ['n1', n1],
        ['n2', n2],
      ]),
      now: NOW,
    }).status?.progress;
  assert.equal(at(downloading('n1', 30), downloading('n2', 0)), '15%');
  assert.equal(
    at(reportedNode('n1', { m: 'ModelDownloaded' }), downloading('n2', 99)),
    '99%',
    '199 of 200 bytes is not done',
  );
  assert.equal(
    at(downloading('n1', 50, 200), downloading('n2', 50, 200)),
    '25%',
    'the size the origin announced counts over modelSize',
  );
  assert.equal(
    at(reportedNode('n1', { m: 'ModelDownloaded' }), reportedNode('n2', { m: 'ModelDownloadError' })),
    '50%',
  );
  assert.equal(at(reportedNode('n1', { m: 'ModelDownloaded' }), reportedNode('n2', { m: 'ModelDownloaded' })), '100%');
});

/** KServe's node group as its e2e test writes it: no nodeSelector, a local PV with hostname affinity. */
function kserveGroup(name: string, hosts: string[], limit = '100Gi'): LocalModelNodeGroup {
  return {
    apiVersion: 'serving.kserve.io/v1alpha1',
    kind: 'LocalModelNodeGroup',
    metadata: { name },
    spec: {
      storageLimit: limit,
      persistentVolumeSpec: {
        accessModes: ['ReadWriteOnce'],
        storageClassName: 'standard',
        capacity: { storage: limit },
        local: { path: '/models' },
        persistentVolumeReclaimPolicy: 'Delete',
        nodeAffinity: {
          required: {
            nodeSelectorTerms: [
              { matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: hosts }] },
            ],
          },
        },
      },
      persistentVolumeClaimSpec: {
        accessModes: ['ReadWriteOnce'],
        resources: { requests: { storage: limit } },
        storageClassName: 'standard',
      },
    },
  };
}

const hostNode = (name: string, labels: Record<string, string> = {}) =>
  node(name, { 'kubernetes.io/hostname': name, ...labels });

test("KServe's node group: members are the nodes its PV's nodeAffinity names; the model goes under local.path", () => {
  const p = computePlacement({
    caches: [cache('llama', 's3://b/llama', '1Gi', ['workers'])],
    groups: [kserveGroup('workers', ['node-a', 'node-b'])],
    nodes: [hostNode('node-a'), hostNode('node-b'), hostNode('node-c')],
  });
  assert.deepEqual(p.caches.get('llama')?.nodes, ['node-a', 'node-b']);
  assert.deepEqual(p.groups.get('workers')?.nodes, ['node-a', 'node-b']);
  assert.equal(p.nodeModels.get('node-a')?.[0]?.storagePath, '/models');
  assert.equal(p.nodeModels.has('node-c'), false);
});

test('a group with nodeSelector and nodeAffinity takes only the nodes that match both', () => {
  const g = kserveGroup('g', ['n1', 'n2']);
  g.spec.nodeSelector = { matchLabels: { gpu: 'yes' } };
  const p = computePlacement({
    caches: [cache('m', 's3://b/m', '1Gi', ['g'])],
    groups: [g],
    nodes: [hostNode('n1', { gpu: 'yes' }), hostNode('n2'), hostNode('n3', { gpu: 'yes' })],
  });
  assert.deepEqual(p.caches.get('m')?.nodes, ['n1']);
});

test('storagePath wins over the PV path; hostPath.path is used without local.path', () => {
  const ours = kserveGroup('ours', ['n1']);
  ours.spec.storagePath = '/srv/models';
  const host = kserveGroup('host', ['n2']);
  const { local: _local, ...pv } = host.spec.persistentVolumeSpec ?? {};
  host.spec.persistentVolumeSpec = { ...pv, hostPath: { path: '/mnt/disk/models' } };
  const p = computePlacement({
    caches: [cache('m', 's3://b/m', '1Gi', ['ours', 'host'])],
    groups: [ours, host],
    nodes: [hostNode('n1'), hostNode('n2')],
  });
  assert.equal(p.nodeModels.get('n1')?.[0]?.storagePath, '/srv/models');
  assert.equal(p.nodeModels.get('n2')?.[0]?.storagePath, '/mnt/disk/models');
});

test('a node affinity that cannot be evaluated selects no node and makes the group not Ready, naming the field', () => {
  const g = kserveGroup('g', ['n1']);
  g.spec.persistentVolumeSpec!.nodeAffinity!.required!.nodeSelectorTerms = [
    { matchExpressions: [{ key: 'gpus', operator: 'Gt', values: ['many'] }] },
  ];
  const p = computePlacement({ caches: [], groups: [g], nodes: [hostNode('n1', { gpus: '8' })] });
  assert.deepEqual(p.groups.get('g')?.nodes, []);
  const plan = planGroup(g, p.groups.get('g'), NOW);
  const ready = plan.status?.conditions?.find((c) => c.type === 'Ready');
  assert.equal(ready?.reason, 'InvalidNodeSelection');
  assert.match(
    ready?.message ?? '',
    /persistentVolumeSpec\.nodeAffinity\.required\.nodeSelectorTerms\[0\].*Gt on 'gpus'/,
  );
  assert.equal(plan.events[0]?.type, 'Warning');
});

test('editing nodeGroups moves placement: nodes of the removed group drop the model, the new group gets it', () => {
  const groups = [kserveGroup('old', ['n1']), kserveGroup('new', ['n2'])];
  const nodes = [hostNode('n1'), hostNode('n2')];
  const before = computePlacement({ caches: [cache('m', 's3://b/m', '1Gi', ['old'])], groups, nodes });
  assert.deepEqual(before.caches.get('m')?.nodes, ['n1']);
  const after = computePlacement({ caches: [cache('m', 's3://b/m', '1Gi', ['new'])], groups, nodes });
  assert.deepEqual(after.caches.get('m')?.nodes, ['n2']);
  assert.equal(after.nodeModels.has('n1'), false, 'n1 is asked to hold nothing: its daemon removes the files');
  assert.equal(
    planLocalModelNode('n1', nodes[0], [], {
      metadata: { name: 'n1' },
      spec: { localModels: before.nodeModels.get('n1') ?? [] },
    }).action,
    'update',
  );
});

test('a modelSize made smaller than a downloaded copy is reported with the sizes, once; raising it clears it', () => {
  const shrunk = cache('m', 's3://b/m', '1Gi', ['g']);
  const placement = { name: 'm', deleting: false, nodes: ['n1', 'n2'], problems: [] };
  const nodes = new Map([
    ['n1', node('n1', {})],
    ['n2', node('n2', {})],
  ]);
  const done = (name: string, bytes: number) => {
    const lmn = reportedNode(name, { m: 'ModelDownloaded' });
    return { ...lmn, status: { ...lmn.status, models: { m: { bytesDone: bytes, bytesTotal: bytes } } } };
  };
  const lmns = new Map([
    ['n1', done('n1', 1.5 * 2 ** 30)],
    ['n2', done('n2', 2 ** 29)],
  ]);
  const plan = planCache({ cache: shrunk, placement, nodes, localModelNodes: lmns, now: NOW });
  const fits = plan.status?.conditions?.find((c) => c.type === 'SizeFits');
  assert.equal(fits?.status, 'False');
  assert.equal(fits?.reason, 'ModelSizeExceeded');
  assert.match(
    fits?.message ?? '',
    /modelSize 1Gi \(1073741824 bytes\) is smaller than 1 copy\(ies\).*n1 holds 1\.5Gi/,
  );
  assert.match(fits?.message ?? '', /at least 1610612736 bytes/);
  assert.ok(!fits?.message?.includes('n2'), 'n2 fits');
  assert.equal(plan.status?.nodeStatus?.n1, 'NodeDownloaded', 'the copy is kept, not dropped');
  assert.ok(plan.events.some((e) => e.reason === 'ModelSizeExceeded'));
  const again = planCache({
    cache: { ...shrunk, status: plan.status },
    placement,
    nodes,
    localModelNodes: lmns,
    now: NOW,
  });
  assert.equal(again.status, undefined);
  assert.deepEqual(again.events, []);

  const raised = { ...shrunk, spec: { ...shrunk.spec, modelSize: '2Gi' }, status: plan.status };
  const cleared = planCache({ cache: raised, placement, nodes, localModelNodes: lmns, now: NOW });
  assert.equal(cleared.status?.conditions?.find((c) => c.type === 'SizeFits')?.status, 'True');
});

test("group status carries KServe's used and available: bytes on the fullest node, as the nodes report them", () => {
  const g = group('g', {}, '10Gi');
  const p = computePlacement({
    caches: [cache('a', 's3://b/a', '2Gi', ['g']), cache('b', 's3://b/b', '2Gi', ['g'])],
    groups: [g],
    nodes: [node('n1', {}), node('n2', {})],
  });
  const report = (name: string, models: Record<string, [ModelState, number]>) => {
    const lmn = reportedNode(name, Object.fromEntries(Object.entries(models).map(([m, [s]]) => [m, s])));
    const details = Object.fromEntries(Object.entries(models).map(([m, [, bytes]]) => [m, { bytesDone: bytes }]));
    return { ...lmn, status: { ...lmn.status, models: details } };
  };
  const lmns = new Map([
    ['n1', report('n1', { a: ['ModelDownloaded', 2 ** 30], b: ['ModelDownloading', 2 ** 29] })],
    ['n2', report('n2', { a: ['ModelDownloaded', 2 ** 30], b: ['ModelDownloadPending', 0] })],
  ]);
  const plan = planGroup(g, p.groups.get('g'), NOW, lmns);
  assert.equal(plan.status?.used, '1536Mi');
  assert.equal(plan.status?.available, '8704Mi');
  const empty = planGroup(g, p.groups.get('g'), NOW, new Map());
  assert.equal(empty.status?.used, '0');
  assert.equal(empty.status?.available, '10Gi');
});
