import { sleep } from '../ops/backoff.ts';
import type { KubeClient } from '../kube/client.ts';
import { CRDS } from '../kube/resources.ts';
import type { KubeObject } from '../kube/types.ts';
import { allCrds } from './schema.ts';

interface CrdStatus extends KubeObject {
  status?: { conditions?: Array<{ type: string; status: string }> };
}

/** Applies our CRDs (server-side apply; by default from api/schema.ts) and waits until the apiserver serves them. */
export async function installCrds(
  client: KubeClient,
  signal?: AbortSignal,
  crds: readonly KubeObject[] = allCrds as unknown as KubeObject[],
): Promise<void> {
  for (const crd of crds) await client.apply(CRDS, crd, { signal });
  for (const crd of crds) {
    for (;;) {
      const got = await client.get<CrdStatus>(CRDS, crd.metadata.name ?? '', { signal });
      if (got?.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')) break;
      await sleep(100, signal);
    }
  }
}
