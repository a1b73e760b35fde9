// Daemon throughput and memory: one big file over loopback HTTP into tmpfs, as a ratio to `curl -o`
// measured in the same run; a tar.gz against `curl | tar xz`; the daemon process's peak RSS.
// MODELCACHE_BENCH_SIZE_MIB (default 2048) makes it smaller for a quick run.
import { execFileSync, spawn } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createGzip } from 'node:zlib';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { pack as tarPack } from 'tar-stream';
import { installCrds } from '../api/install.ts';
import { storageKeyFor } from '../api/storage-key.ts';
import { LOCAL_MODEL_NODES, type LocalModelNode } from '../api/types.ts';
import { KubeClient } from '../kube/client.ts';
import { fromYamlAll } from '../kube/yaml.ts';
import { ControlPlane } from '../localcluster/control-plane.ts';
import { ensureBinaries } from '../localcluster/binaries.ts';
import { eventually } from '../localcluster/eventually.ts';
import { createNode } from '../localcluster/nodes.ts';
import { Reaper } from '../localcluster/processes.ts';
import { startModelcache } from '../localcluster/modelcache-process.ts';
import { serveDir } from './static-server.ts';
import type { BenchFigure } from './table.ts';

const MiB = 2 ** 20;

/** Random (incompressible) bytes written in 16 MiB blocks, never held whole in memory. */
async function writeRandom(path: string, bytes: number): Promise<void> {
  const block = Buffer.alloc(16 * MiB);
  let left = bytes;
  await pipeline(
    Readable.from(
      (function* () {
        while (left > 0) {
          const n = Math.min(left, block.length);
          left -= n;
          yield randomFillSync(block.subarray(0, n));
        }
      })(),
    ),
    createWriteStream(path),
  );
}

async function writeTarGz(path: string, files: number, each: number): Promise<void> {
  const p = tarPack();
  const done = pipeline(p as unknown as NodeJS.ReadableStream, createGzip({ level: 1 }), createWriteStream(path));
  const block = Buffer.alloc(each);
  for (let i = 0; i < files; i++) {
    randomFillSync(block);
    await new Promise<void>((res, rej) =>
      p.entry({ name: `model/shard-${i}.bin`, size: each }, block, (e) => (e ? rej(e) : res())),
    );
  }
  p.finalize();
  await done;
}

/** The daemon container's plain env values in manifests/daemon/daemonset.yaml. */
async function daemonSetEnv(): Promise<Record<string, string>> {
  type Container = { env?: Array<{ name: string; value?: string }> };
  const docs = fromYamlAll(
    await readFile(new URL('../manifests/daemon/daemonset.yaml', import.meta.url), 'utf8'),
  ) as Array<{ kind?: string; spec?: { template?: { spec?: { containers?: Container[] } } } }>;
  const env = docs.find((d) => d.kind === 'DaemonSet')?.spec?.template?.spec?.containers?.[0]?.env ?? [];
  return Object.fromEntries(env.filter((e) => e.value !== undefined).map((e) => [e.name, e.value as string]));
}

/** Wall time of a command, run asynchronously (the origin it fetches from lives in this process). */
async function timeCommand(cmd: string, args: string[]): Promise<number> {
  const t0 = performance.now();
  const code = await new Promise<number | null>((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: 'ignore' });
    child.on('error', reject);
    child.on('close', resolve);
  });
  if (code !== 0) throw new Error(`${cmd} failed (exit ${code})`);
  return (performance.now() - t0) / 1000;
}

export async function benchDaemon(): Promise<BenchFigure[]> {
  const sizeMiB = Number(process.env.MODELCACHE_BENCH_SIZE_MIB ?? '2048');
  const base = await mkdtemp('/dev/shm/modelcache-bench-');
  const src = join(base, 'origin');
  await mkdir(src);
  process.stderr.write(`daemon bench: writing a ${sizeMiB} MiB file and a tar.gz into tmpfs…\n`);
  await writeRandom(join(src, 'model.bin'), sizeMiB * MiB);
  const tarFiles = Math.max(2, Math.round(sizeMiB / 256));
  await writeTarGz(join(src, 'model.tar.gz'), tarFiles, 128 * MiB);
  const origin = await serveDir(src);
  const cp = await ControlPlane.start({
    dir: join(base, 'cp'),
    binaries: await ensureBinaries(),
    controllerManager: false,
  });
  const client = KubeClient.fromKubeconfig({ kubeconfig: cp.kubeconfig });
  const reaper = new Reaper();
  try {
    await installCrds(client);
    await createNode(client, 'bench-node', {});
    const root = join(base, 'root');
    // The daemon runs with the DaemonSet's memory settings (read from its manifest) unless overridden.
    const shipped = await daemonSetEnv();
    const env = {
      ...process.env,
      NODE_OPTIONS: process.env.MODELCACHE_DAEMON_NODE_OPTIONS ?? shipped.NODE_OPTIONS ?? '',
      MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? shipped.MALLOC_ARENA_MAX ?? '',
    };
    process.stderr.write(`daemon env: NODE_OPTIONS=${env.NODE_OPTIONS} MALLOC_ARENA_MAX=${env.MALLOC_ARENA_MAX}\n`);
    const daemon = await startModelcache(
      'daemon',
      [
        'daemon',
        '--kubeconfig',
        cp.kubeconfig,
        '--node-name',
        'bench-node',
        '--root',
        root,
        '--listen',
        '127.0.0.1:0',
        '--safety-margin',
        '0',
      ],
      base,
      reaper,
      env,
    );
    await client.create(LOCAL_MODEL_NODES, {
      apiVersion: 'serving.kserve.io/v1alpha1',
      kind: 'LocalModelNode',
      metadata: { name: 'bench-node' },
      spec: { localModels: [] },
    } as LocalModelNode);
    const pid = daemon.managed.child.pid;
    const peakKiB = async (): Promise<number> =>
      Number(/VmHWM:\s+(\d+)/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
    const idleKiB = await peakKiB();
    const peaks = { big: 0, tgz: 0 };
    /** The daemon's own download time for one model (from its log); the previous model is dropped from the spec, so the daemon removes it. */
    const viaDaemon = async (name: string, uri: string, size: number): Promise<number> => {
      await writeFile(`/proc/${pid}/clear_refs`, '5'); // resets VmHWM: a peak per download kind
      try {
        return await daemonDownload(name, uri, size);
      } finally {
        const kind = name.startsWith('tgz') ? 'tgz' : 'big';
        peaks[kind] = Math.max(peaks[kind], await peakKiB());
      }
    };
    const daemonDownload = async (name: string, uri: string, size: number): Promise<number> => {
      await client.mergePatch(LOCAL_MODEL_NODES, 'bench-node', {
        spec: {
          localModels: [
            {
              sourceModelUri: uri,
              modelName: name,
              modelSize: Math.ceil(size * 1.05),
              storagePath: root,
              storageKey: storageKeyFor(uri),
            },
          ],
        },
      });
      const line = await eventually(
        async () => {
          const l = (await daemon.logs()).find((x) => x.msg === 'model downloaded' && x.model === name);
          if (!l) throw new Error('not yet');
          return l;
        },
        { timeoutMs: 900_000, intervalMs: 200 },
      );
      return Number(line.seconds);
    };
    const viaCurlTar = async (): Promise<number> => {
      await mkdir(join(base, 'tar-out'));
      const s = await timeCommand('bash', [
        '-c',
        'curl -s "$0" | tar xzf - -C "$1"',
        origin.url('/model.tar.gz'),
        join(base, 'tar-out'),
      ]);
      await rm(join(base, 'tar-out'), { recursive: true });
      return s;
    };
    // Interleaved repetitions, medians: this machine is small and shared, single samples swing widely.
    const REPS = 3;
    const samples = { curl: [] as number[], big: [] as number[], curlTar: [] as number[], tgz: [] as number[] };
    const big = sizeMiB * MiB;
    const tgz = tarFiles * 128 * MiB;
    for (let rep = 0; rep < REPS; rep++) {
      samples.curl.push(await timeCommand('curl', ['-s', '-o', join(base, 'curl.bin'), origin.url('/model.bin')]));
      await rm(join(base, 'curl.bin'));
      samples.big.push(await viaDaemon(`big-${rep}`, origin.url(`/model.bin?rep=${rep}`), big));
      samples.curlTar.push(await viaCurlTar());
      samples.tgz.push(await viaDaemon(`tgz-${rep}`, origin.url(`/model.tar.gz?rep=${rep}`), tgz));
    }
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
    const [curlS, bigS, curlTarS, tgzS] = [
      median(samples.curl),
      median(samples.big),
      median(samples.curlTar),
      median(samples.tgz),
    ];
    const rssKiB = Math.max(peaks.big, peaks.tgz, idleKiB);
    process.stderr.write(
      `daemon RSS: ${Math.round(idleKiB / 1024)} MiB after start; peak ${Math.round(peaks.big / 1024)} MiB during the file, ${Math.round(peaks.tgz / 1024)} MiB during the tar.gz\n`,
    );
    await daemon.stop();
    const mbps = (bytes: number, s: number): number => bytes / MiB / s;
    return [
      {
        name: `daemon: ${sizeMiB} MiB file → tmpfs (median of ${REPS})`,
        value: mbps(big, bigS),
        unit: 'MiB/s',
        reference: mbps(big, curlS),
        ratio: curlS / bigS,
        goal: 'ratio ≥ 0.95 vs curl -o',
        ok: curlS / bigS >= 0.95,
      },
      {
        name: `daemon: ${Math.round(tgz / MiB)} MiB tar.gz → extracted (median of ${REPS})`,
        value: mbps(tgz, tgzS),
        unit: 'MiB/s',
        reference: mbps(tgz, curlTarS),
        ratio: curlTarS / tgzS,
        goal: 'ratio ≥ 0.9 vs curl | tar xz',
        ok: curlTarS / tgzS >= 0.9,
      },
      { name: 'daemon: peak RSS', value: rssKiB / 1024, unit: 'MiB', goal: '< 150 MiB', ok: rssKiB / 1024 < 150 },
    ];
  } finally {
    reaper.close();
    await client.close();
    await cp.stop();
    await origin.close();
    execFileSync('rm', ['-rf', base]);
  }
}
