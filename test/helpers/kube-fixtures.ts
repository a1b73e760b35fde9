import { readFile, readdir } from 'node:fs/promises';
import { installCrds } from '../../api/install.ts';
import type { KubeClient } from '../../kube/client.ts';
import { CLUSTER_ROLES, CLUSTER_ROLE_BINDINGS, NAMESPACES, ROLES, ROLE_BINDINGS } from '../../kube/resources.ts';
import type { KubeObject, ResourceType } from '../../kube/types.ts';
import { fromYamlAll } from '../../kube/yaml.ts';
import { LOCAL_MODEL_NODES, type LocalModelDetail, type ModelState } from '../../api/types.ts';

// Tests get every cluster fixture from here; the Node ones are the local cluster's.
export { createNode, setNodeReady } from '../../localcluster/nodes.ts';

/** Writes a LocalModelNode's status for one model as the node daemon would (null removes the entry: files gone). */
export async function reportModel(
  client: KubeClient,
  node: string,
  model: string,
  state: ModelState | null,
  detail?: LocalModelDetail,
): Promise<void> {
  await client.patchStatus(LOCAL_MODEL_NODES, node, {
    modelStatus: { [model]: state },
    models: { [model]: state ? (detail ?? {}) : null },
  });
}

/**
 * Installs the controller's shipped RBAC (manifests/controller/rbac.yaml) bound to a static-token
 * user instead of the ServiceAccount, so tests run the controller with exactly those rights.
 */
export async function grantControllerRbac(client: KubeClient, username: string): Promise<void> {
  await grantShippedRbac(client, 'controller', username);
}

/** The same for any component's shipped rbac.yaml (controller, daemon). */
export async function grantShippedRbac(
  client: KubeClient,
  component: 'controller' | 'daemon',
  username: string,
): Promise<void> {
  const docs = fromYamlAll(
    await readFile(new URL(`../../manifests/${component}/rbac.yaml`, import.meta.url), 'utf8'),
  ) as Array<KubeObject & { subjects?: unknown[] }>;
  await client.apply(NAMESPACES, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'modelcache-system' } });
  const types = {
    ClusterRole: CLUSTER_ROLES,
    ClusterRoleBinding: CLUSTER_ROLE_BINDINGS,
    Role: ROLES,
    RoleBinding: ROLE_BINDINGS,
  } as const;
  for (const doc of docs) {
    const rt = types[doc.kind as keyof typeof types];
    if (!rt) continue;
    if (doc.subjects) doc.subjects = [{ kind: 'User', name: username, apiGroup: 'rbac.authorization.k8s.io' }];
    await client.apply(rt, doc);
  }
}

/** Installs the CRDs from the shipped manifests/crds/*.yaml (what users apply), not from api/schema.ts. */
export async function installShippedCrds(client: KubeClient): Promise<void> {
  const dir = new URL('../../manifests/crds/', import.meta.url);
  const docs: KubeObject[] = [];
  for (const f of (await readdir(dir)).filter((n) => n.endsWith('.yaml')).sort()) {
    docs.push(...(fromYamlAll(await readFile(new URL(f, dir), 'utf8')) as KubeObject[]));
  }
  await installCrds(client, undefined, docs);
}

/** One object as `kubectl get` prints it: the apiserver's Table (printer columns), column name → cell. */
export async function printedRow(client: KubeClient, rt: ResourceType, name: string): Promise<Record<string, unknown>> {
  const table = await client.request<{ columnDefinitions: Array<{ name: string }>; rows: Array<{ cells: unknown[] }> }>(
    'GET',
    client.path(rt, { name }),
    { accept: 'application/json;as=Table;v=v1;g=meta.k8s.io' },
  );
  const cells = table.rows[0]?.cells ?? [];
  return Object.fromEntries(table.columnDefinitions.map((c, i) => [c.name, cells[i]]));
}
