import { spawn, spawnSync } from 'node:child_process';
import { access, mkdir, readFile, rename, rm, writeFile, constants } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { isAlive } from './processes.ts';

/** Versions of the control plane we build and test against. */
const CONTROL_PLANE_VERSIONS = {
  kubernetes: 'v1.37.2',
  /** k8s.io/* staging modules are published as v0.<minor>.<patch> of the same release. */
  staging: 'v0.37.2',
  etcd: 'v3.6.16',
} as const;

type BinaryName = 'etcd' | 'kube-apiserver' | 'kube-controller-manager' | 'kube-scheduler' | 'kubectl';
export type Binaries = Record<BinaryName, string>;

const KUBE_BINARIES: BinaryName[] = ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubectl'];

/** `${XDG_CACHE_HOME:-~/.cache}/modelcache/k8s-<v>-etcd-<v>`: built once per machine, reused by every run. */
export function binaryCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CACHE_HOME || join(homedir(), '.cache');
  const v = CONTROL_PLANE_VERSIONS;
  return join(base, 'modelcache', `k8s-${v.kubernetes}-etcd-${v.etcd}`);
}

async function isExecutable(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Where each binary would come from: KUBEBUILDER_ASSETS first (envtest's convention), then the build cache. */
async function locate(env: NodeJS.ProcessEnv): Promise<{ found: Partial<Binaries>; missing: BinaryName[] }> {
  const found: Partial<Binaries> = {};
  const missing: BinaryName[] = [];
  const cacheBin = join(binaryCacheDir(env), 'bin');
  for (const name of ['etcd', ...KUBE_BINARIES] as BinaryName[]) {
    const candidates = [env.KUBEBUILDER_ASSETS ? join(env.KUBEBUILDER_ASSETS, name) : undefined, join(cacheBin, name)];
    let hit: string | undefined;
    for (const c of candidates)
      if (c && (await isExecutable(c))) {
        hit = c;
        break;
      }
    if (hit) found[name] = hit;
    else missing.push(name);
  }
  return { found, missing };
}

/** Binaries if they are all present; never builds. Throws naming what is missing and how to get it. */
export async function findBinaries(env: NodeJS.ProcessEnv = process.env): Promise<Binaries> {
  const { found, missing } = await locate(env);
  if (missing.length > 0) {
    throw new Error(
      `control-plane binaries missing: ${missing.join(', ')}. Build them once with ` +
        `'node test/helpers/ensure-binaries.ts' (npm test does this first), or set KUBEBUILDER_ASSETS ` +
        `to a folder that holds them.`,
    );
  }
  return found as Binaries;
}

export interface EnsureOptions {
  env?: NodeJS.ProcessEnv;
  /** Progress lines for a person watching (the first build takes minutes). */
  log?: (line: string) => void;
  signal?: AbortSignal;
}

/** Finds the binaries, building missing ones with `go build` from Go modules into the cache directory. */
export async function ensureBinaries(opts: EnsureOptions = {}): Promise<Binaries> {
  const env = opts.env ?? process.env;
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  let { missing } = await locate(env);
  if (missing.length === 0) return findBinaries(env);
  const cache = binaryCacheDir(env);
  await mkdir(cache, { recursive: true });
  const release = await acquireLock(join(cache, '.build.lock'), log, opts.signal);
  try {
    ({ missing } = await locate(env)); // another process may have built them while we waited
    if (missing.length === 0) return await findBinaries(env);
    checkGo(env);
    if (missing.includes('etcd')) await buildEtcd(cache, env, log, opts.signal);
    const kube = missing.filter((m) => m !== 'etcd');
    if (kube.length > 0) await buildKubernetes(cache, kube, env, log, opts.signal);
  } finally {
    await release();
  }
  return findBinaries(env);
}

export function checkGo(env: NodeJS.ProcessEnv): void {
  const r = spawnSync('go', ['version'], { env, encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    throw new Error(
      'Go is not installed (no `go` on PATH). modelcache builds etcd and Kubernetes from Go modules ' +
        'the first time (a few minutes, then cached). Install Go 1.26 or newer, or set KUBEBUILDER_ASSETS ' +
        'to a folder holding etcd, kube-apiserver, kube-controller-manager and kubectl.',
    );
  }
}

export async function acquireLock(
  path: string,
  log: (l: string) => void,
  signal?: AbortSignal,
): Promise<() => Promise<void>> {
  let told = false;
  for (;;) {
    try {
      await mkdir(path);
      await writeFile(join(path, 'pid'), String(process.pid));
      return () => rm(path, { recursive: true, force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number(await readFile(join(path, 'pid'), 'utf8').catch(() => '0'));
      if (holder > 0 && !isAlive(holder)) {
        await rm(path, { recursive: true, force: true });
        continue;
      }
      if (!told) log(`waiting for another build of the control-plane binaries (pid ${holder || '?'})…`);
      told = true;
      await delay(1000, undefined, { signal });
    }
  }
}

function goEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return { ...env, GOTOOLCHAIN: 'local', GOFLAGS: '-mod=mod', CGO_ENABLED: '0' };
}

async function buildEtcd(
  cache: string,
  env: NodeJS.ProcessEnv,
  log: (l: string) => void,
  signal?: AbortSignal,
): Promise<void> {
  const dir = join(cache, 'src', 'etcd');
  await mkdir(dir, { recursive: true });
  await writeFile(
    join(dir, 'go.mod'),
    `module modelcache.local/etcdbuild\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 ${CONTROL_PLANE_VERSIONS.etcd}\n`,
  );
  await goBuild(dir, ['go.etcd.io/etcd/server/v3'], join(cache, 'bin'), 'etcd', env, log, signal);
}

async function buildKubernetes(
  cache: string,
  names: BinaryName[],
  env: NodeJS.ProcessEnv,
  log: (l: string) => void,
  signal?: AbortSignal,
): Promise<void> {
  const v = CONTROL_PLANE_VERSIONS;
  const dir = join(cache, 'src', 'kubernetes');
  await mkdir(dir, { recursive: true });
  log(`resolving k8s.io/kubernetes ${v.kubernetes} from the Go module proxy…`);
  const staging = await stagingModules(dir, env);
  const replaces = staging.map((m) => `\t${m} => ${m} ${v.staging}`).join('\n');
  await writeFile(
    join(dir, 'go.mod'),
    `module modelcache.local/k8sbuild\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes ${v.kubernetes}\n\nreplace (\n${replaces}\n)\n`,
  );
  for (const name of names) {
    await goBuild(dir, [`k8s.io/kubernetes/cmd/${name}`], join(cache, 'bin'), name, env, log, signal);
  }
}

/** The k8s.io/* modules that k8s.io/kubernetes points at its own staging tree; they must be pinned by version. */
async function stagingModules(dir: string, env: NodeJS.ProcessEnv): Promise<string[]> {
  const r = spawnSync('go', ['mod', 'download', '-json', `k8s.io/kubernetes@${CONTROL_PLANE_VERSIONS.kubernetes}`], {
    cwd: dir,
    env: goEnv(env),
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`go mod download k8s.io/kubernetes failed:\n${r.stderr}`);
  const info = JSON.parse(r.stdout) as { GoMod: string };
  const mod = await readFile(info.GoMod, 'utf8');
  const names = [...mod.matchAll(/^\s*(k8s\.io\/[\w.-]+)\s+=>\s+\.\/staging\//gm)].map((m) => m[1] as string);
  if (names.length === 0) throw new Error(`no staging replace lines found in ${info.GoMod}`);
  return names;
}

/** `go build -v` with a progress line every few seconds (packages compiled so far). */
export async function goBuild(
  cwd: string,
  pkgs: string[],
  binDir: string,
  name: string,
  env: NodeJS.ProcessEnv,
  log: (l: string) => void,
  signal?: AbortSignal,
): Promise<void> {
  await mkdir(binDir, { recursive: true });
  const tmp = join(binDir, `.${name}.${process.pid}.tmp`);
  const started = Date.now();
  log(`building ${name} with go build (first run only; a few minutes)…`);
  let packages = 0;
  let stderrTail = '';
  const child = spawn('go', ['build', '-v', '-trimpath', '-ldflags=-s -w', '-o', tmp, ...pkgs], {
    cwd,
    env: goEnv(env),
    stdio: ['ignore', 'ignore', 'pipe'],
    signal,
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    packages += chunk.split('\n').filter((l) => l && !l.startsWith('go: ')).length;
    stderrTail = (stderrTail + chunk).slice(-4000);
  });
  const ticker = setInterval(() => {
    log(`  ${name}: ${packages} packages compiled, ${Math.round((Date.now() - started) / 1000)} s`);
  }, 15_000);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  }).finally(() => clearInterval(ticker));
  if (code !== 0) {
    await rm(tmp, { force: true });
    throw new Error(`go build of ${name} failed (exit ${code}):\n${stderrTail}`);
  }
  await rename(tmp, join(binDir, name));
  log(`built ${name} in ${Math.round((Date.now() - started) / 1000)} s`);
}
