import type { LocalModelCache, LocalModelNode, LocalModelNodeGroup, ModelState } from '../../api/types.ts';
import type { Node } from '../../kube/types.ts';

/** Plain objects for plan tests (and integration tests that create them). */
export function cache(
  name: string,
  uri: string,
  size: string,
  groups: string[],
  created = '2026-01-01T00:00:00Z',
): LocalModelCache {
  return {
    apiVersion: 'serving.kserve.io/v1alpha1',
    kind: 'LocalModelCache',
    metadata: { name, creationTimestamp: created, uid: `uid-${name}`, generation: 1 },
    spec: { sourceModelUri: uri, modelSize: size, nodeGroups: groups },
  };
}

export function group(
  name: string,
  matchLabels: Record<string, string>,
  limit: string,
  storagePath?: string,
): LocalModelNodeGroup {
  return {
    apiVersion: 'serving.kserve.io/v1alpha1',
    kind: 'LocalModelNodeGroup',
    metadata: { name },
    spec: { nodeSelector: { matchLabels }, storageLimit: limit, ...(storagePath ? { storagePath } : {}) },
  };
}

export function node(name: string, labels: Record<string, string>, ready = true): Node {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels, uid: `uid-${name}` },
    status: { conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }] },
  };
}

export function reportedNode(
  name: string,
  models: Record<string, ModelState>,
  specModels: string[] = Object.keys(models),
): LocalModelNode {
  return {
    metadata: { name, ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name, uid: `uid-${name}` }] },
    spec: {
      localModels: specModels.map((m) => ({
        sourceModelUri: `s3://b/${m}`,
        modelName: m,
        modelSize: 1,
        storagePath: '/var/lib/modelcache',
        storageKey: m,
      })),
    },
    status: { modelStatus: models },
  };
}
