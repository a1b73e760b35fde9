// Where the apiserver is and how to authenticate, read the way kubectl reads it. Plain kubeconfigs
// (token, token file, client certificate, basic auth) and in-cluster config are read here;
// exec and auth-provider plugins are handed to client-node's KubeConfig, imported only then:
// importing client-node costs ~75 MiB of RSS, which a node daemon on every GPU node should not pay.
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { load } from 'js-yaml';

export interface LoadOptions {
  /** Path to a kubeconfig; else $KUBECONFIG, then in-cluster config, then ~/.kube/config. */
  kubeconfig?: string;
  context?: string;
  env?: NodeJS.ProcessEnv;
  /** Folder of the in-cluster service account files (tests point it elsewhere). */
  serviceAccountDir?: string;
}

interface TlsMaterial {
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
  rejectUnauthorized?: boolean;
  servername?: string;
}

/** How to reach and authenticate to one apiserver. */
export interface Connection {
  server: string;
  proxy?: string;
  tls(): Promise<TlsMaterial>;
  /** Authentication headers for one request (tokens from files are re-read as they rotate). */
  headers(): Promise<Record<string, string>>;
}

const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
const TOKEN_FILE_TTL_MS = 60_000;

interface ClusterEntry {
  server?: string;
  'certificate-authority'?: string;
  'certificate-authority-data'?: string;
  'insecure-skip-tls-verify'?: boolean;
  'tls-server-name'?: string;
  'proxy-url'?: string;
}
interface UserEntry {
  token?: string;
  tokenFile?: string;
  'client-certificate'?: string;
  'client-certificate-data'?: string;
  'client-key'?: string;
  'client-key-data'?: string;
  username?: string;
  password?: string;
  exec?: unknown;
  'auth-provider'?: unknown;
}
interface ContextEntry {
  cluster?: string;
  user?: string;
}
interface Merged {
  currentContext?: string;
  clusters: Map<string, ClusterEntry>;
  users: Map<string, UserEntry>;
  contexts: Map<string, ContextEntry>;
  files: string[];
}

const FILE_FIELDS = ['certificate-authority', 'client-certificate', 'client-key', 'tokenFile'] as const;

/** kubectl's merge: the first file to set a name (or current-context) wins; relative paths are relative to their file. */
function readKubeconfigs(files: string[]): Merged {
  const merged: Merged = { clusters: new Map(), users: new Map(), contexts: new Map(), files };
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      if (files.length > 1 && (err as NodeJS.ErrnoException).code === 'ENOENT') continue; // kubectl skips missing entries of KUBECONFIG
      throw new Error(`cannot read kubeconfig ${file}: ${(err as Error).message}`);
    }
    const doc = (load(text) ?? {}) as {
      'current-context'?: string;
      clusters?: Array<{ name: string; cluster?: ClusterEntry }>;
      users?: Array<{ name: string; user?: UserEntry }>;
      contexts?: Array<{ name: string; context?: ContextEntry }>;
    };
    merged.currentContext ||= doc['current-context'] || undefined;
    const fix = <T extends object>(entry: T | undefined): T => {
      const e = { ...(entry ?? {}) } as Record<string, unknown>;
      for (const f of FILE_FIELDS) if (typeof e[f] === 'string' && e[f]) e[f] = resolve(dirname(file), e[f] as string);
      return e as T;
    };
    for (const c of doc.clusters ?? []) if (!merged.clusters.has(c.name)) merged.clusters.set(c.name, fix(c.cluster));
    for (const u of doc.users ?? []) if (!merged.users.has(u.name)) merged.users.set(u.name, fix(u.user));
    for (const c of doc.contexts ?? []) if (!merged.contexts.has(c.name)) merged.contexts.set(c.name, c.context ?? {});
  }
  return merged;
}

/** A file read again at most once a minute (projected service-account tokens rotate). */
function cachedFile(path: string): () => Promise<string> {
  let value: { text: string; at: number } | undefined;
  return async () => {
    if (!value || Date.now() - value.at > TOKEN_FILE_TTL_MS)
      value = { text: (await readFile(path, 'utf8')).trim(), at: Date.now() };
    return value.text;
  };
}

function noCluster(): Error {
  return new Error('no Kubernetes cluster configured: pass --kubeconfig FILE, set KUBECONFIG, or run in a pod');
}

function inCluster(env: NodeJS.ProcessEnv, dir: string): Connection {
  const host = env.KUBERNETES_SERVICE_HOST!;
  const port = env.KUBERNETES_SERVICE_PORT || '443';
  const token = cachedFile(join(dir, 'token'));
  return {
    server: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
    tls: async () => ({ ca: await readFile(join(dir, 'ca.crt')) }),
    headers: async () => ({ authorization: `Bearer ${await token()}` }),
  };
}

function fromKubeconfig(m: Merged, context: string | undefined, opts: LoadOptions): Connection {
  const ctxName = context ?? m.currentContext;
  const ctx = ctxName ? m.contexts.get(ctxName) : undefined;
  if (context && !ctx) throw new Error(`context '${context}' is not in ${m.files.join(', ')}`);
  const cluster = ctx?.cluster ? m.clusters.get(ctx.cluster) : undefined;
  if (!cluster?.server) throw noCluster();
  const user: UserEntry = (ctx?.user ? m.users.get(ctx.user) : undefined) ?? {};
  if (user.exec || user['auth-provider']) return viaClientNode(opts, cluster.server);
  const b64 = (s: string): Buffer => Buffer.from(s, 'base64');
  const material = async (data: string | undefined, file: string | undefined): Promise<Buffer | undefined> =>
    data ? b64(data) : file ? readFile(file) : undefined;
  const tokenFile = user.tokenFile ? cachedFile(user.tokenFile) : undefined;
  return {
    server: cluster.server.replace(/\/$/, ''),
    ...(cluster['proxy-url'] ? { proxy: cluster['proxy-url'] } : {}),
    async tls() {
      const [ca, cert, key] = await Promise.all([
        material(cluster['certificate-authority-data'], cluster['certificate-authority']),
        material(user['client-certificate-data'], user['client-certificate']),
        material(user['client-key-data'], user['client-key']),
      ]);
      return {
        ...(ca ? { ca } : {}),
        ...(cert ? { cert } : {}),
        ...(key ? { key } : {}),
        ...(cluster['insecure-skip-tls-verify'] ? { rejectUnauthorized: false } : {}),
        ...(cluster['tls-server-name'] ? { servername: cluster['tls-server-name'] } : {}),
      };
    },
    async headers(): Promise<Record<string, string>> {
      const token = user.token || (tokenFile ? await tokenFile() : undefined);
      if (token) return { authorization: `Bearer ${token}` };
      if (user.username)
        return { authorization: `Basic ${Buffer.from(`${user.username}:${user.password ?? ''}`).toString('base64')}` };
      return {};
    },
  };
}

/** Exec and auth-provider plugins: client-node's KubeConfig runs them (and caches their tokens). */
function viaClientNode(opts: LoadOptions, server: string): Connection {
  const kc = (async () => {
    const { KubeConfig } = await import('@kubernetes/client-node');
    const k = new KubeConfig();
    if (opts.kubeconfig) k.loadFromFile(opts.kubeconfig);
    else k.loadFromDefault();
    if (opts.context) k.setCurrentContext(opts.context);
    return k;
  })();
  return {
    server: server.replace(/\/$/, ''),
    async tls() {
      const o: import('node:https').RequestOptions = {};
      await (await kc).applyToHTTPSOptions(o);
      return {
        ca: o.ca as Buffer | undefined,
        cert: o.cert as Buffer | undefined,
        key: o.key as Buffer | undefined,
        ...(o.rejectUnauthorized === false ? { rejectUnauthorized: false } : {}),
        ...(o.servername ? { servername: o.servername } : {}),
      };
    },
    async headers() {
      const o: import('node:https').RequestOptions = { headers: {} };
      await (await kc).applyToHTTPSOptions(o);
      return Object.fromEntries(
        Object.entries(o.headers ?? {})
          .filter(([, v]) => v !== undefined)
          .map(([k, v]) => [k.toLowerCase(), String(v)]),
      );
    },
  };
}

/** The connection kubectl would use: --kubeconfig, then $KUBECONFIG, then in-cluster, then ~/.kube/config. */
export function loadConnection(opts: LoadOptions = {}): Connection {
  const env = opts.env ?? process.env;
  if (opts.kubeconfig) return fromKubeconfig(readKubeconfigs([opts.kubeconfig]), opts.context, opts);
  if (env.KUBECONFIG)
    return fromKubeconfig(readKubeconfigs(env.KUBECONFIG.split(delimiter).filter(Boolean)), opts.context, opts);
  if (env.KUBERNETES_SERVICE_HOST) return inCluster(env, opts.serviceAccountDir ?? SERVICE_ACCOUNT_DIR);
  const home = join(env.HOME || homedir(), '.kube', 'config');
  if (!existsSync(home)) throw noCluster();
  return fromKubeconfig(readKubeconfigs([home]), opts.context, opts);
}
