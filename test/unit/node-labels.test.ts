import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { LocalModelInfo, LocalModelNode, ModelState } from '../../api/types.ts';
import { storageKeyFor } from '../../api/storage-key.ts';
import { planNodeLabels } from '../../controller/node-labels/plan.ts';
import { modelNodeLabel } from '../../serving/cache-match.ts';
import { node, reportedNode } from '../helpers/fixtures.ts';

const uri = (m: string): string => `s3://b/${m}`;
const label = (m: string): string => modelNodeLabel(storageKeyFor(uri(m)));

function wanted(...models: string[]): LocalModelInfo[] {
  return models.map((m) => ({
    sourceModelUri: uri(m),
    modelName: m,
    modelSize: 1,
    storagePath: '/var/lib/modelcache',
    storageKey: storageKeyFor(uri(m)),
  }));
}

/** A LocalModelNode of node n1 whose daemon reports those states, each in its model's folder. */
function reports(models: Record<string, ModelState>): LocalModelNode {
  const lmn = reportedNode('n1', models);
  const details = Object.fromEntries(Object.keys(models).map((m) => [m, { storageKey: storageKeyFor(uri(m)) }]));
  return { ...lmn, status: { ...lmn.status, models: details } };
}

test('a wanted model whose copy is complete gets its label; one still downloading, pending or failed does not', () => {
  const plan = planNodeLabels({
    node: node('n1', { zone: 'a' }),
    wanted: wanted('done', 'busy', 'queued', 'broken'),
    localModelNode: reports({
      done: 'ModelDownloaded',
      busy: 'ModelDownloading',
      queued: 'ModelDownloadPending',
      broken: 'ModelDownloadError',
    }),
  });
  assert.deepEqual(plan.labels, { [label('done')]: 'true' });
  assert.deepEqual(plan.patch, { [label('done')]: 'true' });
});

test('a complete copy that is no longer wanted loses its label at once, before its files are gone', () => {
  const plan = planNodeLabels({
    node: node('n1', { zone: 'a', [label('old')]: 'true' }),
    wanted: [],
    localModelNode: reports({ old: 'ModelDownloaded' }),
  });
  assert.deepEqual(plan.labels, {});
  assert.deepEqual(plan.patch, { [label('old')]: null });
});

test('a copy that went (removed, failed) loses its label; a model label nobody planned is removed too', () => {
  const plan = planNodeLabels({
    node: node('n1', { [label('gone')]: 'true', [label('failed')]: 'true', 'models.modelcache.io/stray': 'true' }),
    wanted: wanted('gone', 'failed'),
    localModelNode: reports({ failed: 'ModelDownloadError' }),
  });
  assert.deepEqual(plan.patch, {
    [label('gone')]: null,
    [label('failed')]: null,
    'models.modelcache.io/stray': null,
  });
});

test('labels outside models.modelcache.io/ are never in the patch, whatever they are', () => {
  const plan = planNodeLabels({
    node: node('n1', { 'kubernetes.io/hostname': 'n1', 'modelcache.io/pool': 'gpu', 'models.example.com/x': 'true' }),
    wanted: wanted('a'),
    localModelNode: reports({ a: 'ModelDownloaded' }),
  });
  assert.deepEqual(plan.patch, { [label('a')]: 'true' });
});

test('steady state: a node that already carries exactly its labels needs no patch', () => {
  const plan = planNodeLabels({
    node: node('n1', { zone: 'a', [label('a')]: 'true' }),
    wanted: wanted('a', 'b'),
    localModelNode: reports({ a: 'ModelDownloaded', b: 'ModelDownloading' }),
  });
  assert.deepEqual(plan, { labels: { [label('a')]: 'true' } });
});

test('a model label with another value than "true" is set to "true"', () => {
  const plan = planNodeLabels({
    node: node('n1', { [label('a')]: 'false' }),
    wanted: wanted('a'),
    localModelNode: reports({ a: 'ModelDownloaded' }),
  });
  assert.deepEqual(plan.patch, { [label('a')]: 'true' });
});

test('a report of another folder under the same cache name (another URI once cached so) is not this copy', () => {
  const lmn = reports({ a: 'ModelDownloaded' });
  const stale = { ...lmn, status: { ...lmn.status, models: { a: { storageKey: storageKeyFor('s3://b/other') } } } };
  const plan = planNodeLabels({ node: node('n1', {}), wanted: wanted('a'), localModelNode: stale });
  assert.deepEqual(plan, { labels: {} });
});

test("a LocalModelNode of an earlier Node of that name (another uid) says nothing about this node's disk", () => {
  const lmn = reports({ a: 'ModelDownloaded' });
  const earlier = {
    ...lmn,
    metadata: { ...lmn.metadata, ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: 'n1', uid: 'uid-before' }] },
  };
  const plan = planNodeLabels({
    node: node('n1', { [label('a')]: 'true' }),
    wanted: wanted('a'),
    localModelNode: earlier,
  });
  assert.deepEqual(plan.patch, { [label('a')]: null });
});

test('no LocalModelNode: no copy is known complete, so no model label stays', () => {
  const plan = planNodeLabels({
    node: node('n1', { [label('a')]: 'true' }),
    wanted: wanted('a'),
    localModelNode: undefined,
  });
  assert.deepEqual(plan.patch, { [label('a')]: null });
});

test('a node that is gone or being deleted is not patched', () => {
  assert.deepEqual(planNodeLabels({ node: undefined, wanted: wanted('a'), localModelNode: reports({}) }), {
    labels: {},
  });
  const leaving = node('n1', { [label('a')]: 'true' });
  leaving.metadata.deletionTimestamp = '2026-01-01T00:00:00Z';
  const plan = planNodeLabels({ node: leaving, wanted: [], localModelNode: reports({ a: 'ModelDownloaded' }) });
  assert.equal(plan.patch, undefined);
});
