// KServe's multi-model config: the models.json that registration writes and the model agent reads (pure).

/** One entry of models.json, in KServe's shape. */
export interface ModelEntry {
  modelName: string;
  modelSpec: { storageUri: string; framework: string; memory: string };
}

/** The ConfigMap that holds an InferenceService's models.json (KServe's `modelconfig-<isvc>-<shard>`). */
export const configMapName = (isvc: string, shard = 0): string => `modelconfig-${isvc}-${shard}`;
export const MODELS_JSON = 'models.json';

/** Deterministic text: sorted by name, so an unchanged set never rewrites the ConfigMap. */
export function modelsJson(models: ModelEntry[]): string {
  return JSON.stringify(
    [...models].sort((a, b) => (a.modelName < b.modelName ? -1 : a.modelName > b.modelName ? 1 : 0)),
  );
}
