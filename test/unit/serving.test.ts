import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { InferenceService, TrainedModel } from '../../api/kserve.ts';
import { planRegistration } from '../../controller/trained-model/plan.ts';
import { selectRuntimes, type RuntimeCandidate, type RuntimeRequest } from '../../serving/runtime-selection.ts';
import { memoryLimit, mmsVerdict, predictorOf } from '../../serving/isvc.ts';

const rt = (
  name: string,
  namespaced: boolean,
  formats: Array<{ name: string; version?: string; autoSelect?: boolean; priority?: number }>,
  extra: Partial<RuntimeCandidate['spec']> = {},
): RuntimeCandidate => ({ name, namespaced, spec: { supportedModelFormats: formats, ...extra } });

const runtimes: RuntimeCandidate[] = [
  rt('ns-sklearn', true, [{ name: 'sklearn', version: '1', autoSelect: true, priority: 1 }]),
  rt('cluster-sklearn', false, [{ name: 'sklearn', version: '1', autoSelect: true, priority: 1 }]),
  rt('cluster-sklearn-hi', false, [{ name: 'sklearn', autoSelect: true, priority: 5 }]),
  rt('manual-only', true, [{ name: 'sklearn', autoSelect: false, priority: 9 }]),
  rt('disabled', true, [{ name: 'sklearn', autoSelect: true, priority: 10 }], { disabled: true }),
  rt(
    'mms-triton',
    false,
    [
      { name: 'onnx', autoSelect: true },
      { name: 'tensorflow', version: '2', autoSelect: true },
    ],
    { multiModel: true, protocolVersions: ['v2', 'grpc-v2'] },
  ),
  rt('mms-sklearn', true, [{ name: 'sklearn', autoSelect: true }], { multiModel: true }),
  rt('v2-only', true, [{ name: 'xgboost', autoSelect: true }], { protocolVersions: ['v2'] }),
];

const cases: Array<[string, RuntimeRequest, string[]]> = [
  [
    'priority first, namespaced before cluster at equal priority; disabled, manual and multi-model left out',
    { format: { name: 'sklearn' }, multiModel: false },
    ['cluster-sklearn-hi', 'ns-sklearn', 'cluster-sklearn'],
  ],
  [
    'a version: runtimes with another major version are left out, unversioned formats still match',
    { format: { name: 'sklearn', version: '2' }, multiModel: false },
    ['cluster-sklearn-hi'],
  ],
  [
    'a version "1.3" matches a runtime that says "1"',
    { format: { name: 'sklearn', version: '1.3' }, multiModel: false },
    ['cluster-sklearn-hi', 'ns-sklearn', 'cluster-sklearn'],
  ],
  ['format names compare without case', { format: { name: 'SKLearn' }, multiModel: true }, ['mms-sklearn']],
  [
    'a named runtime needs no autoSelect',
    { format: { name: 'sklearn' }, multiModel: false, runtimeName: 'manual-only' },
    ['manual-only'],
  ],
  [
    'a named runtime that is disabled is not selected',
    { format: { name: 'sklearn' }, multiModel: false, runtimeName: 'disabled' },
    [],
  ],
  [
    'a named runtime that does not support the format is not selected',
    { format: { name: 'onnx' }, multiModel: true, runtimeName: 'mms-sklearn' },
    [],
  ],
  [
    'multi-model needs multiModel: true and the protocol',
    { format: { name: 'onnx' }, multiModel: true, protocolVersion: 'v2' },
    ['mms-triton'],
  ],
  ['protocol v1 is not served by a v2-only runtime', { format: { name: 'onnx' }, multiModel: true }, []],
  [
    'runtimes without protocolVersions serve v1 only',
    { format: { name: 'xgboost' }, multiModel: false, protocolVersion: 'v1' },
    [],
  ],
  [
    'v2 request finds the v2 runtime',
    { format: { name: 'xgboost' }, multiModel: false, protocolVersion: 'v2' },
    ['v2-only'],
  ],
  [
    'tensorflow 2.15 on a runtime that says 2',
    { format: { name: 'tensorflow', version: '2.15' }, multiModel: true, protocolVersion: 'v2' },
    ['mms-triton'],
  ],
];

for (const [name, req, want] of cases) {
  test(`runtime selection: ${name}`, () => {
    assert.deepEqual(
      selectRuntimes(req, runtimes).map((r) => r.name),
      want,
    );
  });
}

const isvc = (predictor: Record<string, unknown>): InferenceService => ({
  metadata: { name: 'x', namespace: 'ns' },
  spec: { predictor },
});

test('IsMMSPredictor, predictor format and memory limit as KServe reads them', () => {
  assert.equal(
    mmsVerdict(isvc({ model: { modelFormat: { name: 'sklearn' }, resources: { limits: { memory: '2Gi' } } } })).ok,
    true,
  );
  assert.match(
    mmsVerdict(isvc({ model: { modelFormat: { name: 'sklearn' }, storageUri: 's3://b/m' } })).message,
    /predictor.model.storageUri is set/,
  );
  assert.equal(mmsVerdict(isvc({ sklearn: {} })).ok, true);
  assert.equal(mmsVerdict(isvc({ huggingface: {} })).ok, false);
  assert.equal(mmsVerdict(isvc({ containers: [{ name: 'c' }] })).ok, false);
  assert.equal(
    mmsVerdict(isvc({ containers: [{ name: 'c', env: [{ name: 'MULTI_MODEL_SERVER', value: 'true' }] }] })).ok,
    true,
  );
  assert.equal(mmsVerdict(isvc({})).ok, false);
  assert.deepEqual(predictorOf(isvc({ xgboost: { runtime: 'r' } }))?.format, { name: 'xgboost' });
  assert.equal(
    predictorOf(isvc({ model: { modelFormat: { name: 'onnx' }, protocolVersion: 'v2' } }))?.protocolVersion,
    'v2',
  );
  assert.equal(memoryLimit(isvc({ model: { resources: { limits: { memory: '2Gi' } } } })), 2 * 2 ** 30);
  assert.equal(memoryLimit(isvc({ model: {} })), undefined);
});

test("registration: an unreadable memory (the model's or the predictor's limit) is a MemoryResourceAvailable=False condition naming it, not a silent refusal or a failing reconcile", () => {
  const isvc = (limit: string): InferenceService => ({
    metadata: { name: 'shared', namespace: 'ns', uid: 'u1' },
    spec: { predictor: { model: { modelFormat: { name: 'sklearn' }, resources: { limits: { memory: limit } } } } },
    status: {
      url: 'http://shared',
      conditions: [{ type: 'Ready', status: 'True', reason: 'Ready', message: '', lastTransitionTime: 't' }],
    },
  });
  const tm = (memory: string): TrainedModel => ({
    metadata: { name: 'm', namespace: 'ns', creationTimestamp: 't' },
    spec: { inferenceService: 'shared', model: { storageUri: 's3://b/m', framework: 'sklearn', memory } },
  });
  const runtimes: RuntimeCandidate[] = [rt('mms', true, [{ name: 'sklearn', autoSelect: true }], { multiModel: true })];
  const plan = (i: InferenceService, m: TrainedModel) =>
    planRegistration({
      namespace: 'ns',
      isvcName: 'shared',
      isvc: i,
      models: [m],
      runtimes,
      listed: undefined,
      now: 't',
    });
  const memCondition = (p: ReturnType<typeof plan>) =>
    p.statuses.get('m')?.conditions?.find((c) => c.type === 'MemoryResourceAvailable');
  const badModel = plan(isvc('1Gi'), tm('lots'));
  assert.deepEqual([memCondition(badModel)?.status, memCondition(badModel)?.reason], ['False', 'InvalidMemory']);
  assert.match(memCondition(badModel)?.message ?? '', /spec\.model\.memory: 'lots' is not a Kubernetes quantity/);
  assert.deepEqual(badModel.models, [], 'not registered');
  const badLimit = plan(isvc('much'), tm('10Mi'));
  assert.match(
    memCondition(badLimit)?.message ?? '',
    /InferenceService ns\/shared: predictor memory limit: 'much' is not a Kubernetes quantity/,
  );
  assert.equal(plan(isvc('1Gi'), tm('10Mi')).models?.length, 1, 'readable memory that fits is registered');
});
