import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { readFile, stat } from 'node:fs/promises';
import { Reaper, startLogged, stopProcess, type Managed } from './processes.ts';
import { eventually } from './eventually.ts';

const BIN = fileURLToPath(new URL('../bin/modelcache.ts', import.meta.url));

export interface ModelcacheProcess {
  managed: Managed;
  /** Base URL of the ops server (/metrics, /healthz, /readyz), read from the start-up log line. */
  opsUrl: string;
  /** JSON log lines written so far. */
  logs(): Promise<Array<Record<string, unknown>>>;
  stop(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>;
}

/**
 * Runs `modelcache <args>` as a real process (Node 24 from this run), logging into `dir`; `opts.prefix` runs it
 * under a command that execs it in place, e.g. `ip netns exec <ns>` (localcluster/netns.ts).
 */
export async function startModelcache(
  name: string,
  args: string[],
  dir: string,
  reaper: Reaper,
  env?: NodeJS.ProcessEnv,
  opts: { prefix?: readonly string[] } = {},
): Promise<ModelcacheProcess> {
  const logFile = join(dir, `${name}.log`);
  // A restarted process appends to the same log: read only what this run writes.
  const from = await stat(logFile).then(
    (s) => s.size,
    () => 0,
  );
  const managed = startLogged(name, process.execPath, [BIN, ...args], logFile, {
    reaper,
    ...(env ? { env } : {}),
    ...(opts.prefix ? { prefix: opts.prefix } : {}),
  });
  const logs = async (): Promise<Array<Record<string, unknown>>> => {
    const text = (await readFile(logFile).catch(() => Buffer.alloc(0))).subarray(from).toString('utf8');
    return text
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  };
  const started = await eventually(
    async () => {
      if (managed.child.exitCode !== null) throw new Error(`${name} exited: ${await readFile(logFile, 'utf8')}`);
      const line = (await logs()).find((l) => typeof l.metrics === 'string');
      if (!line) throw new Error(`${name} has not logged its ops address yet`);
      return line;
    },
    { timeoutMs: 30_000 },
  );
  const opsUrl = String(started.metrics).replace(/\/metrics$/, '');
  return {
    managed,
    opsUrl,
    logs,
    async stop(signal = 'SIGTERM') {
      if (signal === 'SIGKILL') managed.child.kill('SIGKILL');
      await stopProcess(managed);
    },
  };
}
