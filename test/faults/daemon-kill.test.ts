// Daemon killed with SIGKILL at random moments across many downloads: after restarts every model
// completes, every file is identical to the origin's, and no model is ever reported Downloaded
// with missing bytes. Small in `npm test`; MODELCACHE_FAULTS=full (npm run test:faults) runs 20.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { installCrds } from '../../api/install.ts';
import { storageKeyFor } from '../../api/storage-key.ts';
import {
  LOCAL_MODEL_CACHES,
  LOCAL_MODEL_NODE_GROUPS,
  LOCAL_MODEL_NODES,
  type LocalModelNode,
} from '../../api/types.ts';
import { CacheController } from '../../controller/controller.ts';
import { createLogger } from '../../ops/logger.ts';
import { useControlPlane, uniqueName } from '../helpers/cluster.ts';
import { eventually } from '../../localcluster/eventually.ts';
import { createNode } from '../helpers/kube-fixtures.ts';
import { Origin, generated, toBuffer } from '../../localcluster/origin.ts';
import { Reaper } from '../../localcluster/processes.ts';
import { startModelcache, type ModelcacheProcess } from '../../localcluster/modelcache-process.ts';

const FULL = process.env.MODELCACHE_FAULTS === 'full';
const MODELS = FULL ? 20 : 4;
const SIZE = 3_000_000;
const RATE = 1_000_000; // bytes/s per response: each download takes about 3 s, longer than a daemon lives
const stop = new AbortController();
let running: Promise<void> | undefined;
const group = uniqueName('kill');
const node = `${group}-node`;

const cluster = useControlPlane({
  controllerManager: false,
  setup: async (c) => {
    await installCrds(c.client);
    const quiet = new Writable({ write: (_c, _e, cb) => cb() });
    const controller = new CacheController({ client: c.client, log: createLogger('controller', 'warn', quiet) });
    controller.start(stop.signal);
    running = controller.run(stop.signal);
  },
  teardown: async () => {
    stop.abort();
    await running?.catch(() => undefined);
  },
});

test(`daemon SIGKILLed at random moments across ${MODELS} downloads: all complete, bytes identical, never Downloaded early`, async (t) => {
  const origin = await Origin.start();
  const work = await mkdtemp(join(tmpdir(), 'modelcache-kill-'));
  const reaper = new Reaper();
  let daemon: ModelcacheProcess | undefined;
  t.after(async () => {
    await daemon?.stop('SIGKILL');
    reaper.close();
    await origin.close();
    await rm(work, { recursive: true, force: true });
  });
  const root = join(work, 'root');
  await createNode(cluster.client, node, { [`${group}/cache`]: 'yes' });
  await cluster.client.create(LOCAL_MODEL_NODE_GROUPS, {
    apiVersion: 'serving.kserve.io/v1alpha1',
    kind: 'LocalModelNodeGroup',
    metadata: { name: group },
    spec: { nodeSelector: { matchLabels: { [`${group}/cache`]: 'yes' } }, storageLimit: '10Gi' },
  });
  const want = new Map<string, { key: string; sha: string }>();
  for (let i = 0; i < MODELS; i++) {
    const path = `/kill/m${i}/weights.bin`;
    const body = generated(SIZE, 100 + i);
    origin.set(path, body, { rate: RATE });
    want.set(`${group}-m${i}`, {
      key: storageKeyFor(origin.url(path)),
      sha: createHash('sha256').update(toBuffer(body)).digest('hex'),
    });
    await cluster.client.create(LOCAL_MODEL_CACHES, {
      apiVersion: 'serving.kserve.io/v1alpha1',
      kind: 'LocalModelCache',
      metadata: { name: `${group}-m${i}` },
      spec: { sourceModelUri: origin.url(path), modelSize: '4Mi', nodeGroups: [group] },
    });
  }
  const args = [
    'daemon',
    '--kubeconfig',
    cluster.cp.kubeconfig,
    '--node-name',
    node,
    '--root',
    root,
    '--listen',
    '127.0.0.1:0',
    '--safety-margin',
    '0',
    '--max-concurrent',
    '4',
    '--progress-interval-ms',
    '200',
  ];

  // Every time the apiserver says Downloaded, the bytes must already be complete on disk.
  const verified = new Set<string>();
  let earlyDownloaded = 0;
  const check = async (): Promise<void> => {
    const lmn = await cluster.client.get<LocalModelNode>(LOCAL_MODEL_NODES, node);
    for (const [name, state] of Object.entries(lmn?.status?.modelStatus ?? {})) {
      if (state !== 'ModelDownloaded' || verified.has(name)) continue;
      const w = want.get(name);
      const bytes = await readFile(join(root, 'models', w?.key ?? '', 'weights.bin')).catch(() => Buffer.alloc(0));
      if (createHash('sha256').update(bytes).digest('hex') !== w?.sha) earlyDownloaded++;
      else verified.add(name);
    }
  };

  let kills = 0;
  const deadline = Date.now() + (FULL ? 600_000 : 120_000);
  while (verified.size < MODELS && Date.now() < deadline) {
    daemon = await startModelcache('daemon', args, work, reaper);
    const lifetime = 300 + Math.floor(Math.random() * 1500);
    const until = Date.now() + lifetime;
    while (Date.now() < until && verified.size < MODELS) {
      await check();
      await new Promise((r) => setTimeout(r, 100));
    }
    if (verified.size < MODELS && kills < MODELS * 2) {
      await daemon.stop('SIGKILL');
      kills++;
    } else {
      await eventually(
        async () => {
          await check();
          assert.equal(verified.size, MODELS);
        },
        { timeoutMs: 120_000, intervalMs: 200 },
      );
    }
  }
  for (const [name, w] of want) {
    const bytes = await readFile(join(root, 'models', w.key, 'weights.bin'));
    assert.equal(createHash('sha256').update(bytes).digest('hex'), w.sha, `${name} bytes`);
  }
  const resumed = origin.requests.filter((r) => r.range && r.status === 206).length;
  console.log(
    `fault summary: ${kills} SIGKILLs injected and survived, ${resumed} resumed requests, ${MODELS} models × ${SIZE} bytes verified, ${earlyDownloaded} reported Downloaded with missing bytes, 0 lost`,
  );
  assert.equal(earlyDownloaded, 0);
  assert.ok(kills >= 1, 'at least one kill landed mid-download');
});
