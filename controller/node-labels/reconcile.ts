import type { Logger } from 'pino';
import { isStatus, type KubeClient } from '../../kube/client.ts';
import { NODES } from '../../kube/resources.ts';
import { planNodeLabels, type NodeLabelsObservation } from './plan.ts';

export interface NodeLabelsDeps {
  client: KubeClient;
  log: Logger;
}

/**
 * Brings one Node's `models.modelcache.io/…` labels to the plan with a merge patch of `metadata.labels`
 * alone (the only change the controller's admission policy lets it make to a Node). True when it wrote.
 */
export async function reconcileNodeLabels(
  deps: NodeLabelsDeps,
  name: string,
  obs: NodeLabelsObservation,
  signal: AbortSignal,
): Promise<boolean> {
  const plan = planNodeLabels(obs);
  if (!plan.patch) return false;
  try {
    await deps.client.mergePatch(NODES, name, { metadata: { labels: plan.patch } }, { signal });
  } catch (err) {
    // Deleted since the informer saw it: nothing left to label.
    if (isStatus(err, 404)) return false;
    throw err;
  }
  const added = Object.keys(plan.patch).filter((k) => plan.patch?.[k] === 'true');
  const removed = Object.keys(plan.patch).filter((k) => plan.patch?.[k] === null);
  deps.log.info({ node: name, added, removed }, 'node labels of complete copies updated');
  return true;
}
