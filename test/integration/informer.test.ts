import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeClient } from '../../kube/client.ts';
import { Informer } from '../../kube/informer.ts';
import { CONFIGMAPS, NAMESPACES } from '../../kube/resources.ts';
import type { ConfigMap } from '../../kube/types.ts';
import { eventually } from '../../localcluster/eventually.ts';
import { useControlPlane, uniqueName } from '../helpers/cluster.ts';

const cluster = useControlPlane({ controllerManager: false });

async function createNamespace(): Promise<string> {
  const ns = uniqueName('inf');
  await cluster.client.create(NAMESPACES, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  return ns;
}

async function createConfigMap(
  ns: string,
  name: string,
  labels: Record<string, string> = {},
  data: Record<string, string> = {},
): Promise<void> {
  await cluster.client.create<ConfigMap>(CONFIGMAPS, {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name, namespace: ns, labels },
    data,
  });
}

function names(inf: Informer<ConfigMap>): string[] {
  return inf
    .list()
    .map((c) => c.metadata.name ?? '')
    .sort();
}

test('informer sees every object after the apiserver is restarted mid-watch', async (t) => {
  const ns = await createNamespace();
  for (const i of [1, 2, 3]) await createConfigMap(ns, `cm-${i}`);
  const ac = new AbortController();
  t.after(() => ac.abort());
  const inf = new Informer<ConfigMap>(cluster.client, CONFIGMAPS, {
    namespace: ns,
    backoff: { baseMs: 100, maxMs: 1000 },
  });
  const deleted: string[] = [];
  inf.on({ delete: (o) => deleted.push(o.metadata.name ?? '') });
  void inf.start(ac.signal);
  await inf.waitForSync(ac.signal);
  assert.deepEqual(names(inf), ['cm-1', 'cm-2', 'cm-3']);

  await cluster.cp.stopApiserver();
  await cluster.cp.startApiserver();
  for (const i of [4, 5]) await createConfigMap(ns, `cm-${i}`);
  await cluster.client.mergePatch(CONFIGMAPS, 'cm-2', { data: { changed: 'yes' } }, { namespace: ns });
  await cluster.client.delete(CONFIGMAPS, 'cm-1', { namespace: ns });

  await eventually(() => {
    assert.deepEqual(names(inf), ['cm-2', 'cm-3', 'cm-4', 'cm-5']);
    assert.equal(inf.get(`${ns}/cm-2`)?.data?.changed, 'yes');
    assert.deepEqual(deleted, ['cm-1']);
  });
});

test('informer relists after its resourceVersion is compacted away (410 Gone) and delivers what it missed', async (t) => {
  const ns = await createNamespace();
  await createConfigMap(ns, 'watched-1', { watched: 'yes' });
  await createConfigMap(ns, 'watched-2', { watched: 'yes' });
  const ac = new AbortController();
  t.after(() => ac.abort());
  const inf = new Informer<ConfigMap>(cluster.client, CONFIGMAPS, {
    namespace: ns,
    labelSelector: 'watched=yes',
    backoff: { baseMs: 100, maxMs: 500 },
  });
  const added: string[] = [];
  const deleted: string[] = [];
  inf.on({ add: (o) => added.push(o.metadata.name ?? ''), delete: (o) => deleted.push(o.metadata.name ?? '') });
  void inf.start(ac.signal);
  await inf.waitForSync(ac.signal);
  assert.equal(inf.relists, 1);

  // Writes the informer does not watch move etcd's revision past the informer's resourceVersion.
  for (let i = 0; i < 5; i++) await createConfigMap(ns, `unwatched-${i}`);
  await cluster.cp.stopApiserver();
  await cluster.cp.compactEtcd();
  await cluster.cp.startApiserver();

  await eventually(() => assert.ok(inf.relists >= 2, `relists=${inf.relists}`));
  await createConfigMap(ns, 'watched-3', { watched: 'yes' });
  await cluster.client.delete(CONFIGMAPS, 'watched-1', { namespace: ns });
  await eventually(() => {
    assert.deepEqual(names(inf), ['watched-2', 'watched-3']);
    assert.deepEqual(deleted, ['watched-1']);
    assert.deepEqual(
      added,
      ['watched-1', 'watched-2', 'watched-3'],
      'a relist does not re-announce objects it already had',
    );
  });
});

test('an informer started while the apiserver is down is not synced until a list succeeds', async (t) => {
  const ns = await createNamespace();
  await createConfigMap(ns, 'early');
  const ac = new AbortController();
  t.after(() => ac.abort());
  await cluster.cp.stopApiserver();
  const inf = new Informer<ConfigMap>(cluster.client, CONFIGMAPS, {
    namespace: ns,
    backoff: { baseMs: 100, maxMs: 500 },
  });
  void inf.start(ac.signal);
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(inf.hasSynced, false);
  await cluster.cp.startApiserver();
  await inf.waitForSync(AbortSignal.any([ac.signal, AbortSignal.timeout(30_000)]));
  assert.deepEqual(names(inf), ['early']);
});

test('an exec credential plugin in the kubeconfig is run (through client-node) and its token used', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'modelcache-exec-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const plain = JSON.parse(await readFile(await cluster.cp.kubeconfigFor('admin'), 'utf8')) as {
    clusters: unknown[];
    users: Array<{ user: { token: string } }>;
  };
  const plugin = join(dir, 'plugin.mjs');
  const ran = join(dir, 'ran');
  await writeFile(
    plugin,
    `import { appendFileSync } from 'node:fs';\nappendFileSync(${JSON.stringify(ran)}, 'x');\nconsole.log(JSON.stringify({ apiVersion: 'client.authentication.k8s.io/v1', kind: 'ExecCredential', status: { token: ${JSON.stringify(plain.users[0]!.user.token)} } }));\n`,
  );
  const kubeconfig = join(dir, 'kubeconfig');
  await writeFile(
    kubeconfig,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      'current-context': 'exec',
      clusters: plain.clusters,
      users: [
        {
          name: 'exec',
          user: {
            exec: {
              apiVersion: 'client.authentication.k8s.io/v1',
              command: process.execPath,
              args: [plugin],
              interactiveMode: 'Never',
            },
          },
        },
      ],
      contexts: [{ name: 'exec', context: { cluster: (plain.clusters[0] as { name: string }).name, user: 'exec' } }],
    }),
  );
  const client = KubeClient.fromKubeconfig({ kubeconfig });
  t.after(() => client.close());
  const list = await client.list(NAMESPACES);
  assert.ok(list.items.some((n) => n.metadata.name === 'default'));
  assert.ok((await readFile(ran, 'utf8')).length >= 1, 'the plugin ran');
});
