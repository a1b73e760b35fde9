import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { installCrds } from '../../api/install.ts';
import {
  LOCAL_MODEL_CACHES,
  LOCAL_MODEL_NODE_GROUPS,
  LOCAL_MODEL_NODES,
  type LocalModelNode,
} from '../../api/types.ts';
import { LEASES } from '../../kube/resources.ts';
import type { Lease } from '../../kube/types.ts';
import { useControlPlane, uniqueName } from '../helpers/cluster.ts';
import { eventually } from '../../localcluster/eventually.ts';
import { cache as cacheObj, group as groupObj } from '../helpers/fixtures.ts';
import { createNode, grantControllerRbac } from '../helpers/kube-fixtures.ts';
import { ControlPlane } from '../../localcluster/control-plane.ts';
import { Reaper } from '../../localcluster/processes.ts';
import { startModelcache, type ModelcacheProcess } from '../../localcluster/modelcache-process.ts';

const cluster = useControlPlane({
  controllerManager: false,
  setup: async (c) => {
    await installCrds(c.client);
    await grantControllerRbac(c.client, ControlPlane.username('tester-1'));
  },
});

async function isLeader(p: ModelcacheProcess): Promise<boolean> {
  const text = await (await fetch(`${p.opsUrl}/metrics`)).text();
  return /^modelcache_controller_leader 1$/m.test(text);
}

test('two controller processes with --leader-elect: one acts; on SIGTERM the other takes over at once', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'modelcache-ctl-'));
  const reaper = new Reaper();
  t.after(async () => {
    reaper.close();
    await rm(dir, { recursive: true, force: true });
  });
  const kubeconfig = await cluster.cp.kubeconfigFor('tester-1');
  const args = [
    'controller',
    '--kubeconfig',
    kubeconfig,
    '--leader-elect',
    '--leader-election-namespace',
    'modelcache-system',
    '--metrics-addr',
    '127.0.0.1:0',
  ];
  const a = await startModelcache('controller-a', args, dir, reaper);
  const b = await startModelcache('controller-b', args, dir, reaper);
  t.after(() => Promise.all([a.stop('SIGKILL'), b.stop('SIGKILL')]));

  for (const p of [a, b]) {
    await eventually(async () => assert.equal((await fetch(`${p.opsUrl}/readyz`)).status, 200));
    assert.equal(await (await fetch(`${p.opsUrl}/healthz`)).text(), 'ok');
  }
  await eventually(async () => assert.equal(Number(await isLeader(a)) + Number(await isLeader(b)), 1));
  const [leader, standby] = (await isLeader(a)) ? [a, b] : [b, a];
  const lease = await cluster.client.get<Lease>(LEASES, 'modelcache-controller', { namespace: 'modelcache-system' });
  assert.ok(lease?.spec.holderIdentity);

  const s = uniqueName('le');
  await cluster.client.create(LOCAL_MODEL_NODE_GROUPS, {
    ...groupObj(`${s}-g`, { [`${s}/pool`]: 'yes' }, '10Gi'),
    metadata: { name: `${s}-g` },
  });
  await createNode(cluster.client, `${s}-n`, { [`${s}/pool`]: 'yes' });
  await cluster.client.create(LOCAL_MODEL_CACHES, {
    ...cacheObj(`${s}-one`, `s3://m/${s}/1`, '1Gi', [`${s}-g`]),
    metadata: { name: `${s}-one` },
  });
  const models = async () =>
    (await cluster.client.get<LocalModelNode>(LOCAL_MODEL_NODES, `${s}-n`))?.spec.localModels.map((m) => m.modelName);
  await eventually(async () => assert.deepEqual(await models(), [`${s}-one`]));
  const metrics = await eventually(async () => {
    const text = await (await fetch(`${leader.opsUrl}/metrics`)).text();
    assert.match(text, /modelcache_controller_reconciles_total\{kind="cache",outcome="success"\} [1-9]/);
    return text;
  });
  assert.match(metrics, /modelcache_controller_workqueue_depth \d/);
  assert.match(metrics, /modelcache_controller_reconcile_duration_seconds_bucket/);
  const standbyMetrics = await (await fetch(`${standby.opsUrl}/metrics`)).text();
  assert.doesNotMatch(
    standbyMetrics,
    /modelcache_controller_reconciles_total\{[^}]*\} [1-9]/,
    'the standby reconciles nothing',
  );
  assert.match(standbyMetrics, /^modelcache_controller_leader 0$/m);

  await leader.stop('SIGTERM');
  await eventually(async () => assert.equal(await isLeader(standby), true), { timeoutMs: 10_000 });
  await cluster.client.create(LOCAL_MODEL_CACHES, {
    ...cacheObj(`${s}-two`, `s3://m/${s}/2`, '1Gi', [`${s}-g`]),
    metadata: { name: `${s}-two` },
  });
  await eventually(async () => assert.deepEqual(await models(), [`${s}-one`, `${s}-two`]));
  await eventually(async () => {
    const logs = await standby.logs();
    assert.ok(logs.some((l) => l.msg === 'became leader'));
    assert.ok(
      logs.some((l) => l.msg === 'LocalModelNode spec written' && l.node === `${s}-n`),
      'logs name the object',
    );
  });
});
