// The apiserver, which listens on the root namespace's loopback, reachable at the same https://127.0.0.1:<port>
// inside each simulated node namespace (its serving certificate is for 127.0.0.1, so kubeconfigs work unchanged):
// a forwarder in each namespace relays its loopback port to a Unix socket (the filesystem is shared across network
// namespaces), and one relay here takes that socket to the apiserver. No address is added to the root namespace.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { relay, type Relay } from './forwarder.ts';
import type { NetnsHost } from './netns.ts';
import { startLogged, stopProcess, waitReady, type Managed, type Reaper } from './processes.ts';

const FORWARDER = fileURLToPath(new URL('./forwarder.ts', import.meta.url));
const READY_TIMEOUT_MS = 20_000;

export class ApiserverRelay {
  readonly #root: Relay;
  readonly #forwarders: Managed[];

  private constructor(root: Relay, forwarders: Managed[]) {
    this.#root = root;
    this.#forwarders = forwarders;
  }

  /** Relays `server` (https://127.0.0.1:PORT) into every host's namespace; files (socket, logs) go to `dir`. */
  static async start(o: {
    server: string;
    hosts: readonly NetnsHost[];
    dir: string;
    reaper: Reaper;
  }): Promise<ApiserverRelay> {
    const url = new URL(o.server);
    if (url.hostname !== '127.0.0.1') throw new Error(`apiserver ${o.server}: expected one on 127.0.0.1`);
    const port = Number(url.port);
    const socket = join(o.dir, 'apiserver.sock');
    const root = await relay({ path: socket }, { host: '127.0.0.1', port });
    const forwarders: Managed[] = [];
    const r = new ApiserverRelay(root, forwarders);
    try {
      for (const h of o.hosts) {
        const log = join(o.dir, `forwarder-${h.ns}.log`);
        const m = startLogged(
          `forwarder-${h.ns}`,
          process.execPath,
          [FORWARDER, `tcp:127.0.0.1:${port}`, `unix:${socket}`],
          log,
          {
            reaper: o.reaper,
            prefix: h.exec,
          },
        );
        forwarders.push(m);
      }
      // Listening once it says so (it logs after listen() succeeded).
      await Promise.all(
        forwarders.map((m) =>
          waitReady(m, async () => (await readFile(m.logFile, 'utf8')).includes('"relaying"'), READY_TIMEOUT_MS),
        ),
      );
    } catch (err) {
      await r.close();
      throw err;
    }
    return r;
  }

  /** Stops the forwarders and the relay. Safe to call twice. */
  async close(): Promise<void> {
    await Promise.all(this.#forwarders.map((m) => stopProcess(m)));
    await this.#root.close();
  }
}
