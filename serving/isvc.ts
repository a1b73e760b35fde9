// Facts about an InferenceService's predictor that registration depends on (pure).
import type { Container, InferenceService, ModelFormat, PredictorImpl } from '../api/kserve.ts';
import { parseQuantity } from '../api/quantity.ts';

/** Predictor keys that name an implementation (KServe's framework shortcuts and `model`). */
const IMPLEMENTATIONS = [
  'model',
  'sklearn',
  'xgboost',
  'tensorflow',
  'pytorch',
  'triton',
  'onnx',
  'pmml',
  'lightgbm',
  'paddle',
  'huggingface',
];

export interface Predictor {
  /** `model`, a framework key, or `containers` for a custom predictor. */
  key: string;
  impl: PredictorImpl | Container;
  format?: ModelFormat;
  runtime?: string;
  protocolVersion: string;
}

export function predictorOf(isvc: InferenceService): Predictor | undefined {
  const p = isvc.spec?.predictor ?? {};
  for (const key of IMPLEMENTATIONS) {
    const impl = p[key] as PredictorImpl | undefined;
    if (!impl || typeof impl !== 'object') continue;
    const format = impl.modelFormat ?? (key !== 'model' ? { name: key } : undefined);
    return {
      key,
      impl,
      ...(format ? { format } : {}),
      ...(impl.runtime ? { runtime: impl.runtime } : {}),
      protocolVersion: impl.protocolVersion ?? 'v1',
    };
  }
  const first = p.containers?.[0];
  return first ? { key: 'containers', impl: first, protocolVersion: 'v1' } : undefined;
}

/** KServe's IsMMSPredictor: no storage of its own and not huggingface, or a custom container with MULTI_MODEL_SERVER=true. */
export function mmsVerdict(isvc: InferenceService): { ok: boolean; message: string } {
  const p = predictorOf(isvc);
  if (!p) return { ok: false, message: 'the InferenceService has no predictor' };
  if (p.key === 'containers') {
    const on = p.impl.env?.some((e) => e.name === 'MULTI_MODEL_SERVER' && e.value === 'true');
    return on
      ? { ok: true, message: 'custom predictor with MULTI_MODEL_SERVER=true' }
      : {
          ok: false,
          message: 'a custom predictor container must set env MULTI_MODEL_SERVER=true to take TrainedModels',
        };
  }
  if (p.key === 'huggingface')
    return { ok: false, message: 'huggingface predictors serve one model; they cannot take TrainedModels' };
  const impl = p.impl as PredictorImpl;
  const own = ['storageUri', 'storage', 'storageUris'].filter((f) => impl[f as keyof PredictorImpl] !== undefined);
  if (own.length)
    return {
      ok: false,
      message: `predictor.${p.key}.${own[0]} is set: a predictor with its own model is not multi-model; remove it to use TrainedModels`,
    };
  return { ok: true, message: `predictor.${p.key} has no storage of its own` };
}

/** The predictor's memory limit in bytes, when it sets one. */
export function memoryLimit(isvc: InferenceService): number | undefined {
  const v = predictorOf(isvc)?.impl.resources?.limits?.memory;
  return v === undefined ? undefined : parseQuantity(v, 'predictor memory limit');
}

export function isReady(isvc: InferenceService): boolean {
  return isvc.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}
