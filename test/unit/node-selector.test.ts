import { test } from 'node:test';
import assert from 'node:assert/strict';
import { matchNodeSelector } from '../../controller/placement/node-selector.ts';
import { groupMembership, groupStoragePath } from '../../controller/placement/group-spec.ts';
import type { NodeSelector, NodeSelectorRequirement, NodeSelectorTerm } from '../../api/types.ts';

const NODE = { name: 'node-a', labels: { 'kubernetes.io/hostname': 'node-a', gpus: '4', zone: 'z1' } };

const one = (...matchExpressions: NodeSelectorRequirement[]): NodeSelector => ({
  nodeSelectorTerms: [{ matchExpressions }],
});
const matches = (s: NodeSelector, node = NODE) => matchNodeSelector(s, node).matches;

test('In: the label is present with one of the values', () => {
  assert.ok(matches(one({ key: 'kubernetes.io/hostname', operator: 'In', values: ['node-b', 'node-a'] })));
  assert.ok(!matches(one({ key: 'kubernetes.io/hostname', operator: 'In', values: ['node-b'] })));
  assert.ok(!matches(one({ key: 'missing', operator: 'In', values: ['x'] })));
});

test('NotIn: a missing label counts as not in', () => {
  assert.ok(!matches(one({ key: 'zone', operator: 'NotIn', values: ['z1'] })));
  assert.ok(matches(one({ key: 'zone', operator: 'NotIn', values: ['z2'] })));
  assert.ok(matches(one({ key: 'missing', operator: 'NotIn', values: ['z1'] })));
});

test('Exists and DoesNotExist look at the key only', () => {
  assert.ok(matches(one({ key: 'zone', operator: 'Exists' })));
  assert.ok(!matches(one({ key: 'missing', operator: 'Exists' })));
  assert.ok(matches(one({ key: 'missing', operator: 'DoesNotExist' })));
  assert.ok(!matches(one({ key: 'zone', operator: 'DoesNotExist' })));
});

test('Gt and Lt compare integers, strictly', () => {
  assert.ok(matches(one({ key: 'gpus', operator: 'Gt', values: ['3'] })));
  assert.ok(!matches(one({ key: 'gpus', operator: 'Gt', values: ['4'] })));
  assert.ok(matches(one({ key: 'gpus', operator: 'Lt', values: ['10'] })), '4 < 10 as integers, not as text');
  assert.ok(!matches(one({ key: 'gpus', operator: 'Lt', values: ['4'] })));
  assert.ok(matches(one({ key: 'gpus', operator: 'Gt', values: ['-1'] })));
});

test('Gt and Lt against a label that is not an integer, or absent, match nothing', () => {
  assert.ok(!matches(one({ key: 'zone', operator: 'Gt', values: ['0'] })));
  assert.ok(!matches(one({ key: 'missing', operator: 'Lt', values: ['100'] })));
});

test('an invalid Gt value makes its term match nothing, and is reported', () => {
  for (const values of [['abc'], ['1.5'], ['1', '2'], [], ['99999999999999999999']]) {
    const r = matchNodeSelector(one({ key: 'gpus', operator: 'Gt', values }), NODE);
    assert.equal(r.matches, false, JSON.stringify(values));
    assert.match(r.errors[0] ?? '', /nodeSelectorTerms\[0\]\.matchExpressions: Gt on 'gpus' needs exactly one integer/);
  }
});

test('requirements of one term are ANDed', () => {
  const both = one({ key: 'zone', operator: 'In', values: ['z1'] }, { key: 'gpus', operator: 'Exists' });
  assert.ok(matches(both));
  const notBoth = one({ key: 'zone', operator: 'In', values: ['z1'] }, { key: 'missing', operator: 'Exists' });
  assert.ok(!matches(notBoth));
});

test('terms are ORed', () => {
  const terms: NodeSelectorTerm[] = [
    { matchExpressions: [{ key: 'zone', operator: 'In', values: ['z9'] }] },
    { matchExpressions: [{ key: 'zone', operator: 'In', values: ['z1'] }] },
  ];
  assert.ok(matches({ nodeSelectorTerms: terms }));
  assert.ok(!matches({ nodeSelectorTerms: [terms[0]!] }));
});

test('an empty terms list matches nothing, as in Kubernetes', () => {
  assert.ok(!matches({ nodeSelectorTerms: [] }));
});

test('an empty term matches nothing (and is not an error)', () => {
  const r = matchNodeSelector({ nodeSelectorTerms: [{}, { matchExpressions: [] }] }, NODE);
  assert.deepEqual(r, { matches: false, errors: [] });
});

test('an invalid term matches nothing while a valid term still selects', () => {
  const r = matchNodeSelector(
    {
      nodeSelectorTerms: [
        { matchExpressions: [{ key: 'zone', operator: 'In', values: [] }] },
        { matchExpressions: [{ key: 'zone', operator: 'Exists' }] },
      ],
    },
    NODE,
  );
  assert.equal(r.matches, true);
  assert.match(r.errors[0] ?? '', /In on 'zone' needs at least one value/);
});

test('Exists with values, an invalid key or label value, and an unknown operator are errors', () => {
  const err = (r: NodeSelectorRequirement) => matchNodeSelector(one(r), NODE).errors[0] ?? '';
  assert.match(err({ key: 'zone', operator: 'Exists', values: ['z1'] }), /Exists on 'zone' takes no values/);
  assert.match(err({ key: 'bad key', operator: 'Exists' }), /key 'bad key' is not a valid label key/);
  assert.match(err({ key: 'zone', operator: 'NotIn', values: ['no spaces'] }), /not a valid label value/);
  assert.match(
    err({ key: 'zone', operator: 'Near' as NodeSelectorRequirement['operator'], values: ['z1'] }),
    /operator 'Near' is not one of/,
  );
});

test('matchFields: metadata.name with In or NotIn and one value', () => {
  const byName = (operator: 'In' | 'NotIn', name: string): NodeSelector => ({
    nodeSelectorTerms: [{ matchFields: [{ key: 'metadata.name', operator, values: [name] }] }],
  });
  assert.ok(matches(byName('In', 'node-a')));
  assert.ok(!matches(byName('In', 'node-b')));
  assert.ok(matches(byName('NotIn', 'node-b')));
  assert.ok(!matches(byName('NotIn', 'node-a')));
});

test('matchFields on another field, with another operator or with two values is an error and matches nothing', () => {
  for (const r of [
    { key: 'metadata.uid', operator: 'In', values: ['x'] },
    { key: 'metadata.name', operator: 'Exists' },
    { key: 'metadata.name', operator: 'In', values: ['node-a', 'node-b'] },
  ] as NodeSelectorRequirement[]) {
    const m = matchNodeSelector({ nodeSelectorTerms: [{ matchFields: [r] }] }, NODE);
    assert.equal(m.matches, false, JSON.stringify(r));
    assert.match(m.errors[0] ?? '', /matchFields/);
  }
});

test('matchExpressions and matchFields of one term are ANDed', () => {
  const term: NodeSelectorTerm = {
    matchExpressions: [{ key: 'zone', operator: 'In', values: ['z1'] }],
    matchFields: [{ key: 'metadata.name', operator: 'In', values: ['node-a'] }],
  };
  assert.ok(matches({ nodeSelectorTerms: [term] }));
  assert.ok(!matches({ nodeSelectorTerms: [term] }, { name: 'node-b', labels: NODE.labels }));
});

const affinity = (hosts: string[]) => ({
  nodeAffinity: {
    required: {
      nodeSelectorTerms: [
        { matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In' as const, values: hosts }] },
      ],
    },
  },
});

test('group membership: nodeAffinity alone, nodeSelector alone, both must match when both are set', () => {
  assert.ok(groupMembership({ storageLimit: '1Gi', persistentVolumeSpec: affinity(['node-a']) }, NODE).member);
  assert.ok(!groupMembership({ storageLimit: '1Gi', persistentVolumeSpec: affinity(['node-b']) }, NODE).member);
  assert.ok(groupMembership({ storageLimit: '1Gi', nodeSelector: { matchLabels: { zone: 'z1' } } }, NODE).member);
  const both = (zone: string, hosts: string[]) =>
    groupMembership(
      { storageLimit: '1Gi', nodeSelector: { matchLabels: { zone } }, persistentVolumeSpec: affinity(hosts) },
      NODE,
    ).member;
  assert.ok(both('z1', ['node-a']));
  assert.ok(!both('z2', ['node-a']), 'affinity matches, selector does not');
  assert.ok(!both('z1', ['node-b']), 'selector matches, affinity does not');
});

test('group membership: a group with neither selects no node and says why', () => {
  const m = groupMembership({ storageLimit: '1Gi', persistentVolumeSpec: { local: { path: '/models' } } }, NODE);
  assert.equal(m.member, false);
  assert.match(m.errors[0] ?? '', /neither nodeSelector nor persistentVolumeSpec.nodeAffinity.required/);
});

test('storage path: storagePath, else local.path, else hostPath.path, else the default', () => {
  const pv = { local: { path: '/local' }, hostPath: { path: '/host' } };
  assert.equal(groupStoragePath({ storageLimit: 1, storagePath: '/ours', persistentVolumeSpec: pv }), '/ours');
  assert.equal(groupStoragePath({ storageLimit: 1, persistentVolumeSpec: pv }), '/local');
  assert.equal(groupStoragePath({ storageLimit: 1, persistentVolumeSpec: { hostPath: { path: '/host' } } }), '/host');
  assert.equal(groupStoragePath({ storageLimit: 1, nodeSelector: {} }), '/var/lib/modelcache');
});
