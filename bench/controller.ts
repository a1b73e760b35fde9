// Controller at scale on the real apiserver: N nodes, G groups, C caches (defaults 1000/10/100;
// MODELCACHE_BENCH_SCALE=0.1 for a quick run). Figures: time and writes to converge, writes during a
// full resync (goal 0), writes after one node changes group (goal: O(caches on that node)).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { installCrds } from '../api/install.ts';
import {
  LOCAL_MODEL_CACHES,
  LOCAL_MODEL_NODE_GROUPS,
  LOCAL_MODEL_NODES,
  type LocalModelCache,
  type LocalModelNode,
} from '../api/types.ts';
import { KubeClient } from '../kube/client.ts';
import { NODES } from '../kube/resources.ts';
import { CacheController } from '../controller/controller.ts';
import { createLogger } from '../ops/logger.ts';
import { ControlPlane } from '../localcluster/control-plane.ts';
import { ensureBinaries } from '../localcluster/binaries.ts';
import { eventually } from '../localcluster/eventually.ts';
import { createNode } from '../localcluster/nodes.ts';
import type { BenchFigure } from './table.ts';

async function pool<T>(items: T[], n: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let i = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (i < items.length) await fn(items[i++] as T);
    }),
  );
}

export async function benchController(): Promise<BenchFigure[]> {
  const scale = Number(process.env.MODELCACHE_BENCH_SCALE ?? '1');
  const nodes = Math.max(10, Math.round(1000 * scale));
  const groups = 10;
  const caches = Math.max(10, Math.round(100 * scale));
  const dir = await mkdtemp(join(tmpdir(), 'modelcache-bench-'));
  const cp = await ControlPlane.start({ dir, binaries: await ensureBinaries(), controllerManager: false });
  const client = KubeClient.fromKubeconfig({ kubeconfig: cp.kubeconfig });
  const stop = new AbortController();
  try {
    await installCrds(client);
    process.stderr.write(`controller bench: creating ${nodes} nodes, ${groups} groups, ${caches} caches…\n`);
    await pool([...Array(nodes).keys()], 16, (i) =>
      createNode(client, `bench-node-${i}`, { 'bench/group': `g${i % groups}` }),
    );
    for (let g = 0; g < groups; g++) {
      await client.create(LOCAL_MODEL_NODE_GROUPS, {
        apiVersion: 'serving.kserve.io/v1alpha1',
        kind: 'LocalModelNodeGroup',
        metadata: { name: `g${g}` },
        spec: { nodeSelector: { matchLabels: { 'bench/group': `g${g}` } }, storageLimit: '10Ti' },
      });
    }
    const quiet = new Writable({ write: (_c, _e, cb) => cb() });
    const controller = new CacheController({ client, log: createLogger('controller', 'warn', quiet), workers: 8 });
    controller.start(stop.signal);
    const running = controller.run(stop.signal);
    await controller.cluster.waitForSync(stop.signal);
    const t0 = performance.now();
    await pool([...Array(caches).keys()], 8, (c) =>
      client.create(LOCAL_MODEL_CACHES, {
        apiVersion: 'serving.kserve.io/v1alpha1',
        kind: 'LocalModelCache',
        metadata: { name: `cache-${c}` },
        spec: {
          sourceModelUri: `s3://bench/model-${c}`,
          modelSize: '1Gi',
          nodeGroups: [`g${c % groups}`, `g${(c + 1) % groups}`],
        },
      }),
    );
    const perCache = (2 * nodes) / groups;
    await eventually(
      async () => {
        const list = await client.list<LocalModelCache>(LOCAL_MODEL_CACHES);
        const done = list.items.filter((c) => c.status?.copies?.total === perCache).length;
        if (done !== caches || controller.pending > 0) throw new Error(`${done}/${caches} converged`);
      },
      { timeoutMs: 600_000, intervalMs: 250 },
    );
    const convergeS = (performance.now() - t0) / 1000;
    const convergeWrites = await controller.metrics.totalWrites();

    controller.resync();
    await eventually(
      () => {
        if (controller.pending > 0) throw new Error('busy');
      },
      { timeoutMs: 120_000 },
    );
    const resyncWrites = (await controller.metrics.totalWrites()) - convergeWrites;

    // One node moves from group g0 to g1: it drops g0's caches and takes g1's.
    const before = await controller.metrics.totalWrites();
    await client.mergePatch(NODES, 'bench-node-0', { metadata: { labels: { 'bench/group': 'g1' } } });
    const onNode = async () =>
      (await client.get<LocalModelNode>(LOCAL_MODEL_NODES, 'bench-node-0'))?.spec.localModels.length ?? 0;
    const expected = (caches / groups) * 2;
    await eventually(
      async () => {
        const lmn = await client.get<LocalModelNode>(LOCAL_MODEL_NODES, 'bench-node-0');
        const ok = lmn?.spec.localModels.every((m) => m.nodeGroup === 'g1') && (await onNode()) === expected;
        if (!ok || controller.pending > 0) throw new Error('not yet');
      },
      { timeoutMs: 120_000 },
    );
    await eventually(() => {
      if (controller.pending > 0) throw new Error('busy');
    });
    const oneNodeWrites = (await controller.metrics.totalWrites()) - before;
    stop.abort();
    await running.catch(() => undefined);
    const cachesTouched = (caches / groups) * 4; // caches of g0 (leaving) and g1 (joining), each in two groups
    return [
      {
        name: `controller: converge ${nodes} nodes × ${caches} caches`,
        value: convergeS,
        unit: 's',
        goal: '< 60 s',
        ok: convergeS < 60,
      },
      {
        name: 'controller: API writes to converge',
        value: convergeWrites,
        unit: 'writes',
        goal: `≈ caches×2 + nodes (${caches * 2 + nodes})`,
        ok: convergeWrites <= (caches * 3 + nodes + groups) * 1.5,
      },
      {
        name: 'controller: writes during a full resync',
        value: resyncWrites,
        unit: 'writes',
        goal: '0',
        ok: resyncWrites === 0,
      },
      {
        name: 'controller: writes after one node changes group',
        value: oneNodeWrites,
        unit: 'writes',
        goal: `O(caches on that node) ≤ ${cachesTouched + 3}`,
        ok: oneNodeWrites <= cachesTouched + 3,
      },
    ];
  } finally {
    stop.abort();
    await client.close();
    await cp.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
