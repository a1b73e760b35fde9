// The model origin (origin.ts) as a child process inside a network namespace, so its shaped link is the one
// downloads cross. It serves random bytes at the given paths and answers GET /bytes (bytes sent by path, JSON) on a
// control Unix socket, which the parent reaches through the shared filesystem from the root namespace.
import { randomFillSync } from 'node:crypto';
import { request, createServer } from 'node:http';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { relay } from './forwarder.ts';
import type { NetnsHost } from './netns.ts';
import { Origin } from './origin.ts';
import { startLogged, stopProcess, waitReady, type Reaper } from './processes.ts';

const SELF = fileURLToPath(import.meta.url);

interface ChildConfig {
  host: string;
  port: number;
  control: string;
  /** Path → size in bytes. */
  files: Record<string, number>;
}

export interface OriginProcess {
  url(path: string): string;
  /** Body bytes the origin has written for `path` so far. */
  bytesSent(path: string): Promise<number>;
  stop(): Promise<void>;
}

function getJson(socketPath: string, path: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, timeout: 5000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        try {
          if (res.statusCode !== 200) throw new Error(`origin control ${path}: HTTP ${res.statusCode}`);
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        } catch (err) {
          reject(err as Error);
        }
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`origin control ${path}: no answer in 5 s`)));
    req.on('error', reject);
    req.end();
  });
}

/** Starts the origin in `host`'s namespace on `host.ip:port`, serving random bytes of `files` (path → size). */
export async function startOriginProcess(o: {
  host: NetnsHost;
  port: number;
  files: Record<string, number>;
  dir: string;
  reaper: Reaper;
}): Promise<OriginProcess> {
  const control = join(o.dir, 'origin-control.sock');
  const config: ChildConfig = { host: o.host.ip, port: o.port, control, files: o.files };
  const m = startLogged('origin', process.execPath, [SELF, JSON.stringify(config)], join(o.dir, 'origin.log'), {
    reaper: o.reaper,
    prefix: o.host.exec,
  });
  try {
    await waitReady(m, async () => (await getJson(control, '/bytes')) !== undefined, 60_000);
  } catch (err) {
    await stopProcess(m);
    throw err;
  }
  return {
    url: (path) => `http://${o.host.ip}:${o.port}${path}`,
    bytesSent: async (path) =>
      Number((((await getJson(control, '/bytes')) as Record<string, number>) ?? {})[path] ?? 0),
    stop: () => stopProcess(m),
  };
}

/** The child: the origin on the namespace's loopback, a relay from its address, the control socket. */
async function serveInNamespace(c: ChildConfig): Promise<void> {
  const origin = await Origin.start();
  const bytes = randomFillSync(Buffer.allocUnsafe(Math.max(0, ...Object.values(c.files))));
  for (const [path, size] of Object.entries(c.files)) origin.set(path, bytes.subarray(0, size));
  const inner = new URL(origin.url('/'));
  const front = await relay({ host: c.host, port: c.port }, { host: '127.0.0.1', port: Number(inner.port) });
  await rm(c.control, { force: true });
  const ctl = createServer((req, res) => {
    if (req.url !== '/bytes') return void res.writeHead(404).end();
    res
      .writeHead(200, { 'content-type': 'application/json' })
      .end(JSON.stringify(Object.fromEntries(origin.bytesSent)));
  });
  await new Promise<void>((r) => ctl.listen(c.control, r));
  console.log(JSON.stringify({ msg: 'origin serving', at: `${c.host}:${c.port}`, files: c.files }));
  const stop = async (): Promise<void> => {
    await front.close();
    await origin.close();
    ctl.close();
    process.exit(0);
  };
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => void stop());
}

if (import.meta.main) await serveInNamespace(JSON.parse(process.argv[2] ?? '{}') as ChildConfig);
