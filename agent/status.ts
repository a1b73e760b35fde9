import type { Logger } from 'pino';
import { TRAINED_MODELS, type TrainedModel } from '../api/kserve.ts';
import { API_VERSION } from '../api/types.ts';
import { isStatus, type KubeClient } from '../kube/client.ts';
import { rfc3339Now } from '../ops/time.ts';

/** Field manager of the agent: it owns only the ModelLoaded condition (the controller owns the rest). */
const AGENT_FIELD_MANAGER = 'modelcache-agent';

/** Reports each model's outcome as the ModelLoaded condition of its TrainedModel (server-side apply). */
export class LoadReporter {
  readonly #client: KubeClient;
  readonly #namespace: string;
  readonly #log: Logger;
  readonly #last = new Map<string, string>();

  constructor(client: KubeClient, namespace: string, log: Logger) {
    this.#client = client;
    this.#namespace = namespace;
    this.#log = log;
  }

  async report(name: string, loaded: boolean, reason: string, message: string, signal: AbortSignal): Promise<void> {
    const key = `${loaded}/${reason}/${message}`;
    if (this.#last.get(name) === key) return;
    const condition = {
      type: 'ModelLoaded',
      status: loaded ? 'True' : 'False',
      reason,
      message: message.slice(0, 1000),
      lastTransitionTime: rfc3339Now(),
    };
    try {
      await this.#client.apply<TrainedModel>(
        TRAINED_MODELS,
        {
          apiVersion: API_VERSION,
          kind: 'TrainedModel',
          metadata: { name, namespace: this.#namespace },
          status: { conditions: [condition] },
        } as unknown as TrainedModel,
        { subresource: 'status', fieldManager: AGENT_FIELD_MANAGER, signal },
      );
      this.#last.set(name, key);
    } catch (err) {
      // No TrainedModel of that name (models.json written by hand): nothing to report to.
      if (isStatus(err, 404)) this.#last.set(name, key);
      else
        this.#log.warn(
          { trainedModel: `${this.#namespace}/${name}`, err: String((err as Error).message) },
          'could not report ModelLoaded',
        );
    }
  }
}
