import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseModelsJson, planAgent, specHash, type AgentState } from '../../agent/plan.ts';

const spec = (uri: string) => ({ storageUri: uri, framework: 'sklearn', memory: '1Gi' });
const desired = (entries: Array<[string, string]>) =>
  parseModelsJson(JSON.stringify(entries.map(([n, u]) => ({ modelName: n, modelSpec: spec(u) })))).models;
const state = (s: Partial<AgentState>): AgentState => ({
  desired: new Map(),
  onDisk: new Map(),
  loaded: new Map(),
  busy: new Set(),
  failures: new Map(),
  now: 1000,
  ...s,
});
const kinds = (s: AgentState) =>
  planAgent(s).actions.map(
    (a) => `${a.kind}:${a.kind === 'load' ? `${a.model.name}${a.present ? '(present)' : ''}` : a.name}`,
  );

test('agent plan: new models are fetched and loaded; a folder already holding the spec is loaded without a fetch', () => {
  const d = desired([
    ['a', 's3://b/a'],
    ['b', 's3://b/b'],
  ]);
  assert.deepEqual(kinds(state({ desired: d, onDisk: new Map([['b', specHash(spec('s3://b/b'))]]) })), [
    'load:a',
    'load:b(present)',
  ]);
});

test('agent plan: loaded at the same spec is left alone; a changed spec is unloaded first; removed models and stray folders go', () => {
  const d = desired([
    ['a', 's3://b/a2'],
    ['keep', 's3://b/k'],
  ]);
  const s = state({
    desired: d,
    loaded: new Map([
      ['a', specHash(spec('s3://b/a'))],
      ['keep', specHash(spec('s3://b/k'))],
      ['old', 'x'],
    ]),
    onDisk: new Map([
      ['stray', 'y'],
      ['old', 'x'],
    ]),
  });
  assert.deepEqual(kinds(s), ['unload:a', 'unload:old', 'remove:stray']);
});

test('agent plan: busy names wait; a failure is retried at its time, and at once when the spec changes', () => {
  const d = desired([
    ['a', 's3://b/a'],
    ['busy', 's3://b/x'],
  ]);
  const failures = new Map([['a', { hash: specHash(spec('s3://b/a')), retryAt: 5000 }]]);
  const plan = planAgent(state({ desired: d, failures, busy: new Set(['busy']) }));
  assert.deepEqual(plan.actions, []);
  assert.equal(plan.nextRetryAt, 5000);
  assert.deepEqual(kinds(state({ desired: d, failures, busy: new Set(['busy']), now: 6000 })), ['load:a']);
  assert.deepEqual(kinds(state({ desired: desired([['a', 's3://b/new']]), failures })), ['load:a']);
});

test('models.json: bad entries are skipped and named; a non-array is an error', () => {
  const { models, invalid } = parseModelsJson(
    JSON.stringify([
      { modelName: 'ok', modelSpec: spec('s3://b/ok') },
      { modelName: 'bad name', modelSpec: spec('s3://x') },
      { modelName: 'nouri', modelSpec: {} },
    ]),
  );
  assert.deepEqual([...models.keys()], ['ok']);
  assert.deepEqual(invalid, ['bad name', 'nouri']);
  assert.throws(() => parseModelsJson('{}'), /must be a JSON array/);
});
