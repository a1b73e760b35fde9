import { installCrds } from '../../api/install.ts';
import {
  CLUSTER_SERVING_RUNTIMES,
  INFERENCE_SERVICES,
  LLM_INFERENCE_SERVICES,
  SERVING_RUNTIMES,
} from '../../api/kserve.ts';
import type { KubeClient } from '../../kube/client.ts';
import type { KubeObject, ResourceType } from '../../kube/types.ts';

// Defined in api/kserve.ts; re-exported only until test/integration/webhooks.test.ts imports it from there.

/** A minimal CRD for one of KServe's kinds: any fields accepted, a status subresource. */
function looseCrd(rt: ResourceType): KubeObject {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${rt.plural}.${rt.group}` },
    spec: {
      group: rt.group,
      scope: rt.namespaced ? 'Namespaced' : 'Cluster',
      names: { kind: rt.kind, listKind: `${rt.kind}List`, plural: rt.plural, singular: rt.kind.toLowerCase() },
      versions: [
        {
          name: rt.version,
          served: true,
          storage: true,
          subresources: { status: {} },
          schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } },
        },
      ],
    },
  } as KubeObject;
}

/**
 * Stand-ins for KServe's InferenceService, LLMInferenceService and (Cluster)ServingRuntime CRDs (tests set their
 * status as KServe would).
 */
export async function installKserveCrds(client: KubeClient): Promise<void> {
  await installCrds(
    client,
    undefined,
    [INFERENCE_SERVICES, LLM_INFERENCE_SERVICES, SERVING_RUNTIMES, CLUSTER_SERVING_RUNTIMES].map(looseCrd),
  );
}
