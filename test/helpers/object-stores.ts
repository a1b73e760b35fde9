import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { access, constants } from 'node:fs/promises';
import { acquireLock, checkGo, goBuild } from '../../localcluster/binaries.ts';
import {
  freePort,
  Reaper,
  startLogged,
  stopProcess,
  waitReady,
  ProcessExitedError,
  type Managed,
} from '../../localcluster/processes.ts';

/** Object-store servers the source tests run against, built from their Go modules once per machine. */
export const STORE_SERVERS = {
  versitygw: {
    module: 'github.com/versity/versitygw',
    version: 'v1.8.0',
    pkg: 'github.com/versity/versitygw/cmd/versitygw',
  },
  'fake-gcs-server': {
    module: 'github.com/fsouza/fake-gcs-server',
    version: 'v1.56.1',
    pkg: 'github.com/fsouza/fake-gcs-server',
  },
} as const;

export type StoreServer = keyof typeof STORE_SERVERS;

function storeDir(name: StoreServer, env: NodeJS.ProcessEnv): string {
  const base = env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'modelcache', 'object-stores', `${name}-${STORE_SERVERS[name].version}`);
}

/** Path of the server binary, building it with `go build` the first time (about a minute each). */
export async function ensureStoreServer(
  name: StoreServer,
  env: NodeJS.ProcessEnv = process.env,
  log = (l: string) => process.stderr.write(`${l}\n`),
): Promise<string> {
  const dir = storeDir(name, env);
  const bin = join(dir, 'bin', name);
  const present = (): Promise<boolean> =>
    access(bin, constants.X_OK).then(
      () => true,
      () => false,
    );
  if (await present()) return bin;
  await mkdir(dir, { recursive: true });
  const release = await acquireLock(join(dir, '.build.lock'), log);
  try {
    if (await present()) return bin;
    checkGo(env);
    const s = STORE_SERVERS[name];
    const src = join(dir, 'src');
    await mkdir(src, { recursive: true });
    await writeFile(
      join(src, 'go.mod'),
      `module modelcache.local/${name}build\n\ngo 1.26.0\n\nrequire ${s.module} ${s.version}\n`,
    );
    await goBuild(src, [s.pkg], join(dir, 'bin'), name, env, log);
  } finally {
    await release();
  }
  return bin;
}

/** Starts a server on a kernel-picked port, retrying when another process took the port first. */
async function startOnFreePort(
  name: string,
  bin: string,
  args: (port: number) => string[],
  logFile: string,
  reaper: Reaper,
  ready: (port: number) => Promise<boolean>,
): Promise<{ managed: Managed; port: number }> {
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const managed = startLogged(name, bin, args(port), logFile, { reaper });
    try {
      await waitReady(managed, () => ready(port), 30_000);
      return { managed, port };
    } catch (err) {
      await stopProcess(managed);
      if (!(err instanceof ProcessExitedError && err.portInUse) || attempt >= 3) throw err;
    }
  }
}

export const S3_ACCESS_KEY = 'AKIAMODELCACHETEST';
export const S3_SECRET_KEY = 'modelcache-test-secret-key';

/**
 * A real S3-compatible server (versitygw, posix backend) on loopback: buckets are folders under
 * its root, objects are files, so tests place objects directly; every request must carry a valid
 * SigV4 signature for the root keys.
 */
export class S3Server {
  readonly endpoint: string;
  readonly root: string;
  readonly #managed: Managed;
  readonly #dir: string;
  private constructor(endpoint: string, root: string, dir: string, managed: Managed) {
    this.endpoint = endpoint;
    this.root = root;
    this.#dir = dir;
    this.#managed = managed;
  }

  static async start(reaper: Reaper, opts: { keepAlive?: boolean; dir?: string } = {}): Promise<S3Server> {
    const bin = await ensureStoreServer('versitygw');
    const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'modelcache-s3-')));
    const root = join(dir, 'root');
    await mkdir(root, { recursive: true });
    await mkdir(join(dir, 'meta'), { recursive: true });
    const args = (port: number): string[] => [
      '--access',
      S3_ACCESS_KEY,
      '--secret',
      S3_SECRET_KEY,
      '--port',
      `127.0.0.1:${port}`,
      '--quiet',
      ...(opts.keepAlive === false ? [] : ['--keep-alive']),
      'posix',
      '--sidecar',
      join(dir, 'meta'),
      root,
    ];
    const ready = async (port: number): Promise<boolean> =>
      (await fetch(`http://127.0.0.1:${port}/`).catch(() => undefined))?.status === 403;
    const { managed, port } = await startOnFreePort('versitygw', bin, args, join(dir, 'versitygw.log'), reaper, ready);
    return new S3Server(`http://127.0.0.1:${port}`, root, dir, managed);
  }

  async createBucket(bucket: string): Promise<void> {
    await mkdir(join(this.root, bucket), { recursive: true });
  }

  /** Places an object (bucket created if needed). */
  async putObject(bucket: string, key: string, data: Buffer | string): Promise<void> {
    const path = join(this.root, bucket, ...key.split('/'));
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, data);
  }

  async stop(): Promise<void> {
    await stopProcess(this.#managed);
    await rm(this.#dir, { recursive: true, force: true });
  }
}

/** fake-gcs-server over plain HTTP on loopback, objects seeded from a folder (one subfolder per bucket). */
export class GcsServer {
  readonly endpoint: string;
  readonly #managed: Managed;
  readonly #dir: string;
  private constructor(endpoint: string, dir: string, managed: Managed) {
    this.endpoint = endpoint;
    this.#dir = dir;
    this.#managed = managed;
  }

  /** `objects`: bucket → object name → bytes, loaded at start-up. */
  static async start(reaper: Reaper, objects: Record<string, Record<string, Buffer | string>>): Promise<GcsServer> {
    const bin = await ensureStoreServer('fake-gcs-server');
    const dir = await mkdtemp(join(tmpdir(), 'modelcache-gcs-'));
    const data = join(dir, 'data');
    await mkdir(data, { recursive: true });
    for (const [bucket, objs] of Object.entries(objects)) {
      await mkdir(join(data, bucket), { recursive: true });
      for (const [name, body] of Object.entries(objs)) {
        const path = join(data, bucket, ...name.split('/'));
        await mkdir(dirname(path), { recursive: true });
        await writeFile(path, body);
      }
    }
    const args = (port: number): string[] => [
      '-scheme',
      'http',
      '-host',
      '127.0.0.1',
      '-port',
      String(port),
      '-backend',
      'memory',
      '-data',
      data,
      '-public-host',
      `127.0.0.1:${port}`,
      '-log-level',
      'warn',
    ];
    const ready = async (port: number): Promise<boolean> =>
      (await fetch(`http://127.0.0.1:${port}/storage/v1/b`).catch(() => undefined))?.ok === true;
    const { managed, port } = await startOnFreePort(
      'fake-gcs-server',
      bin,
      args,
      join(dir, 'fake-gcs-server.log'),
      reaper,
      ready,
    );
    return new GcsServer(`http://127.0.0.1:${port}`, dir, managed);
  }

  async stop(): Promise<void> {
    await stopProcess(this.#managed);
    await rm(this.#dir, { recursive: true, force: true });
  }
}
