import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { access, mkdir, readFile, writeFile, constants } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Agent, fetch } from 'undici';
import { findBinaries, type Binaries } from './binaries.ts';
import {
  freePort,
  ProcessExitedError,
  Reaper,
  startLogged,
  stopProcess,
  waitReady,
  type Managed,
} from './processes.ts';

/** Identities in the static token file. `admin` is in system:masters; the others start with no rights. */
const IDENTITIES = ['admin', 'tester-1', 'tester-2', 'tester-3'] as const;
export type Identity = (typeof IDENTITIES)[number];

export interface ControlPlaneOptions {
  /** Data, certs, logs and kubeconfig go here. */
  dir: string;
  binaries?: Binaries;
  /**
   * Start kube-controller-manager: garbage collector, namespaces, the PersistentVolume binder and the
   * volume protection controllers, service accounts and their tokens. Default true.
   */
  controllerManager?: boolean;
  /** Start kube-scheduler, so pods are bound to nodes for real. Default false (it adds to every start). */
  scheduler?: boolean;
  /** Leave processes running after this process exits (`npm run cluster start`). */
  detached?: boolean;
  /** Extra kube-apiserver flags. */
  apiserverArgs?: string[];
  log?: (line: string) => void;
}

export interface ControlPlaneState {
  dir: string;
  server: string;
  etcdUrl: string;
  kubeconfig: string;
  pids: Record<string, number>;
}

const READY_TIMEOUT_MS = 60_000;
const PORT_RETRIES = 5;
/**
 * kube-controller-manager's controllers (v1.37 names). The protection controllers release the finalizers
 * the apiserver's StorageObjectInUseProtection puts on every PV and PVC; without them none is ever deleted.
 */
const KCM_CONTROLLERS = [
  'garbage-collector-controller',
  'namespace-controller',
  'persistentvolume-binder-controller',
  'persistentvolume-protection-controller',
  'persistentvolumeclaim-protection-controller',
  'serviceaccount-controller',
  'serviceaccount-token-controller',
  'root-ca-certificate-publisher-controller',
];

/**
 * etcd + kube-apiserver (+ kube-controller-manager, + kube-scheduler) on free loopback ports, with
 * secure serving, RBAC, service-account signing keys and a static token file. Stopped by stop(), and
 * by a reaper process if this process dies first.
 */
export class ControlPlane {
  readonly dir: string;
  readonly binaries: Binaries;
  readonly tokens: Record<Identity, string>;
  readonly #opts: ControlPlaneOptions;
  readonly #reaper: Reaper | undefined;
  #etcd?: Managed;
  #apiserver?: Managed;
  #kcm?: Managed;
  #scheduler?: Managed;
  #apiPort = 0;
  #etcdPort = 0;
  #caPem = '';
  #readyAgent?: Agent;

  private constructor(opts: ControlPlaneOptions, binaries: Binaries) {
    this.dir = resolve(opts.dir);
    this.binaries = binaries;
    this.#opts = opts;
    this.#reaper = opts.detached ? undefined : new Reaper();
    this.tokens = Object.fromEntries(IDENTITIES.map((id) => [id, randomBytes(24).toString('hex')])) as Record<
      Identity,
      string
    >;
  }

  /** Starts the control plane and resolves when the apiserver answers /readyz. */
  static async start(opts: ControlPlaneOptions): Promise<ControlPlane> {
    const cp = new ControlPlane(opts, opts.binaries ?? (await findBinaries()));
    try {
      await cp.#prepareDir();
      await cp.#startEtcd();
      await cp.startApiserver();
      if (opts.controllerManager !== false) await cp.#startControllerManager();
      if (opts.scheduler) await cp.#startScheduler();
    } catch (err) {
      await cp.stop();
      throw err;
    }
    return cp;
  }

  get server(): string {
    return `https://127.0.0.1:${this.#apiPort}`;
  }
  get etcdUrl(): string {
    return `http://127.0.0.1:${this.#etcdPort}`;
  }
  /** kubeconfig of the admin identity. */
  get kubeconfig(): string {
    return join(this.dir, 'kubeconfig');
  }
  get caPem(): string {
    return this.#caPem;
  }
  /** Username the apiserver sees for an identity (for RBAC subjects). */
  static username(id: Identity): string {
    return id === 'admin' ? 'modelcache-admin' : `modelcache-${id}`;
  }

  /** Writes (once) and returns a kubeconfig for a static-token identity or a bearer token (e.g. a service account's). */
  async kubeconfigFor(id: Identity | { name: string; token: string }): Promise<string> {
    const name = typeof id === 'string' ? id : id.name;
    const token = typeof id === 'string' ? this.tokens[id] : id.token;
    const path = join(this.dir, `kubeconfig-${name}`);
    await writeFile(path, kubeconfigJson(this.server, this.#caPem, name, token), { mode: 0o600 });
    return path;
  }

  state(): ControlPlaneState {
    const pids: Record<string, number> = {};
    for (const m of [this.#etcd, this.#apiserver, this.#kcm, this.#scheduler])
      if (m?.child.pid) pids[m.name] = m.child.pid;
    return { dir: this.dir, server: this.server, etcdUrl: this.etcdUrl, kubeconfig: this.kubeconfig, pids };
  }

  async #prepareDir(): Promise<void> {
    try {
      await mkdir(join(this.dir, 'logs'), { recursive: true });
      await mkdir(join(this.dir, 'pki'), { recursive: true });
      await access(this.dir, constants.W_OK);
    } catch (err) {
      throw new Error(
        `control-plane directory ${this.dir} is not writable (${(err as Error).message}); pass a --dir you can write to`,
      );
    }
    const { publicKey, privateKey } = generateKeyPairSync('rsa', {
      modulusLength: 2048,
      publicKeyEncoding: { type: 'spki', format: 'pem' },
      privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    });
    await writeFile(join(this.dir, 'pki', 'sa.key'), privateKey, { mode: 0o600 });
    await writeFile(join(this.dir, 'pki', 'sa.pub'), publicKey);
    const rows = IDENTITIES.map((id) => {
      const groups = id === 'admin' ? ',"system:masters"' : '';
      return `${this.tokens[id]},${ControlPlane.username(id)},uid-${id}${groups}`;
    });
    await writeFile(join(this.dir, 'pki', 'tokens.csv'), `${rows.join('\n')}\n`, { mode: 0o600 });
  }

  /** Starts a component on fresh ports, retrying when a port was taken between picking and binding. */
  async #startWithPorts(name: string, attempt: () => Promise<Managed>): Promise<Managed> {
    for (let i = 1; ; i++) {
      try {
        return await attempt();
      } catch (err) {
        if (err instanceof ProcessExitedError && err.portInUse && i < PORT_RETRIES) {
          this.#opts.log?.(`${name}: port taken, retrying on another`);
          continue;
        }
        throw err;
      }
    }
  }

  async #startEtcd(): Promise<void> {
    this.#etcd = await this.#startWithPorts('etcd', async () => {
      this.#etcdPort = await freePort();
      const peer = await freePort();
      const m = startLogged(
        'etcd',
        this.binaries.etcd,
        [
          '--name=default',
          `--data-dir=${join(this.dir, 'etcd')}`,
          `--listen-client-urls=${this.etcdUrl}`,
          `--advertise-client-urls=${this.etcdUrl}`,
          `--listen-peer-urls=http://127.0.0.1:${peer}`,
          `--initial-advertise-peer-urls=http://127.0.0.1:${peer}`,
          `--initial-cluster=default=http://127.0.0.1:${peer}`,
          '--unsafe-no-fsync',
          '--log-level=warn',
        ],
        join(this.dir, 'logs', 'etcd.log'),
        { detached: this.#opts.detached, reaper: this.#reaper },
      );
      await waitReady(m, async () => (await fetch(`${this.etcdUrl}/health`)).ok, READY_TIMEOUT_MS);
      return m;
    });
  }

  /** Starts (or restarts, after stopApiserver) kube-apiserver against the same etcd and certs. */
  async startApiserver(): Promise<void> {
    if (this.#apiserver && this.#apiserver.child.exitCode === null && this.#apiserver.child.signalCode === null) return;
    const keepPort = this.#apiPort;
    this.#apiserver = await this.#startWithPorts('kube-apiserver', async () => {
      this.#apiPort = keepPort && this.#apiserver ? keepPort : await freePort();
      const pki = join(this.dir, 'pki');
      const m = startLogged(
        'kube-apiserver',
        this.binaries['kube-apiserver'],
        [
          `--etcd-servers=${this.etcdUrl}`,
          `--secure-port=${this.#apiPort}`,
          '--bind-address=127.0.0.1',
          '--advertise-address=127.0.0.1',
          '--endpoint-reconciler-type=none',
          `--cert-dir=${pki}`,
          `--token-auth-file=${join(pki, 'tokens.csv')}`,
          '--authorization-mode=RBAC',
          '--service-cluster-ip-range=10.0.0.0/24',
          '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
          `--service-account-key-file=${join(pki, 'sa.pub')}`,
          `--service-account-signing-key-file=${join(pki, 'sa.key')}`,
          '--etcd-compaction-interval=0',
          '--enable-priority-and-fairness=false',
          '--profiling=false',
          '--event-ttl=1h',
          ...(this.#opts.apiserverArgs ?? []),
        ],
        join(this.dir, 'logs', 'kube-apiserver.log'),
        { detached: this.#opts.detached, reaper: this.#reaper },
      );
      await waitReady(m, () => this.#apiReady(), READY_TIMEOUT_MS);
      return m;
    });
    await writeFile(this.kubeconfig, kubeconfigJson(this.server, this.#caPem, 'admin', this.tokens.admin), {
      mode: 0o600,
    });
  }

  async #apiReady(): Promise<boolean> {
    if (!this.#caPem) {
      // kube-apiserver writes a self-signed CA and serving cert (SANs include 127.0.0.1) into --cert-dir.
      const bundle = await readFile(join(this.dir, 'pki', 'apiserver.crt'), 'utf8').catch(() => '');
      if (!bundle) return false;
      this.#caPem = bundle;
    }
    const res = await fetch(`${this.server}/readyz`, {
      headers: { authorization: `Bearer ${this.tokens.admin}` },
      dispatcher: (this.#readyAgent ??= new Agent({ connect: { ca: this.#caPem } })),
      signal: AbortSignal.timeout(2000),
    });
    await res.body?.cancel();
    return res.ok;
  }

  /** Stops kube-apiserver only (etcd keeps the data): tests use it to break watches. */
  async stopApiserver(): Promise<void> {
    if (this.#apiserver) await stopProcess(this.#apiserver);
  }

  async #startControllerManager(): Promise<void> {
    const kc = await this.kubeconfigFor('admin');
    this.#kcm = startLogged(
      'kube-controller-manager',
      this.binaries['kube-controller-manager'],
      [
        `--kubeconfig=${kc}`,
        `--controllers=${KCM_CONTROLLERS.join(',')}`,
        '--leader-elect=false',
        '--use-service-account-credentials=false',
        // The token controller signs legacy token Secrets with the key the apiserver verifies.
        `--service-account-private-key-file=${join(this.dir, 'pki', 'sa.key')}`,
        '--secure-port=0',
        '--concurrent-gc-syncs=5',
      ],
      join(this.dir, 'logs', 'kube-controller-manager.log'),
      { detached: this.#opts.detached, reaper: this.#reaper },
    );
    // The GC has no readiness endpoint when serving is off; tests wait for its effects with eventually().
    await Promise.race([
      this.#kcm.exited.then((c) => {
        throw new Error(`kube-controller-manager exited (code ${c}); see ${this.#kcm?.logFile}`);
      }),
      new Promise((r) => setTimeout(r, 500)),
    ]);
  }

  /** kube-scheduler with the admin identity; resolves when its /readyz says its informers are synced. */
  async #startScheduler(): Promise<void> {
    const kc = await this.kubeconfigFor('admin');
    const certDir = join(this.dir, 'pki', 'scheduler');
    const config = join(this.dir, 'kube-scheduler.json');
    await writeFile(
      config,
      JSON.stringify({
        apiVersion: 'kubescheduler.config.k8s.io/v1',
        kind: 'KubeSchedulerConfiguration',
        clientConnection: { kubeconfig: kc },
        leaderElection: { leaderElect: false },
        enableProfiling: false,
      }),
    );
    this.#scheduler = await this.#startWithPorts('kube-scheduler', async () => {
      const port = await freePort();
      const m = startLogged(
        'kube-scheduler',
        this.binaries['kube-scheduler'],
        [`--config=${config}`, '--bind-address=127.0.0.1', `--secure-port=${port}`, `--cert-dir=${certDir}`],
        join(this.dir, 'logs', 'kube-scheduler.log'),
        { detached: this.#opts.detached, reaper: this.#reaper },
      );
      await waitReady(m, () => schedulerReady(port, join(certDir, 'kube-scheduler.crt')), READY_TIMEOUT_MS);
      return m;
    });
  }

  /** Compacts etcd to its current revision, so a watch from any older resourceVersion gets 410 Gone. */
  async compactEtcd(): Promise<number> {
    const range = await fetch(`${this.etcdUrl}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: 'AA==' }) });
    const { header } = (await range.json()) as { header: { revision: string } };
    const res = await fetch(`${this.etcdUrl}/v3/kv/compaction`, {
      method: 'POST',
      body: JSON.stringify({ revision: header.revision, physical: true }),
    });
    if (!res.ok) throw new Error(`etcd compaction failed: ${res.status} ${await res.text()}`);
    return Number(header.revision);
  }

  /** Stops every process this control plane started, newest first. Safe to call twice. */
  async stop(): Promise<void> {
    for (const m of [this.#scheduler, this.#kcm, this.#apiserver, this.#etcd]) if (m) await stopProcess(m);
    await this.#readyAgent?.close();
    this.#reaper?.close();
  }
}

/** kube-scheduler's /readyz (informers synced, handlers registered), trusting the CA it wrote into --cert-dir. */
async function schedulerReady(port: number, certFile: string): Promise<boolean> {
  const agent = new Agent({ connect: { ca: await readFile(certFile, 'utf8') } });
  try {
    const res = await fetch(`https://127.0.0.1:${port}/readyz`, {
      dispatcher: agent,
      signal: AbortSignal.timeout(2000),
    });
    await res.body?.cancel();
    return res.ok;
  } finally {
    await agent.close();
  }
}

function kubeconfigJson(server: string, caPem: string, user: string, token: string): string {
  return JSON.stringify(
    {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        {
          name: 'modelcache',
          cluster: { server, 'certificate-authority-data': Buffer.from(caPem).toString('base64') },
        },
      ],
      users: [{ name: user, user: { token } }],
      contexts: [{ name: user, context: { cluster: 'modelcache', user } }],
      'current-context': user,
    },
    null,
    2,
  );
}
