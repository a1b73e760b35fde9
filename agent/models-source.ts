import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { KubeClient } from '../kube/client.ts';
import { Informer } from '../kube/informer.ts';
import { CONFIGMAPS } from '../kube/resources.ts';
import type { ConfigMap } from '../kube/types.ts';
import { MODELS_JSON } from '../serving/models-json.ts';

export interface ModelsSource {
  describe: string;
  /** models.json now, or undefined when there is none (yet). */
  read: () => Promise<string | undefined>;
  ready: () => boolean;
}

/** A mounted models.json (a ConfigMap volume): read on every pass, so its updates are seen. */
export function fileSource(path: string): ModelsSource {
  return {
    describe: path,
    ready: () => true,
    async read() {
      try {
        return await readFile(path, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw err;
      }
    },
  };
}

/** The InferenceService's ConfigMap, watched (one object, by name): changes wake the agent at once. */
export function configMapSource(
  client: KubeClient,
  namespace: string,
  name: string,
  onChange: () => void,
  log: Logger,
  signal: AbortSignal,
): ModelsSource {
  const informer = new Informer<ConfigMap>(client, CONFIGMAPS, {
    namespace,
    fieldSelector: `metadata.name=${name}`,
    log,
  });
  informer.on({ add: onChange, update: onChange, delete: onChange });
  void informer.start(signal);
  return {
    describe: `ConfigMap ${namespace}/${name}`,
    ready: () => informer.hasSynced,
    async read() {
      if (!informer.hasSynced) await informer.waitForSync(signal);
      return informer.get(`${namespace}/${name}`)?.data?.[MODELS_JSON];
    },
  };
}
