import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { InferenceService } from '../../api/kserve.ts';
import { selectRuntimes, type RuntimeCandidate, type RuntimeRequest } from '../../serving/runtime-selection.ts';
import { memoryLimit, mmsVerdict, predictorOf } from '../../serving/isvc.ts';

const rt = (name: string, namespaced: boolean, formats: Array<{ name: string; version?: string; autoSelect?: boolean; priority?: number }>, extra: Partial<RuntimeCandidate['spec']> = {}): RuntimeCandidate => ({ name, namespaced, spec: { supportedModelFormats: formats, ...extra } });

const runtimes: RuntimeCandidate[] = [
  rt('ns-sklearn', true, [{ name: 'sklearn', version: '1', autoSelect: true, priority: 1 }]),
  rt('cluster-sklearn', false, [{ name: 'sklearn', version: '1', autoSelect: true, priority: 1 }]),
  rt('cluster-sklearn-hi', false, [{ name: 'sklearn', autoSelect: true, priority: 5 }]),
  rt('manual-only', true, [{ name: 'sklearn', autoSelect: false, priority: 9 }]),
  rt('disabled', true, [{ name: 'sklearn', autoSelect: true, priority: 10 }], { disabled: true }),
  rt('mms-triton', false, [{ name: 'onnx', autoSelect: true }, { name: 'tensorflow', version: '2', autoSelect: true }], { multiModel: true, protocolVersions: ['v2', 'grpc-v2'] }),
  rt('mms-sklearn', true, [{ name: 'sklearn', autoSelect: true }], { multiModel: true }),
  rt('v2-only', true, [{ name: 'xgboost', autoSelect: true }], { protocolVersions: ['v2'] }),
];

const cases: Array<[string, RuntimeRequest, string[]]> = [
  ['priority first, namespaced before cluster at equal priority; disabled, manual and multi-model left out', { format: { name: 'sklearn' }, multiModel: false }, ['cluster-sklearn-hi', 'ns-sklearn', 'cluster-sklearn']],
  ['a version: runtimes with another major version are left out, unversioned formats still match', { format: { name: 'sklearn', version: '2' }, multiModel: false }, ['cluster-sklearn-hi']],
  ['a version "1.3" matches a runtime that says "1"', { format: { name: 'sklearn', version: '1.3' }, multiModel: false }, ['cluster-sklearn-hi', 'ns-sklearn', 'cluster-sklearn']],
  ['format names compare without case', { format: { name: 'SKLearn' }, multiModel: true }, ['mms-sklearn']],
  ['a named runtime needs no autoSelect', { format: { name: 'sklearn' }, multiModel: false, runtimeName: 'manual-only' }, ['manual-only']],
  ['a named runtime that is disabled is not selected', { format: { name: 'sklearn' }, multiModel: false, runtimeName: 'disabled' }, []],
  ['a named runtime that does not support the format is not selected', { format: { name: 'onnx' }, multiModel: true, runtimeName: 'mms-sklearn' }, []],
  ['multi-model needs multiModel: true and the protocol', { format: { name: 'onnx' }, multiModel: true, protocolVersion: 'v2' }, ['mms-triton']],
  ['protocol v1 is not served by a v2-only runtime', { format: { name: 'onnx' }, multiModel: true }, []],
  ['runtimes without protocolVersions serve v1 only', { format: { name: 'xgboost' }, multiModel: false, protocolVersion: 'v1' }, []],
  ['v2 request finds the v2 runtime', { format: { name: 'xgboost' }, multiModel: false, protocolVersion: 'v2' }, ['v2-only']],
  ['tensorflow 2.15 on a runtime that says 2', { format: { name: 'tensorflow', version: '2.15' }, multiModel: true, protocolVersion: 'v2' }, ['mms-triton']],
];

for (const [name, req, want] of cases) {
  test(`runtime selection: ${name}`, () => {
    assert.deepEqual(selectRuntimes(req, runtimes).map((r) => r.name), want);
  });
}

const isvc = (predictor: Record<string, unknown>): InferenceService => ({ metadata: { name: 'x', namespace: 'ns' }, spec: { predictor } });

test('IsMMSPredictor, predictor format and memory limit as KServe reads them', () => {
  assert.equal(mmsVerdict(isvc({ model: { modelFormat: { name: 'sklearn' }, resources: { limits: { memory: '2Gi' } } } })).ok, true);
  assert.match(mmsVerdict(isvc({ model: { modelFormat: { name: 'sklearn' }, storageUri: 's3://b/m' } })).message, /predictor.model.storageUri is set/);
  assert.equal(mmsVerdict(isvc({ sklearn: {} })).ok, true);
  assert.equal(mmsVerdict(isvc({ huggingface: {} })).ok, false);
  assert.equal(mmsVerdict(isvc({ containers: [{ name: 'c' }] })).ok, false);
  assert.equal(mmsVerdict(isvc({ containers: [{ name: 'c', env: [{ name: 'MULTI_MODEL_SERVER', value: 'true' }] }] })).ok, true);
  assert.equal(mmsVerdict(isvc({})).ok, false);
  assert.deepEqual(predictorOf(isvc({ xgboost: { runtime: 'r' } }))?.format, { name: 'xgboost' });
  assert.equal(predictorOf(isvc({ model: { modelFormat: { name: 'onnx' }, protocolVersion: 'v2' } }))?.protocolVersion, 'v2');
  assert.equal(memoryLimit(isvc({ model: { resources: { limits: { memory: '2Gi' } } } })), 2 * 2 ** 30);
  assert.equal(memoryLimit(isvc({ model: {} })), undefined);
});
