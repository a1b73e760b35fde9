import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LEASES } from '../../kube/resources.ts';
import type { Lease } from '../../kube/types.ts';
import { useControlPlane } from '../helpers/cluster.ts';
import { ControlPlane } from '../../localcluster/control-plane.ts';
import { eventually } from '../../localcluster/eventually.ts';
import { grantControllerRbac, installShippedCrds } from '../helpers/kube-fixtures.ts';
import { installKserveCrds } from '../helpers/kserve-crds.ts';
import { startModelcache } from '../../localcluster/modelcache-process.ts';
import { Reaper } from '../../localcluster/processes.ts';

/** The Lease's namespace: the one where the shipped RBAC lets the controller read and take it. */
const SYSTEM = 'modelcache-system';

const cluster = useControlPlane({
  controllerManager: false,
  setup: async (c) => {
    await installShippedCrds(c.client);
    await installKserveCrds(c.client);
    await grantControllerRbac(c.client, ControlPlane.username('tester-1'));
  },
});

/** The apiserver's own /metrics text, read with the admin kubeconfig. */
async function apiserverMetrics(): Promise<string> {
  const kc = JSON.parse(await readFile(cluster.cp.kubeconfig, 'utf8')) as {
    clusters: Array<{ cluster: { server: string; 'certificate-authority-data': string } }>;
    users: Array<{ user: { token: string } }>;
  };
  const { server, 'certificate-authority-data': ca } = kc.clusters[0]!.cluster;
  return new Promise((resolve, reject) => {
    const req = request(
      `${server}/metrics`,
      { ca: Buffer.from(ca, 'base64'), headers: { authorization: `Bearer ${kc.users[0]!.user.token}` } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => resolve(text));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** Open cluster-wide watches of one resource, as the apiserver counts them (its own watches are narrower). */
async function watches(resource: string): Promise<number> {
  const text = await apiserverMetrics();
  let n = 0;
  for (const line of text.split('\n'))
    if (
      line.startsWith('apiserver_longrunning_requests{') &&
      line.includes(`resource="${resource}"`) &&
      line.includes('scope="cluster"') &&
      line.includes('verb="WATCH"')
    )
      n += Number(line.slice(line.lastIndexOf(' ') + 1));
  return n;
}

test('one informer per kind in a controller process; a standby replica keeps every informer warm', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'modelcache-informers-'));
  const reaper = new Reaper();
  t.after(async () => {
    reaper.close();
    await rm(dir, { recursive: true, force: true });
  });
  const kubeconfig = await cluster.cp.kubeconfigFor('tester-1');
  const metrics = ['--metrics-addr', '127.0.0.1:0'];
  const leader = await startModelcache(
    'controller-leader',
    ['controller', '--kubeconfig', kubeconfig, ...metrics],
    dir,
    reaper,
  );
  t.after(() => leader.stop('SIGKILL'));
  await eventually(async () => assert.equal((await fetch(`${leader.opsUrl}/readyz`)).status, 200));
  // The caches' controllers and TrainedModel registration both read InferenceServices and TrainedModels.
  await eventually(async () => {
    assert.equal(await watches('localmodelcaches'), 1);
    assert.equal(await watches('configmaps'), 1);
    assert.equal(await watches('inferenceservices'), 1);
    assert.equal(await watches('trainedmodels'), 1);
  });

  // Someone else holds the Lease: this replica never leads, yet answers from warm informers of every kind.
  const now = new Date().toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
  await cluster.client.create<Lease>(LEASES, {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: { name: 'modelcache-controller', namespace: SYSTEM },
    spec: { holderIdentity: 'someone-else', leaseDurationSeconds: 3600, renewTime: now, acquireTime: now },
  } as Lease);
  const standby = await startModelcache(
    'controller-standby',
    ['controller', '--kubeconfig', kubeconfig, '--leader-elect', '--leader-election-namespace', SYSTEM, ...metrics],
    dir,
    reaper,
  );
  t.after(() => standby.stop('SIGKILL'));
  await eventually(async () => assert.equal((await fetch(`${standby.opsUrl}/readyz`)).status, 200));
  await eventually(async () => {
    assert.equal(await watches('localmodelcaches'), 2);
    assert.equal(await watches('configmaps'), 2);
    assert.equal(await watches('inferenceservices'), 2);
    assert.equal(await watches('trainedmodels'), 2);
  });
  const text = await (await fetch(`${standby.opsUrl}/metrics`)).text();
  assert.match(text, /^modelcache_controller_leader 0$/m);
});
