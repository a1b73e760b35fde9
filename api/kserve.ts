// KServe's own resources that modelcache reads (InferenceService, LLMInferenceService, ServingRuntime)
// and the TrainedModel it serves. Only the fields modelcache uses are typed.
import type { Condition, KubeObject, ResourceType } from '../kube/types.ts';
import type { FromSchema } from './from-schema.ts';
import type { trainedModelCrd } from './schema.ts';
import { GROUP, VERSION, type CrdProperties } from './types.ts';

export const TRAINED_MODELS: ResourceType = {
  group: GROUP,
  version: VERSION,
  plural: 'trainedmodels',
  kind: 'TrainedModel',
  namespaced: true,
};
export const INFERENCE_SERVICES: ResourceType = {
  group: GROUP,
  version: 'v1beta1',
  plural: 'inferenceservices',
  kind: 'InferenceService',
  namespaced: true,
};
/** KServe's LLMInferenceService: one model at spec.model.uri, served by pods from spec.template. */
export const LLM_INFERENCE_SERVICES: ResourceType = {
  group: GROUP,
  version: VERSION,
  plural: 'llminferenceservices',
  kind: 'LLMInferenceService',
  namespaced: true,
};
export const SERVING_RUNTIMES: ResourceType = {
  group: GROUP,
  version: VERSION,
  plural: 'servingruntimes',
  kind: 'ServingRuntime',
  namespaced: true,
};
export const CLUSTER_SERVING_RUNTIMES: ResourceType = {
  group: GROUP,
  version: VERSION,
  plural: 'clusterservingruntimes',
  kind: 'ClusterServingRuntime',
  namespaced: false,
};

type TrainedModelFields = CrdProperties<typeof trainedModelCrd>;
/** The parent InferenceService (same namespace) and the model: storageUri, framework, memory. */
export type TrainedModelSpec = FromSchema<TrainedModelFields['spec']>;
export type TrainedModelStatus = FromSchema<TrainedModelFields['status']>;

export interface TrainedModel extends KubeObject {
  spec: TrainedModelSpec;
  status?: TrainedModelStatus;
}

export interface ModelFormat {
  name: string;
  version?: string;
}

interface EnvVar {
  name: string;
  value?: string;
}

export interface Container {
  name?: string;
  env?: EnvVar[];
  resources?: { limits?: Record<string, string | number>; requests?: Record<string, string | number> };
}

/** One predictor implementation: `model:` or a framework key (sklearn, xgboost, …). */
export interface PredictorImpl extends Container {
  modelFormat?: ModelFormat;
  runtime?: string;
  storageUri?: string;
  storage?: unknown;
  storageUris?: unknown[];
  protocolVersion?: string;
}

export interface InferenceService extends KubeObject {
  spec: { predictor: Record<string, unknown> & { model?: PredictorImpl; containers?: Container[] } };
  status?: { url?: string; conditions?: Condition[] };
}

export interface LLMInferenceService extends KubeObject {
  spec?: { model?: { uri?: string }; template?: Record<string, unknown>; [field: string]: unknown };
}

export interface SupportedModelFormat {
  name: string;
  version?: string;
  autoSelect?: boolean;
  priority?: number;
}

export interface ServingRuntimeSpec {
  supportedModelFormats?: SupportedModelFormat[];
  multiModel?: boolean;
  disabled?: boolean;
  protocolVersions?: string[];
}

export interface ServingRuntime extends KubeObject {
  spec: ServingRuntimeSpec;
}
