// Peer-to-peer over shaped links: N daemon processes, each in its own network namespace (localcluster/netns.ts),
// one origin whose link is slower than every node's, one LocalModelCache on a group of all N created at once (a cold
// fan-out). Measured in the same run: one node alone and N nodes with peers off (references), then N with peers on,
// after which one more node joins the group and copies the model from the N complete peers (peer throughput).
// MODELCACHE_BENCH_P2P_NODES (8), MODELCACHE_BENCH_SIZE_MIB (256), MODELCACHE_BENCH_P2P_ORIGIN_MBIT (200),
// MODELCACHE_BENCH_P2P_NODE_MBIT (1000), MODELCACHE_BENCH_P2P_ZONES (1), MODELCACHE_BENCH_P2P_ZONE_MBIT (400),
// MODELCACHE_BENCH_P2P_ORIGIN_PATH (zone: each zone reaches the origin through its own egress at the origin rate;
// shared: all zones share the origin's one link), MODELCACHE_BENCH_P2P_SEEDS (the daemons' --peer-seeds: zone).
// MODELCACHE_BENCH_P2P_LOGS=DIR keeps each phase's daemon logs in DIR/<phase>/ (at MODELCACHE_BENCH_P2P_LOG_LEVEL).
import { cp, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import { installCrds } from '../api/install.ts';
import {
  LOCAL_MODEL_CACHES,
  LOCAL_MODEL_NODE_GROUPS,
  LOCAL_MODEL_NODES,
  type LocalModelDetail,
  type LocalModelNode,
} from '../api/types.ts';
import { CacheController } from '../controller/controller.ts';
import { PEER_AUDIENCE } from '../daemon/peers/protocol.ts';
import { KubeClient } from '../kube/client.ts';
import { NAMESPACES, SERVICE_ACCOUNTS } from '../kube/resources.ts';
import { ZONE_LABEL } from '../kube/node-facts.ts';
import { requestToken } from '../kube/token-review.ts';
import { ApiserverRelay } from '../localcluster/api-relay.ts';
import { ensureBinaries } from '../localcluster/binaries.ts';
import { ControlPlane } from '../localcluster/control-plane.ts';
import { startModelcache, type ModelcacheProcess } from '../localcluster/modelcache-process.ts';
import { netnsUnavailable, removeLeftoverNamespaces, SimulatedNetwork } from '../localcluster/netns.ts';
import { createNode } from '../localcluster/nodes.ts';
import { startOriginProcess, type OriginProcess } from '../localcluster/origin-process.ts';
import { ProcessCpu } from '../localcluster/process-cpu.ts';
import { isAlive, Reaper } from '../localcluster/processes.ts';
import { createLogger } from '../ops/logger.ts';
import type { BenchFigure } from './table.ts';

const MiB = 2 ** 20;
const GiB = 2 ** 30;
const PEER_PORT = 7070;
const ORIGIN_PORT = 8080;
const DAEMON_NS = 'modelcache-system';
const PHASE_LABEL = 'bench.modelcache.io/p2p-phase';

interface Phase {
  label: string;
  nodes: number;
  peers: boolean;
  /** Once all are done, one more node joins and copies the model from them. */
  join?: boolean;
}

interface PhaseResult {
  /** From creating the LocalModelCache until every LocalModelNode reports ModelDownloaded. */
  seconds: number;
  originBytes: number;
  bytesDone: number;
  bytesFromPeers: number;
  /** utime + stime of every daemon during the phase. */
  cpuSeconds: number;
  /** What all the daemons used per second while idle, just before the phase. */
  idleCpuPerSecond: number;
  /** From the first byte from peers seen on any node until the last node was done (0: none came from peers). */
  peerSeconds: number;
  /** Per node that copied from peers: bytes from peers / time from its first peer byte seen to done. */
  peerRates: number[];
  /** The node that joined afterwards (Phase.join): its bytes from peers per second of its copy. */
  joinRate?: number;
  /** Bytes the phase's nodes copied from peers in other zones (their daemons' logs), the joining node's not. */
  acrossZones: number;
  /** Copies from peers those logs tell of (0 with peers on: the log level hid them, and acrossZones is unknown). */
  copiesLogged: number;
}

interface Context {
  client: KubeClient;
  net: SimulatedNetwork;
  origin: OriginProcess;
  reaper: Reaper;
  base: string;
  kubeconfig: string;
  tokenFile: string;
  size: number;
  zones: number;
  /** Bytes per second of the origin's link, to bound how long a phase may take. */
  originRate: number;
  signal: AbortSignal;
}

/** Models, logs and sockets go to tmpfs, in a directory named after this process: leftovers of dead runs are found. */
const TMP = '/dev/shm';
const TMP_PREFIX = 'modelcache-p2p-';

async function removeLeftoverDirs(): Promise<string[]> {
  const left = (await readdir(TMP)).filter((d) => {
    const pid = Number(new RegExp(`^${TMP_PREFIX}(\\d+)-`).exec(d)?.[1] ?? 0);
    return pid > 0 && pid !== process.pid && !isAlive(pid);
  });
  for (const d of left) await rm(join(TMP, d), { recursive: true, force: true });
  return left.map((d) => join(TMP, d));
}

const log = (line: string): void => void process.stderr.write(`p2p bench: ${line}\n`);

function envNumber(name: string, dflt: number, min: number): number {
  const v = Number(process.env[name] ?? dflt);
  if (!Number.isFinite(v) || v < min) throw new Error(`${name}=${process.env[name]}: give a number ≥ ${min}`);
  return v;
}

/** The zone label of the node on simulated host `host` (none in a one-zone run). */
function zoneOf(ctx: Context, host: number): Record<string, string> {
  return ctx.zones > 1 ? { [ZONE_LABEL]: `zone-${ctx.net.nodes[host]!.zone}` } : {};
}

/** Starts a daemon for each of `names`, the first in simulated host `first` (the others in the hosts after it). */
async function startDaemons(ctx: Context, phase: Phase, names: string[], first = 0): Promise<ModelcacheProcess[]> {
  const dir = join(ctx.base, phase.label);
  await mkdir(join(dir, 'logs'), { recursive: true });
  const started = await Promise.allSettled(
    names.map((node, i) => {
      const h = ctx.net.nodes[first + i]!;
      const peer = `${h.ip}:${PEER_PORT}`;
      const args = [
        'daemon',
        ...['--kubeconfig', ctx.kubeconfig, '--node-name', node, '--root', join(dir, node)],
        ...['--namespace', DAEMON_NS, '--listen', '127.0.0.1:0', '--safety-margin', '0'],
        ...['--progress-interval-ms', '500'],
        ...(process.env.MODELCACHE_BENCH_P2P_LOG_LEVEL
          ? ['--log-level', process.env.MODELCACHE_BENCH_P2P_LOG_LEVEL]
          : []),
        ...(phase.peers ? ['--peer-listen', peer, '--peer-advertise', peer, '--peer-token-file', ctx.tokenFile] : []),
        ...(phase.peers && process.env.MODELCACHE_BENCH_P2P_SEEDS
          ? ['--peer-seeds', process.env.MODELCACHE_BENCH_P2P_SEEDS]
          : []),
      ];
      return startModelcache(node, args, join(dir, 'logs'), ctx.reaper, undefined, { prefix: h.exec });
    }),
  );
  const daemons = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = started.find((s) => s.status === 'rejected');
  if (failed) {
    await Promise.all(daemons.map((d) => d.stop('SIGKILL')));
    throw failed.reason;
  }
  return daemons;
}

/** One cold fan-out: fresh nodes, group and cache; daemons started first; waits until every node has the model. */
async function runPhase(ctx: Context, phase: Phase): Promise<PhaseResult> {
  const { client } = ctx;
  const group = `p2p-${phase.label}`;
  const names = Array.from({ length: phase.nodes }, (_, i) => `${group}-n${i}`);
  await client.create(LOCAL_MODEL_NODE_GROUPS, {
    apiVersion: 'serving.kserve.io/v1alpha1',
    kind: 'LocalModelNodeGroup',
    metadata: { name: group },
    spec: { nodeSelector: { matchLabels: { [PHASE_LABEL]: phase.label } }, storageLimit: '100Gi' },
  });
  for (const [i, node] of names.entries()) {
    await createNode(client, node, { [PHASE_LABEL]: phase.label, ...zoneOf(ctx, i) });
  }
  log(`${phase.label}: starting ${phase.nodes} daemon(s), peers ${phase.peers ? 'on' : 'off'}`);
  const daemons = await startDaemons(ctx, phase, names);
  try {
    const path = `/${phase.label}/model.bin`;
    const cpu = new ProcessCpu(daemons.map((d) => d.managed.child.pid as number));
    // Counted from when the daemons are idle; what idle costs (informers, timers) is measured, to be taken off.
    const idleCpuPerSecond = await cpu.settleIdle(ctx.signal);
    const split0 = await cpu.split();
    const cpu0 = split0.user + split0.system;
    const origin0 = await ctx.origin.bytesSent(path);
    const t0 = performance.now();
    await client.create(LOCAL_MODEL_CACHES, {
      apiVersion: 'serving.kserve.io/v1alpha1',
      kind: 'LocalModelCache',
      metadata: { name: group },
      spec: {
        sourceModelUri: ctx.origin.url(path),
        modelSize: String(Math.ceil(ctx.size * 1.05)),
        nodeGroups: [group],
      },
    });
    const seconds = (): number => (performance.now() - t0) / 1000;
    // Per node: when (and at what count) bytes from peers were first seen, and when the model was there.
    const firstPeer = new Map<string, { at: number; bytes: number }>();
    const done = new Map<string, { at: number; detail: LocalModelDetail }>();
    const timeoutS = 60 + (3 * phase.nodes * ctx.size) / ctx.originRate;
    let lastLog = 0;
    let originFirstAt: number | undefined;
    while (done.size < names.length) {
      ctx.signal.throwIfAborted();
      const dead = daemons.find((d) => d.managed.child.exitCode !== null);
      if (dead) throw new Error(`${dead.managed.name} exited during the run; log ${dead.managed.logFile}`);
      if (seconds() > timeoutS) throw new Error(`${phase.label}: not every node had the model after ${timeoutS} s`);
      const lmns = (await client.list<LocalModelNode>(LOCAL_MODEL_NODES, { signal: ctx.signal })).items;
      const now = seconds();
      let bytes = 0;
      let peerBytes = 0;
      for (const lmn of lmns) {
        const node = lmn.metadata.name as string;
        if (!names.includes(node) || done.has(node)) continue;
        const m = lmn.status?.models?.[group];
        bytes += m?.bytesDone ?? 0;
        peerBytes += m?.bytesFromPeers ?? 0;
        if (m?.bytesFromPeers && !firstPeer.has(node)) firstPeer.set(node, { at: now, bytes: m.bytesFromPeers });
        if (lmn.status?.modelStatus?.[group] === 'ModelDownloaded') done.set(node, { at: now, detail: m ?? {} });
      }
      if (originFirstAt === undefined && (await ctx.origin.bytesSent(path)) > origin0) originFirstAt = now;
      if (now - lastLog >= 5) {
        lastLog = now;
        const o = ((await ctx.origin.bytesSent(path)) - origin0) / MiB;
        log(
          `${phase.label}: ${Math.round(now)} s, ${done.size}/${names.length} done; in progress ` +
            `${Math.round(bytes / MiB)} MiB (${Math.round(peerBytes / MiB)} from peers); origin sent ${Math.round(o)} MiB`,
        );
      }
      await delay(250, undefined, { signal: ctx.signal });
    }
    const result: PhaseResult = {
      seconds: Math.max(...[...done.values()].map((d) => d.at)),
      originBytes: (await ctx.origin.bytesSent(path)) - origin0,
      cpuSeconds: (await cpu.seconds()) - cpu0,
      idleCpuPerSecond,
      peerSeconds: 0,
      bytesDone: 0,
      bytesFromPeers: 0,
      peerRates: [],
      acrossZones: 0,
      copiesLogged: 0,
    };
    for (const d of daemons)
      for (const line of await d.logs())
        if (line.msg === 'model fetched from peers') {
          result.copiesLogged++;
          result.acrossZones += Number(line.fromOtherZones ?? 0);
        }
    const firstPeerAt = Math.min(...[...firstPeer.values()].map((f) => f.at));
    if (firstPeer.size) result.peerSeconds = result.seconds - firstPeerAt;
    for (const [node, d] of done) {
      result.bytesDone += d.detail.bytesDone ?? 0;
      const fromPeers = d.detail.bytesFromPeers ?? 0;
      result.bytesFromPeers += fromPeers;
      const first = firstPeer.get(node);
      if (first && d.at > first.at && fromPeers > first.bytes)
        result.peerRates.push((fromPeers - first.bytes) / (d.at - first.at));
    }
    const split = await cpu.split();
    if (phase.join) result.joinRate = await joinOne(ctx, phase, group, daemons);
    const finished = [...done.values()].map((d) => d.at.toFixed(1)).sort((a, b) => Number(a) - Number(b));
    log(
      `${phase.label}: first origin byte at ${originFirstAt?.toFixed(1) ?? '-'} s, done at ${finished.join(', ')} s; ` +
        `CPU user ${(split.user - split0.user).toFixed(1)} s, system ${(split.system - split0.system).toFixed(1)} s`,
    );
    log(
      `${phase.label}: all ${names.length} done in ${result.seconds.toFixed(1)} s; origin sent ` +
        `${(result.originBytes / MiB).toFixed(0)} MiB, peers ${(result.bytesFromPeers / MiB).toFixed(0)} MiB, ` +
        `daemons' CPU ${result.cpuSeconds.toFixed(1)} s (idle: ${idleCpuPerSecond.toFixed(2)} s/s)`,
    );
    return result;
  } finally {
    await Promise.all(daemons.map((d) => d.stop()));
    const keep = process.env.MODELCACHE_BENCH_P2P_LOGS;
    if (keep) await cp(join(ctx.base, phase.label, 'logs'), join(keep, phase.label), { recursive: true });
    await rm(join(ctx.base, phase.label), { recursive: true, force: true });
  }
}

/**
 * One more node joins the group once all of `phase` have the model, and copies it from them (up to 4 at once): its
 * bytes from peers per second, from its daemon's log (download started to model fetched; 0: not measurable).
 */
async function joinOne(ctx: Context, phase: Phase, group: string, daemons: ModelcacheProcess[]): Promise<number> {
  const node = `${group}-join`;
  const host = phase.nodes; // the simulated host after the phase's own
  await createNode(ctx.client, node, { [PHASE_LABEL]: phase.label, ...zoneOf(ctx, host) });
  const [daemon] = await startDaemons(ctx, phase, [node], host);
  daemons.push(daemon!);
  const start = performance.now();
  const timeoutS = 60 + (3 * ctx.size) / ctx.originRate;
  for (;;) {
    ctx.signal.throwIfAborted();
    const now = (performance.now() - start) / 1000;
    if (now > timeoutS) throw new Error(`${node}: the model was not copied after ${timeoutS} s`);
    const lmn = await ctx.client.get<LocalModelNode>(LOCAL_MODEL_NODES, node, { signal: ctx.signal });
    if (lmn?.status?.modelStatus?.[group] === 'ModelDownloaded') break;
    await delay(100, undefined, { signal: ctx.signal });
  }
  const lines = await daemon!.logs();
  const at = (msg: string): { time: number; line: Record<string, unknown> } | undefined => {
    const line = lines.find((l) => l.msg === msg);
    return line && typeof line.time === 'string' ? { time: Date.parse(line.time), line } : undefined;
  };
  const [began, fetched] = [at('download started'), at('model fetched from peers')];
  const bytes = Number(fetched?.line.fromPeers ?? 0);
  if (!began || !fetched || !(bytes > 0) || fetched.time <= began.time) return 0;
  const seconds = (fetched.time - began.time) / 1000;
  log(
    `${phase.label}: ${node} joined and copied ${(bytes / MiB).toFixed(0)} MiB from peers in ${seconds.toFixed(2)} s`,
  );
  return bytes / seconds;
}

function figures(
  n: number,
  zones: number,
  size: number,
  rates: { origin: number; node: number },
  r: Record<string, PhaseResult>,
  originPaths: number,
  clusterSeeds: boolean,
): BenchFigure[] {
  const [a, off, on] = [r.one!, r.off!, r.on!];
  const mibps = (bytesPerSecond: number): number => bytesPerSecond / MiB;
  const meanPeerRate = on.peerRates.length ? on.peerRates.reduce((x, y) => x + y, 0) / on.peerRates.length : 0;
  const peerRate = on.peerSeconds ? on.bytesFromPeers / on.peerSeconds : 0;
  const busyCpu = (p: PhaseResult): number => Math.max(0, p.cpuSeconds - p.idleCpuPerSecond * p.seconds);
  const cpuOn = on.bytesFromPeers ? busyCpu(on) / (on.bytesFromPeers / GiB) : 0;
  const cpuOff = busyCpu(off) / (off.bytesDone / GiB);
  const originGoal = Math.round(1.1 * zones * 100) / 100;
  return [
    {
      name: 'p2p: 1 node from the origin (reference A), vs its link',
      value: mibps(size / a.seconds),
      unit: 'MiB/s',
      reference: mibps(rates.origin),
      ratio: size / a.seconds / rates.origin,
      goal: '≥ 0.8: the shaped origin link is what limits',
      ok: size / a.seconds / rates.origin >= 0.8,
    },
    {
      name: `p2p off: origin bytes / model size, ${n} nodes (reference B)`,
      value: off.originBytes / size,
      unit: 'copies',
      reference: n,
      ratio: off.originBytes / size / n,
      goal: `≈ ${n}: each node fetches its own copy`,
      ok: off.originBytes >= 0.99 * n * size && off.originBytes <= 1.1 * n * size,
    },
    {
      name: `p2p off: ${n} nodes downloaded (reference B) vs 1 node`,
      value: off.seconds,
      unit: 's',
      reference: a.seconds,
      ratio: off.seconds / a.seconds,
      goal:
        originPaths > 1
          ? `reference: ≈ ${n / originPaths}× (each zone's nodes share its egress)`
          : `reference: ≈ ${n}× (the origin link is shared)`,
      ok: true,
    },
    {
      name: `p2p on: origin bytes / model size, ${n} nodes${zones > 1 ? `, ${zones} zones` : ''}`,
      value: on.originBytes / size,
      unit: 'copies',
      goal: `≤ ${originGoal}`,
      ok: on.originBytes / size <= originGoal,
    },
    ...(zones > 1
      ? [
          {
            name: `p2p on: bytes copied across zones in the fan-out / model size`,
            value: on.acrossZones / size,
            unit: 'copies',
            goal:
              (clusterSeeds
                ? `reference: ≈ ${zones - 1}, one seed for the cluster (--peer-seeds cluster)`
                : 'reference: ≈ 0, each zone fetches through its own seed') +
              (on.copiesLogged ? '' : ' (no copy logged: unknown)'),
            ok: on.copiesLogged > 0,
          },
        ]
      : []),
    {
      name: `p2p on: ${n} nodes downloaded vs 1 node alone`,
      value: on.seconds,
      unit: 's',
      reference: a.seconds,
      ratio: on.seconds / a.seconds,
      goal: 'ratio ≤ 1.3',
      ok: on.seconds / a.seconds <= 1.3,
    },
    {
      name: `p2p on: ${n} nodes downloaded vs peers off`,
      value: on.seconds,
      unit: 's',
      reference: off.seconds,
      ratio: on.seconds / off.seconds,
      goal: 'ratio < 1',
      ok: on.seconds < off.seconds,
    },
    {
      name: `p2p on: peer throughput per receiving node (${on.peerRates.length} nodes) in the fan-out, vs origin link`,
      value: mibps(meanPeerRate),
      unit: 'MiB/s',
      reference: mibps(rates.origin),
      ratio: meanPeerRate / rates.origin,
      goal: 'reference: ≤ 1, copies follow the seed, which the origin link paces',
      ok: true,
    },
    {
      name: 'p2p on: peer throughput of a node joining afterwards (from complete peers), vs node link',
      value: mibps(on.joinRate ?? 0),
      unit: 'MiB/s',
      reference: mibps(rates.node),
      ratio: (on.joinRate ?? 0) / rates.node,
      goal: 'ratio ≥ 0.5',
      ok: (on.joinRate ?? 0) / rates.node >= 0.5,
    },
    {
      name: `p2p on: peer throughput, all nodes together, vs one node link`,
      value: mibps(peerRate),
      unit: 'MiB/s',
      reference: mibps(rates.node),
      ratio: peerRate / rates.node,
      goal: 'ratio ≥ 0.8 (serving links kept busy)',
      ok: peerRate / rates.node >= 0.8,
    },
    {
      name: `p2p on: daemons' CPU above idle per GiB from peers${on.bytesFromPeers ? '' : ' (none came from peers)'}, vs per GiB from the origin`,
      value: cpuOn,
      unit: 'CPU s/GiB',
      reference: cpuOff,
      ratio: cpuOn / cpuOff,
      goal: 'ratio ≤ 2 (a peer copy has a sender and a receiver)',
      ok: on.bytesFromPeers > 0 && cpuOn / cpuOff <= 2,
    },
  ];
}

export async function benchP2p(): Promise<BenchFigure[]> {
  const problem = netnsUnavailable();
  if (problem) {
    console.error(`p2p bench: ${problem}`);
    process.exit(2);
  }
  const n = Math.round(envNumber('MODELCACHE_BENCH_P2P_NODES', 8, 2));
  const zones = Math.round(envNumber('MODELCACHE_BENCH_P2P_ZONES', 1, 1));
  const size = Math.round(envNumber('MODELCACHE_BENCH_SIZE_MIB', 256, 1) * MiB);
  const bits = {
    origin: envNumber('MODELCACHE_BENCH_P2P_ORIGIN_MBIT', 200, 1) * 1e6,
    node: envNumber('MODELCACHE_BENCH_P2P_NODE_MBIT', 1000, 1) * 1e6,
    zone: envNumber('MODELCACHE_BENCH_P2P_ZONE_MBIT', 400, 1) * 1e6,
  };
  const originPath = process.env.MODELCACHE_BENCH_P2P_ORIGIN_PATH ?? 'zone';
  if (originPath !== 'zone' && originPath !== 'shared')
    throw new Error(`MODELCACHE_BENCH_P2P_ORIGIN_PATH=${originPath}: give 'zone' or 'shared'`);
  // Ctrl-C or SIGTERM ends the waits, so everything below is still cleaned up.
  const stop = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => stop.abort(new Error(`interrupted by ${sig}`));
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, onSignal);
  const left = [...(await removeLeftoverNamespaces()), ...(await removeLeftoverDirs())];
  if (left.length) log(`removed what an earlier run left: ${left.join(', ')}`);
  const base = await mkdtemp(join(TMP, `${TMP_PREFIX}${process.pid}-`));
  const reaper = new Reaper();
  const cleanup: Array<() => Promise<unknown>> = [];
  try {
    const net = await SimulatedNetwork.create({
      nodes: n + 1, // the last for the node that joins afterwards
      zones,
      originBitsPerSecond: bits.origin,
      nodeBitsPerSecond: bits.node,
      zoneBitsPerSecond: bits.zone,
      originPerZone: originPath === 'zone',
      log,
    });
    cleanup.push(() => net.close());
    const cp = await ControlPlane.start({
      dir: join(base, 'cp'),
      binaries: await ensureBinaries(),
      controllerManager: false,
    });
    cleanup.push(() => cp.stop());
    const client = KubeClient.fromKubeconfig({ kubeconfig: cp.kubeconfig });
    cleanup.push(() => client.close());
    const relay = await ApiserverRelay.start({ server: cp.server, hosts: net.nodes, dir: base, reaper });
    cleanup.push(() => relay.close());
    await installCrds(client);
    await client.create(NAMESPACES, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: DAEMON_NS } });
    const sa = {
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name: 'modelcache-daemon', namespace: DAEMON_NS },
    };
    await client.create(SERVICE_ACCOUNTS, sa);
    // The daemons' peer identity, as the DaemonSet's projected token volume gives each pod.
    const tokenFile = join(base, 'peer-token');
    await writeFile(tokenFile, await requestToken(client, DAEMON_NS, 'modelcache-daemon', [PEER_AUDIENCE], 3600));
    const quiet = new Writable({ write: (_c, _e, cb) => cb() });
    const controller = new CacheController({ client, log: createLogger('controller', 'warn', quiet) });
    const stopController = new AbortController();
    controller.start(stopController.signal);
    const running = controller.run(stopController.signal);
    cleanup.push(async () => {
      stopController.abort();
      await running;
    });
    const phases: Phase[] = [
      { label: 'one', nodes: 1, peers: false },
      { label: 'off', nodes: n, peers: false },
      { label: 'on', nodes: n, peers: true, join: true },
    ];
    const files = Object.fromEntries(phases.map((p) => [`/${p.label}/model.bin`, size]));
    const origin = await startOriginProcess({ host: net.origin, port: ORIGIN_PORT, files, dir: base, reaper });
    cleanup.push(() => origin.stop());
    const ctx: Context = {
      client,
      net,
      origin,
      reaper,
      base,
      kubeconfig: cp.kubeconfig,
      tokenFile,
      size,
      zones,
      originRate: bits.origin / 8,
      signal: stop.signal,
    };
    const results: Record<string, PhaseResult> = {};
    for (const p of phases) results[p.label] = await runPhase(ctx, p);
    const paths = zones > 1 && originPath === 'zone' ? zones : 1;
    const clusterSeeds = process.env.MODELCACHE_BENCH_P2P_SEEDS === 'cluster';
    return figures(n, zones, size, { origin: bits.origin / 8, node: bits.node / 8 }, results, paths, clusterSeeds);
  } finally {
    for (const undo of cleanup.reverse()) await undo().catch((err: unknown) => log(`cleanup: ${String(err)}`));
    reaper.close();
    await rm(base, { recursive: true, force: true });
    for (const sig of ['SIGINT', 'SIGTERM'] as const) process.off(sig, onSignal);
  }
}
