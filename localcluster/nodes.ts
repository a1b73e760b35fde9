// Nodes of a local control plane: it has no kubelets, so a Node is registered (and made Ready) as its
// kubelet would do it. Used by the local cluster, the demo, the benchmarks and the tests.
import { isStatus, type KubeClient } from '../kube/client.ts';
import { NODES } from '../kube/resources.ts';
import type { Node } from '../kube/types.ts';
import { rfc3339Now } from '../ops/time.ts';

/** What a simulated node offers the scheduler (status.capacity = status.allocatable), unless a test says otherwise. */
const NODE_RESOURCES: Readonly<Record<string, string>> = {
  cpu: '4',
  memory: '16Gi',
  pods: '110',
  'ephemeral-storage': '100Gi',
};

/**
 * Creates a Node as a kubelet registers one: label kubernetes.io/hostname=<name> (unless given),
 * capacity and allocatable (so kube-scheduler can place pods on it), and its Ready condition.
 */
export async function createNode(
  client: KubeClient,
  name: string,
  labels: Record<string, string>,
  ready = true,
  resources: Record<string, string> = NODE_RESOURCES,
): Promise<Node> {
  const metadata = { name, labels: { 'kubernetes.io/hostname': name, ...labels } };
  await client.create<Node>(NODES, { apiVersion: 'v1', kind: 'Node', metadata });
  await client.patchStatus<Node>(NODES, name, { capacity: resources, allocatable: resources });
  return setNodeReady(client, name, ready);
}

/** Put on every new Node by the apiserver (TaintNodesByCondition); the node lifecycle keeps it while NotReady. */
const NOT_READY_TAINT = { key: 'node.kubernetes.io/not-ready', effect: 'NoSchedule' };

/**
 * Sets a Node's Ready condition, as its kubelet would, and its not-ready taint as the node lifecycle
 * controller would (off when Ready, so the scheduler may place pods there). Capacity is left as it is.
 */
export async function setNodeReady(client: KubeClient, name: string, ready: boolean): Promise<Node> {
  const now = rfc3339Now();
  await client.patchStatus<Node>(NODES, name, {
    conditions: [
      {
        type: 'Ready',
        status: ready ? 'True' : 'False',
        reason: ready ? 'KubeletReady' : 'KubeletNotReady',
        message: 'set by test',
        lastHeartbeatTime: now,
        lastTransitionTime: now,
      },
    ],
  });
  // Taints are an atomic list: rewrite it, conditional on what was read, keeping any taint a test added.
  for (;;) {
    const node = (await client.get<Node>(NODES, name)) as Node;
    const others = (node.spec?.taints ?? []).filter((t) => t.key !== NOT_READY_TAINT.key);
    const taints = ready ? others : [...others, NOT_READY_TAINT];
    const patch = { metadata: { resourceVersion: node.metadata.resourceVersion }, spec: { taints } };
    try {
      return await client.mergePatch<Node>(NODES, name, patch);
    } catch (err) {
      if (!isStatus(err, 409)) throw err;
    }
  }
}
