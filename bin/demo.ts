#!/usr/bin/env node
// npm run demo [-- --keep] [--dir DIR] [--size-mib N]: a local control plane with a real scheduler, the
// controller (with its admission webhooks), two daemons as two simulated nodes, and a local origin; two
// caches until copies.available is 2; then a pod that opts in to a cache is mounted, and the scheduler puts
// it on a node that holds the bytes (never on the third node, which has room but no copy).
import { parseArgs } from 'node:util';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { installCrds } from '../api/install.ts';
import { formatBytes } from '../api/quantity.ts';
import {
  LOCAL_MODEL_CACHES,
  LOCAL_MODEL_NODE_GROUPS,
  LOCAL_MODEL_NODES,
  type LocalModelCache,
  type LocalModelNode,
} from '../api/types.ts';
import { KubeClient } from '../kube/client.ts';
import { MUTATING_WEBHOOK_CONFIGURATIONS, NAMESPACES, PODS, SERVICE_ACCOUNTS, type Pod } from '../kube/resources.ts';
import { requestToken } from '../kube/token-review.ts';
import { PEER_AUDIENCE } from '../daemon/peers/protocol.ts';
import type { KubeObject } from '../kube/types.ts';
import { fromYamlAll } from '../kube/yaml.ts';
import { ControlPlane } from '../localcluster/control-plane.ts';
import { ensureBinaries } from '../localcluster/binaries.ts';
import { createNode } from '../localcluster/nodes.ts';
import { Origin, generated, toBuffer } from '../localcluster/origin.ts';
import { makeTar } from '../localcluster/archives.ts';
import { Reaper, freePort } from '../localcluster/processes.ts';
import { startModelcache, type ModelcacheProcess } from '../localcluster/modelcache-process.ts';

const { values } = parseArgs({
  options: {
    keep: { type: 'boolean', default: false },
    dir: { type: 'string' },
    'size-mib': { type: 'string', default: '300' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  console.log(
    'usage: npm run demo [-- --keep] [--dir DIR] [--size-mib N]\n  --keep      leave the control plane, controller and daemons running (stop with npm run cluster -- stop --dir DIR)',
  );
  process.exit(0);
}
const sizeMiB = Number(values['size-mib']);
if (!Number.isFinite(sizeMiB) || sizeMiB <= 0)
  throw new Error(`--size-mib must be a positive number (got '${values['size-mib']}')`);
const dir = values.dir ? resolve(values.dir) : await mkdtemp(join(tmpdir(), 'modelcache-demo-'));
await mkdir(dir, { recursive: true });
const say = (l: string): void => console.log(l);
const NODES = ['demo-node-1', 'demo-node-2'];
const cleanups: Array<() => Promise<unknown>> = [];

try {
  say(`modelcache demo in ${dir}`);
  const binaries = await ensureBinaries({ log: (l) => say(`  ${l}`) });
  const t0 = Date.now();
  const cp = await ControlPlane.start({
    dir: join(dir, 'control-plane'),
    binaries,
    detached: values.keep,
    scheduler: true,
  });
  if (!values.keep) cleanups.push(() => cp.stop());
  say(`control plane ready at ${cp.server} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  const client = KubeClient.fromKubeconfig({ kubeconfig: cp.kubeconfig });
  cleanups.push(() => client.close());
  await installCrds(client);

  const origin = await Origin.start();
  cleanups.push(() => origin.close());
  const bytes = Math.round(sizeMiB * 2 ** 20);
  origin.set('/models/llama-demo/model.safetensors', generated(bytes, 42));
  const tarball = await makeTar(
    [
      { name: 'tokenizer.json', content: JSON.stringify({ vocab: Array.from({ length: 2000 }, (_, i) => `tok${i}`) }) },
      { name: 'config.json', content: '{"architectures":["DemoForCausalLM"],"hidden_size":1024}' },
      { name: 'weights/shard-0.bin', content: toBuffer(generated(8 * 2 ** 20, 7)) },
    ],
    true,
  );
  origin.set('/models/bert-demo/bundle.tar.gz', tarball);
  say(
    `origin serving a ${formatBytes(bytes)} file and a ${formatBytes(tarball.length)} tar.gz at ${origin.url('/models/')}`,
  );

  const reaper = values.keep ? undefined : new Reaper();
  if (reaper) cleanups.push(async () => reaper.close());
  const procs: ModelcacheProcess[] = [];
  const start = async (name: string, args: string[]): Promise<ModelcacheProcess> => {
    const p = await startModelcache(name, args, dir, reaper ?? new Reaper());
    procs.push(p);
    if (!values.keep) cleanups.unshift(() => p.stop());
    return p;
  };
  // The controller serves its admission webhooks on loopback; the shipped configuration points there.
  const webhookPort = await freePort();
  await client.create(NAMESPACES, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'modelcache-system' } });
  await client.create(MUTATING_WEBHOOK_CONFIGURATIONS, await webhookConfiguration(webhookPort));
  await start('controller', [
    'controller',
    ...['--kubeconfig', cp.kubeconfig, '--metrics-addr', '127.0.0.1:0'],
    ...['--webhook-listen', `127.0.0.1:${webhookPort}`],
  ]);
  // Peer-to-peer: the daemons show each other a token of the modelcache-daemon service account (what the
  // DaemonSet's projected volume holds); one node per model fetches it from the origin, the other copies it.
  await client.create(SERVICE_ACCOUNTS, {
    apiVersion: 'v1',
    kind: 'ServiceAccount',
    metadata: { name: 'modelcache-daemon', namespace: 'modelcache-system' },
  });
  const tokenFile = join(dir, 'peer-token');
  await writeFile(
    tokenFile,
    await requestToken(client, 'modelcache-system', 'modelcache-daemon', [PEER_AUDIENCE], 3600),
    {
      mode: 0o600,
    },
  );
  for (const n of NODES) {
    await createNode(client, n, { 'modelcache.io/demo': 'true' });
    await start(`daemon-${n}`, [
      'daemon',
      '--kubeconfig',
      cp.kubeconfig,
      '--node-name',
      n,
      '--root',
      join(dir, 'nodes', n),
      '--listen',
      '127.0.0.1:0',
      '--safety-margin',
      '0',
      '--progress-interval-ms',
      '500',
      ...['--peer-listen', '127.0.0.1:0', '--peer-token-file', tokenFile],
    ]);
  }
  await client.create(LOCAL_MODEL_NODE_GROUPS, {
    apiVersion: 'serving.kserve.io/v1alpha1',
    kind: 'LocalModelNodeGroup',
    metadata: { name: 'demo-gpus' },
    spec: { nodeSelector: { matchLabels: { 'modelcache.io/demo': 'true' } }, storageLimit: '50Gi' },
  });
  const caches = [
    {
      name: 'llama-demo',
      uri: origin.url('/models/llama-demo/model.safetensors'),
      size: `${Math.ceil(sizeMiB * 1.02)}Mi`,
    },
    { name: 'bert-demo', uri: origin.url('/models/bert-demo/bundle.tar.gz'), size: '64Mi' },
  ];
  for (const c of caches) {
    await client.create(LOCAL_MODEL_CACHES, {
      apiVersion: 'serving.kserve.io/v1alpha1',
      kind: 'LocalModelCache',
      metadata: { name: c.name },
      spec: { sourceModelUri: c.uri, modelSize: c.size, nodeGroups: ['demo-gpus'] },
    });
  }
  say('created LocalModelNodeGroup demo-gpus and LocalModelCaches llama-demo, bert-demo\n');

  const deadline = Date.now() + 10 * 60_000;
  let lastTable = '';
  for (;;) {
    const list = await client.list<LocalModelCache>(LOCAL_MODEL_CACHES);
    const lmns = new Map(
      (await client.list<LocalModelNode>(LOCAL_MODEL_NODES)).items.map((n) => [n.metadata.name ?? '', n]),
    );
    const rows = [['CACHE', 'NODE', 'STATE', 'PROGRESS']];
    for (const c of list.items) {
      for (const [node, state] of Object.entries(c.status?.nodeStatus ?? {})) {
        const d = lmns.get(node)?.status?.models?.[c.metadata.name ?? ''];
        const progress =
          d?.bytesDone !== undefined ? `${formatBytes(d.bytesDone)}/${formatBytes(d.bytesTotal ?? 0)}` : '';
        rows.push([c.metadata.name ?? '', node, state, progress]);
      }
    }
    const table = rows.map((r) => r.map((x, i) => x.padEnd([14, 13, 21, 0][i] ?? 0)).join(' ')).join('\n');
    if (table !== lastTable) {
      say(`${table}\n`);
      lastTable = table;
    }
    if (list.items.length === caches.length && list.items.every((c) => c.status?.copies?.available === NODES.length))
      break;
    if (Date.now() > deadline) throw new Error('the demo did not converge in 10 minutes; logs are in ' + dir);
    await new Promise((r) => setTimeout(r, 500));
  }
  say(
    `every cache has copies.available = ${NODES.length}: all bytes on disk, verified, marker written (${((Date.now() - t0) / 1000).toFixed(1)} s in all)\n`,
  );
  await showPeerCopies(client, origin, caches);
  await servePod(client);
  const kc = `kubectl --kubeconfig ${cp.kubeconfig}`;
  say(
    `try:\n  ${kc} get localmodelcaches\n  ${kc} get localmodelnodegroups\n  ${kc} get localmodelnodes\n  ${kc} describe localmodelcache llama-demo\n  ${kc} -n demo get pod chat -o wide\n  ls ${join(dir, 'nodes', NODES[0] as string)}`,
  );
  if (values.keep) {
    const state = {
      ...cp.state(),
      pids: { ...cp.state().pids, ...Object.fromEntries(procs.map((p) => [p.managed.name, p.managed.child.pid ?? 0])) },
    };
    await writeFile(join(dir, 'control-plane', 'state.json'), JSON.stringify(state, null, 2));
    say(`\nleft running (--keep). Stop everything with: npm run cluster -- stop --dir ${join(dir, 'control-plane')}`);
  }
} finally {
  for (const c of cleanups) await c().catch(() => undefined);
  if (!values.keep && !values.dir) await rm(dir, { recursive: true, force: true });
}
process.exit(0);

/** Per cache: what the origin sent against the model's size, and which node copied it from its peer. */
async function showPeerCopies(
  client: KubeClient,
  origin: Origin,
  caches: ReadonlyArray<{ name: string; uri: string }>,
): Promise<void> {
  const lmns = (await client.list<LocalModelNode>(LOCAL_MODEL_NODES)).items;
  for (const c of caches) {
    const sent = origin.bytesSent.get(new URL(c.uri).pathname) ?? 0;
    const copies = lmns.map((n) => ({ node: n.metadata.name ?? '', d: n.status?.models?.[c.name] }));
    const fromPeers = copies.filter((x) => (x.d?.bytesFromPeers ?? 0) > 0).map((x) => x.node);
    const seeds = copies.filter((x) => x.d && !x.d.bytesFromPeers).map((x) => x.node);
    say(
      `${c.name}: the origin sent ${formatBytes(sent)} for ${copies.length} copies; ` +
        `${seeds.join(', ') || 'no node'} fetched it from the origin, ${fromPeers.join(', ') || 'no node'} ` +
        'copied it from a peer (every piece checked against the SHA-256 manifest the seed published)',
    );
  }
  say('');
}

/** The shipped MutatingWebhookConfiguration with each webhook pointed at the controller on loopback. */
async function webhookConfiguration(port: number): Promise<KubeObject> {
  const text = await readFile(new URL('../manifests/controller/webhooks.yaml', import.meta.url), 'utf8');
  type Hook = { clientConfig: { service?: { path?: string }; url?: string } };
  const config = (fromYamlAll(text) as Array<KubeObject & { webhooks?: Hook[] }>).find(
    (d) => d.kind === 'MutatingWebhookConfiguration',
  );
  if (!config?.webhooks) throw new Error('manifests/controller/webhooks.yaml has no MutatingWebhookConfiguration');
  for (const w of config.webhooks)
    w.clientConfig = { url: `https://127.0.0.1:${port}${w.clientConfig.service?.path ?? '/'}` };
  return config;
}

/**
 * A third node with room and no copy, then a pod that opts in to llama-demo: the webhook mounts the cache
 * and requires a node with a complete copy; the controller makes the namespace's PV and PVC; the scheduler
 * binds the pod. Prints where it went and what it got.
 */
async function servePod(client: KubeClient): Promise<void> {
  await createNode(client, 'demo-node-3', { 'modelcache.io/demo': 'no-cache' });
  await client.create(NAMESPACES, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'demo' } });
  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'chat', labels: { 'modelcache.io/cache': 'llama-demo' } },
    spec: { containers: [{ name: 'vllm', image: 'vllm/vllm-openai:latest', args: ['--model', '/mnt/models'] }] },
  };
  // The namespace's default ServiceAccount comes from the controller-manager a moment after the namespace.
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      await client.create(PODS, pod, { namespace: 'demo' });
      break;
    } catch (err) {
      if (Date.now() > deadline || !/serviceaccount/i.test(String(err))) throw err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  say('created pod demo/chat with label modelcache.io/cache=llama-demo (nothing else about the cache)');
  let bound: Pod | undefined;
  while (!bound) {
    const p = await client.get<Pod>(PODS, 'chat', { namespace: 'demo' });
    if (p?.spec?.nodeName) bound = p;
    else if (Date.now() > deadline) throw new Error('pod demo/chat was not scheduled in 2 minutes; logs are in ' + dir);
    else await new Promise((r) => setTimeout(r, 250));
  }
  const spec = bound.spec as {
    nodeName?: string;
    containers: Array<{
      volumeMounts?: Array<{ name: string; mountPath: string; subPath?: string; readOnly?: boolean }>;
    }>;
    volumes?: Array<{ name: string; persistentVolumeClaim?: { claimName: string } }>;
    affinity?: unknown;
  };
  const volume = spec.volumes?.find((v) => v.persistentVolumeClaim);
  const claim = volume?.persistentVolumeClaim?.claimName;
  const mount = spec.containers[0]?.volumeMounts?.find((m) => m.name === volume?.name);
  const term = JSON.stringify(
    (spec.affinity as { nodeAffinity?: { requiredDuringSchedulingIgnoredDuringExecution?: unknown } })?.nodeAffinity
      ?.requiredDuringSchedulingIgnoredDuringExecution,
  );
  say(`the scheduler bound demo/chat to ${spec.nodeName} (demo-node-3 has room but no copy)`);
  say(
    `  mount:    ${mount?.mountPath} ← PVC ${claim}, subPath ${mount?.subPath ?? '-'}, read-only ${String(mount?.readOnly === true)}`,
  );
  say(`  affinity: ${term}\n`);
}
