// What registration decides for one InferenceService and its TrainedModels (pure).
import type { InferenceService, TrainedModel, TrainedModelStatus } from '../../api/kserve.ts';
import { parseQuantity } from '../../api/quantity.ts';
import type { Condition } from '../../kube/types.ts';
import { isReady, memoryLimit, mmsVerdict, predictorOf } from '../../serving/isvc.ts';
import { configMapName, type ModelEntry } from '../../serving/models-json.ts';
import { selectRuntimes, supportsFormat, type RuntimeCandidate } from '../../serving/runtime-selection.ts';
import { findCondition, mergeConditions, sameJson, type ConditionInput } from '../conditions.ts';
import { oldestFirst } from '../oldest-first.ts';

export interface RegistrationInput {
  namespace: string;
  isvcName: string;
  isvc?: InferenceService;
  /** The TrainedModels whose spec.inferenceService names it. */
  models: TrainedModel[];
  /** ServingRuntimes of the namespace and ClusterServingRuntimes. */
  runtimes: RuntimeCandidate[];
  /** What models.json lists now: a model already there stays while the InferenceService is briefly not Ready. */
  listed: ModelEntry[] | undefined;
  now: string;
}

export interface RegistrationPlan {
  /** models.json content (sorted by name), or undefined when there is no multi-model InferenceService to hold it. */
  models?: ModelEntry[];
  /** Status to write per TrainedModel name (only those that differ from what is there). */
  statuses: Map<string, TrainedModelStatus>;
}

/** Conditions registration writes; ModelLoaded belongs to the model agent. */
export const REGISTRATION_CONDITIONS = [
  'InferenceServiceReady',
  'IsMMSPredictor',
  'FrameworkSupported',
  'MemoryResourceAvailable',
  'Ready',
];

const c = (type: string, ok: boolean | 'unknown', reason: string, message: string): ConditionInput => ({
  type,
  status: ok === 'unknown' ? 'Unknown' : ok ? 'True' : 'False',
  reason,
  message,
});

/**
 * Registration of an InferenceService's TrainedModels, oldest first: the parent must exist, be
 * Ready (or already list the model), be multi-model, have a runtime that supports the model's
 * framework, and the memory of the accepted models must fit the predictor's memory limit.
 */
export function planRegistration(input: RegistrationInput): RegistrationPlan {
  const { isvc, isvcName, namespace } = input;
  const statuses = new Map<string, TrainedModelStatus>();
  const accepted: ModelEntry[] = [];
  const where = `InferenceService ${namespace}/${isvcName}`;
  const mms = isvc ? mmsVerdict(isvc) : undefined;
  const ready = isvc ? isReady(isvc) : false;
  let limit: number | undefined;
  let limitProblem: string | undefined;
  try {
    limit = isvc ? memoryLimit(isvc) : undefined;
  } catch (err) {
    limitProblem = `${where}: ${(err as Error).message}`;
  }
  const predictor = isvc ? predictorOf(isvc) : undefined;
  const runtime = predictor?.format
    ? selectRuntimes(
        {
          format: predictor.format,
          multiModel: true,
          protocolVersion: predictor.protocolVersion,
          ...(predictor.runtime ? { runtimeName: predictor.runtime } : {}),
        },
        input.runtimes,
      )[0]
    : undefined;
  const listed = new Set((input.listed ?? []).map((e) => e.modelName));
  let used = 0;

  for (const tm of [...input.models].sort(oldestFirst)) {
    const name = tm.metadata.name ?? '';
    if (tm.metadata.deletionTimestamp) continue;
    const conds: ConditionInput[] = [];
    let ok = true;
    if (!isvc) {
      conds.push(
        c(
          'InferenceServiceReady',
          false,
          'InferenceServiceNotFound',
          `${where} does not exist: create it or fix spec.inferenceService`,
        ),
      );
      ok = false;
    } else {
      const stays = listed.has(name);
      conds.push(
        ready
          ? c('InferenceServiceReady', true, 'Ready', `${where} is Ready`)
          : c(
              'InferenceServiceReady',
              false,
              'InferenceServiceNotReady',
              stays
                ? `${where} is not Ready; the model stays registered`
                : `${where} is not Ready yet; the model is registered once it is`,
            ),
      );
      if (!ready && !stays) ok = false;
      conds.push(c('IsMMSPredictor', mms!.ok, mms!.ok ? 'MultiModel' : 'NotMultiModel', mms!.message));
      if (!mms!.ok) ok = false;
      const framework = { name: tm.spec.model.framework };
      if (predictor?.key === 'containers') {
        conds.push(
          c('FrameworkSupported', true, 'CustomPredictor', 'custom predictor container: the framework is not checked'),
        );
      } else if (!runtime) {
        conds.push(
          c(
            'FrameworkSupported',
            false,
            'RuntimeNotFound',
            `no multi-model ServingRuntime serves ${where}${predictor?.runtime ? ` (runtime ${predictor.runtime})` : predictor?.format ? ` (format ${predictor.format.name})` : ''}`,
          ),
        );
        ok = false;
      } else if (!(runtime.spec.supportedModelFormats ?? []).some((f) => supportsFormat(f, framework))) {
        const formats = (runtime.spec.supportedModelFormats ?? []).map((f) => f.name).join(', ');
        conds.push(
          c(
            'FrameworkSupported',
            false,
            'FrameworkNotSupported',
            `runtime ${runtime.name} of ${where} serves ${formats || 'no formats'}, not ${framework.name}`,
          ),
        );
        ok = false;
      } else {
        conds.push(c('FrameworkSupported', true, 'Supported', `runtime ${runtime.name} serves ${framework.name}`));
      }
      let bytes = 0;
      let memoryProblem = limitProblem;
      try {
        bytes = parseQuantity(tm.spec.model.memory, 'spec.model.memory');
      } catch (err) {
        memoryProblem ??= (err as Error).message;
      }
      if (memoryProblem) {
        conds.push(c('MemoryResourceAvailable', false, 'InvalidMemory', memoryProblem));
        ok = false;
      } else if (ok && limit !== undefined && used + bytes > limit) {
        conds.push(
          c(
            'MemoryResourceAvailable',
            false,
            'MemoryLimitExceeded',
            `${tm.spec.model.memory} does not fit: ${used} of ${limit} bytes of the predictor's memory limit are taken by older TrainedModels`,
          ),
        );
        ok = false;
      } else if (ok) {
        used += bytes;
        conds.push(
          c(
            'MemoryResourceAvailable',
            true,
            'Fits',
            limit === undefined
              ? 'the predictor sets no memory limit'
              : `${used} of ${limit} bytes of the predictor's memory limit in use`,
          ),
        );
      } else {
        conds.push(c('MemoryResourceAvailable', 'unknown', 'NotChecked', 'checked once the other conditions hold'));
      }
    }
    const loaded = findCondition(tm.status?.conditions, 'ModelLoaded');
    if (ok) {
      accepted.push({
        modelName: name,
        modelSpec: {
          storageUri: tm.spec.model.storageUri,
          framework: tm.spec.model.framework,
          memory: String(tm.spec.model.memory),
        },
      });
      conds.push(
        loaded?.status === 'True'
          ? c('Ready', true, 'Loaded', loaded.message)
          : c(
              'Ready',
              false,
              loaded?.status === 'False' ? 'LoadFailed' : 'ModelNotLoaded',
              loaded?.status === 'False'
                ? loaded.message
                : `registered in ConfigMap ${configMapName(isvcName)}; waiting for the model agent to load it`,
            ),
      );
    } else {
      const failing = conds.find((x) => x.status !== 'True');
      conds.push(c('Ready', false, failing?.reason ?? 'NotRegistered', failing?.message ?? 'not registered'));
    }
    const url =
      ok && isvc?.status?.url
        ? predictor?.protocolVersion === 'v2'
          ? `${isvc.status.url}/v2/models/${name}/infer`
          : `${isvc.status.url}/v1/models/${name}:predict`
        : undefined;
    const conditions: Condition[] = mergeConditions(tm.status?.conditions, conds, input.now);
    const status: TrainedModelStatus = { ...tm.status, conditions, observedGeneration: tm.metadata.generation };
    if (url) status.url = url;
    else delete status.url;
    if (!sameJson(status, tm.status)) statuses.set(name, status);
  }
  const models = isvc && mms?.ok ? accepted : undefined;
  return { ...(models ? { models } : {}), statuses };
}
