// Keeps the CA of the webhooks' serving certificate in the named MutatingWebhookConfiguration's caBundle
// (level-based: re-applied whenever the configuration or the CA changes, e.g. after a `kubectl apply` reset it).
import type { Logger } from 'pino';
import type { KubeClient } from '../../kube/client.ts';
import { Informer } from '../../kube/informer.ts';
import { MUTATING_WEBHOOK_CONFIGURATIONS } from '../../kube/resources.ts';
import type { KubeObject } from '../../kube/types.ts';
import type { JsonPatchOp } from './admission.ts';
import { SerialPasses } from './serial.ts';

// Defined in kube/resources.ts; re-exported only until test/integration/webhooks.test.ts imports it from there.

export interface WebhookConfiguration extends KubeObject {
  webhooks?: Array<{ name: string; clientConfig?: { caBundle?: string } }>;
}

/** JSON patch setting every webhook's caBundle; each op guarded by a test of the webhook's name at that index. */
export function caBundlePatch(config: WebhookConfiguration, caPem: string): JsonPatchOp[] {
  const bundle = Buffer.from(caPem).toString('base64');
  const ops: JsonPatchOp[] = [];
  (config.webhooks ?? []).forEach((w, i) => {
    if (w.clientConfig?.caBundle === bundle) return;
    ops.push({ op: 'test', path: `/webhooks/${i}/name`, value: w.name });
    ops.push({ op: 'add', path: `/webhooks/${i}/clientConfig/caBundle`, value: bundle });
  });
  return ops;
}

/** Watches one configuration by name and patches its caBundle when it differs from the CA. */
export class CaBundleKeeper {
  readonly #client: KubeClient;
  readonly #name: string;
  readonly #log: Logger;
  readonly #config: Informer<WebhookConfiguration>;
  readonly #passes: SerialPasses;
  #ca: string | undefined;

  constructor(client: KubeClient, name: string, log: Logger) {
    this.#client = client;
    this.#name = name;
    this.#log = log;
    this.#config = new Informer<WebhookConfiguration>(client, MUTATING_WEBHOOK_CONFIGURATIONS, {
      fieldSelector: `metadata.name=${name}`,
      log,
    });
    this.#passes = new SerialPasses(
      (signal) => this.#pass(signal),
      (err) =>
        log.warn(
          { configuration: name, err: String((err as Error)?.message ?? err) },
          'could not write the webhook caBundle; will retry',
        ),
    );
  }

  /** The CA to publish (from the serving certificate's Secret). */
  setCa(caPem: string, signal: AbortSignal): void {
    this.#ca = caPem;
    this.#passes.kick(signal);
  }

  async run(signal: AbortSignal): Promise<void> {
    const kick = (): void => this.#passes.kick(signal);
    this.#config.on({ add: kick, update: kick });
    await this.#config.start(signal);
    await this.#passes.idle();
  }

  async #pass(signal: AbortSignal): Promise<void> {
    const config = this.#config.get(this.#name);
    if (!config || !this.#ca) return;
    const patch = caBundlePatch(config, this.#ca);
    if (!patch.length) return;
    await this.#client.request('PATCH', this.#client.path(MUTATING_WEBHOOK_CONFIGURATIONS, { name: this.#name }), {
      body: patch,
      contentType: 'application/json-patch+json',
      query: { fieldManager: 'modelcache' },
      signal,
    });
    this.#log.info({ configuration: this.#name }, 'webhook caBundle written');
  }
}
