import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nodeLeavingReason } from '../../daemon/node-cache/node-leaving.ts';
import type { Node } from '../../kube/types.ts';

const node = (
  extra: Partial<Node['metadata']> = {},
  taints: Array<{ key: string; value?: string; effect: string }> = [],
): Node => ({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1', ...extra }, spec: { taints } });

test('a node is leaving when deleted or tainted for removal by an autoscaler; cordoned or other taints are not leaving', () => {
  assert.equal(nodeLeavingReason(undefined), undefined);
  assert.equal(nodeLeavingReason(node()), undefined);
  assert.equal(
    nodeLeavingReason({
      ...node(),
      spec: { unschedulable: true, taints: [{ key: 'node.kubernetes.io/unschedulable', effect: 'NoSchedule' }] },
    }),
    undefined,
    'a cordon is maintenance, not removal',
  );
  assert.equal(nodeLeavingReason(node({}, [{ key: 'nvidia.com/gpu', effect: 'NoSchedule' }])), undefined);
  assert.match(
    nodeLeavingReason(node({ deletionTimestamp: '2026-11-23T00:00:00Z' })) ?? '',
    /node n1 is being deleted/,
  );
  assert.match(
    nodeLeavingReason(
      node({}, [{ key: 'ToBeDeletedByClusterAutoscaler', value: '1763856000', effect: 'NoSchedule' }]),
    ) ?? '',
    /ToBeDeletedByClusterAutoscaler: the cluster autoscaler is removing it/,
  );
  assert.match(
    nodeLeavingReason(node({}, [{ key: 'karpenter.sh/disrupted', effect: 'NoSchedule' }])) ?? '',
    /Karpenter/,
  );
  assert.match(
    nodeLeavingReason(node({}, [{ key: 'karpenter.sh/disruption', value: 'disrupting', effect: 'NoSchedule' }])) ?? '',
    /Karpenter/,
    'Karpenter before v1',
  );
});
