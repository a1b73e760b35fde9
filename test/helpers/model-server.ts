import { access } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

export interface RepositoryCall {
  verb: 'load' | 'unload';
  model: string;
}

/**
 * A small V2 model server: records repository load/unload calls; a load succeeds only when the
 * model's folder is in the model directory (as a real server would need), or fails as scripted.
 */
export class V2ModelServer {
  readonly calls: RepositoryCall[] = [];
  readonly loaded = new Set<string>();
  /** Model name → error message: its loads answer 500 with it. */
  readonly failLoad = new Map<string, string>();
  readonly #server: Server;
  url = '';

  private constructor(modelDir: string) {
    this.#server = createServer((req, res) => {
      const m = /^\/v2\/repository\/models\/([^/]+)\/(load|unload)$/.exec(req.url ?? '');
      if (req.method !== 'POST' || !m) return void res.writeHead(404).end();
      const model = decodeURIComponent(m[1]!);
      const verb = m[2] as 'load' | 'unload';
      this.calls.push({ verb, model });
      const json = (status: number, body: unknown): void =>
        void res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      if (verb === 'unload') {
        this.loaded.delete(model);
        return json(200, {});
      }
      const failure = this.failLoad.get(model);
      if (failure) return json(500, { error: failure });
      void access(join(modelDir, model)).then(
        () => {
          this.loaded.add(model);
          json(200, {});
        },
        () => json(400, { error: `model folder ${model} not found` }),
      );
    });
  }

  static async start(modelDir: string): Promise<V2ModelServer> {
    const s = new V2ModelServer(modelDir);
    await new Promise<void>((r) => s.#server.listen(0, '127.0.0.1', r));
    s.url = `http://127.0.0.1:${(s.#server.address() as AddressInfo).port}`;
    return s;
  }

  callsFor(model: string): string[] {
    return this.calls.filter((c) => c.model === model).map((c) => c.verb);
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise((r) => this.#server.close(r));
  }
}
