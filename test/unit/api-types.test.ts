// The API types come from api/schema.ts. Most checks here are type-level: `tsc --noEmit -p .` (npm test's
// typecheck) fails when a derived type loses a field, gains one the schema lacks, or stops refusing a wrong one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { FromSchema } from '../../api/from-schema.ts';
import type { TrainedModelSpec } from '../../api/kserve.ts';
import { localModelCacheCrd, localModelNodeCrd } from '../../api/schema.ts';
import { MODEL_STATES, NODE_STATES } from '../../api/states.ts';
import type {
  CrdProperties,
  LocalModelCacheSpec,
  LocalModelInfo,
  LocalModelNodeGroupStatus,
  ModelState,
  NodeState,
  PersistentVolumeSpec,
} from '../../api/types.ts';

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function expectType<T extends true>(): T | undefined {
  return undefined;
}

test('a field added to a CRD schema appears in its type, required when the schema requires it', () => {
  const spec = localModelCacheCrd.spec.versions[0]?.schema.openAPIV3Schema.properties.spec;
  assert.ok(spec);
  const widened = {
    ...spec,
    required: [...spec.required, 'priority'],
    properties: { ...spec.properties, priority: { type: 'integer' }, note: { type: 'string', enum: ['a', 'b'] } },
  } as const;
  type Widened = FromSchema<typeof widened>;
  const value: Widened = { sourceModelUri: 's3://b/m', modelSize: '1Gi', nodeGroups: ['g'], priority: 3, note: 'a' };
  expectType<Equal<Widened['priority'], number>>();
  expectType<Equal<Widened['note'], 'a' | 'b' | undefined>>();
  // @ts-expect-error: a required field of the schema is required in the type.
  const missing: Widened = { sourceModelUri: 's3://b/m', modelSize: '1Gi', nodeGroups: ['g'] };
  assert.equal(value.priority, 3);
  assert.ok(missing);
});

test("the derived types say what the schema says: quantities, defaults, enums, PV specs' unknown fields", () => {
  expectType<Equal<LocalModelCacheSpec['modelSize'], string | number>>();
  expectType<Equal<LocalModelCacheSpec['serviceAccountName'], string | undefined>>();
  // storagePath has a default, so the apiserver always fills it in.
  expectType<Equal<LocalModelInfo['storagePath'], string>>();
  expectType<Equal<LocalModelInfo['modelSize'], number>>();
  expectType<Equal<NodeState, (typeof NODE_STATES)[number]>>();
  expectType<Equal<ModelState, (typeof MODEL_STATES)[number]>>();
  expectType<Equal<LocalModelNodeGroupStatus['used'], string | number | undefined>>();
  expectType<Equal<TrainedModelSpec['model']['framework'], string>>();
  const pv: PersistentVolumeSpec = { local: { path: '/models' }, claimRef: { name: 'kept as given' } };
  // @ts-expect-error: a closed object refuses a field the schema does not have.
  const typo: LocalModelCacheSpec = { sourceModelUri: 's3://b/m', modelSize: 1, nodeGroups: [], nodeGroup: 'g' };
  // @ts-expect-error: an enum refuses a value outside its list.
  const state: ModelState = 'ModelDeleted';
  assert.ok(pv && typo && state);
});

test('the CRD enums are the exported state lists', () => {
  const cache = localModelCacheCrd.spec.versions[0]?.schema.openAPIV3Schema.properties;
  const node: CrdProperties<typeof localModelNodeCrd> | undefined =
    localModelNodeCrd.spec.versions[0]?.schema.openAPIV3Schema.properties;
  assert.deepEqual(cache?.status.properties.nodeStatus.additionalProperties.enum, NODE_STATES);
  assert.deepEqual(node?.status.properties.modelStatus.additionalProperties.enum, MODEL_STATES);
});
