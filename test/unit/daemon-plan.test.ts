import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planNode, startableKeys, type DiskState, type Failure, type InFlight } from '../../daemon/node-cache/plan.ts';
import type { LocalModelInfo } from '../../api/types.ts';
import type { Condition } from '../../kube/types.ts';
import { uriSha256 } from '../../disk/inventory.ts';

const model = (name: string, key = `k-${name}`, uri = `s3://b/${name}`): LocalModelInfo => ({
  sourceModelUri: uri,
  modelName: name,
  modelSize: 100,
  storagePath: '/x',
  storageKey: key,
});
const disk = (complete: Record<string, string> = {}, partial: string[] = []): DiskState => ({
  complete: new Map(
    Object.entries(complete).map(([k, uri]) => [
      k,
      { uriSha256: uriSha256(uri), bytes: 100, completedAt: '2026-11-22T00:00:00Z' },
    ]),
  ),
  partial: new Set(partial),
});
const NOW = 1_000_000;

test('daemon plan: downloads what is missing, reports complete ones Downloaded, never re-downloads them', () => {
  const plan = planNode({
    desired: [model('a'), model('b')],
    disk: disk({ 'k-a': 's3://b/a' }),
    inFlight: new Map(),
    failures: new Map(),
    reportedKeys: new Map(),
    now: NOW,
  });
  assert.deepEqual(plan.actions, [{ kind: 'download', model: model('b'), from: 'origin' }]);
  assert.deepEqual(plan.status.modelStatus, { a: 'ModelDownloaded', b: 'ModelDownloadPending' });
  assert.deepEqual(plan.status.summary, { models: 2, downloaded: 1, failed: 0, progress: '50%' });
});

test('daemon plan: a partial download is resumed (download action), one in flight is reported with progress', () => {
  const inFlight = new Map<string, InFlight>([
    ['k-b', { modelName: 'b', queued: false, uri: 's3://b/b', bytesDone: 40, bytesTotal: 100, startedAt: 't0' }],
  ]);
  const plan = planNode({
    desired: [model('a'), model('b')],
    disk: disk({}, ['k-a']),
    inFlight,
    failures: new Map(),
    reportedKeys: new Map(),
    now: NOW,
  });
  assert.deepEqual(plan.actions, [{ kind: 'download', model: model('a'), from: 'origin' }]);
  assert.equal(plan.status.modelStatus?.b, 'ModelDownloading');
  assert.equal(plan.status.models?.b?.bytesDone, 40);
  assert.equal(plan.status.summary?.progress, '20%', '40 of the 200 bytes the two models need');
});

test('daemon plan: failures wait for their retry time, then are tried again', () => {
  const failures = new Map<string, Failure>([
    ['k-a', { uri: 's3://b/a', reason: 'SourceNotFound', message: '404', retryAt: NOW + 5000 }],
  ]);
  const waiting = planNode({
    desired: [model('a')],
    disk: disk(),
    inFlight: new Map(),
    failures,
    reportedKeys: new Map(),
    now: NOW,
  });
  assert.deepEqual(waiting.actions, []);
  assert.equal(waiting.status.modelStatus?.a, 'ModelDownloadError');
  assert.equal(waiting.status.models?.a?.reason, 'SourceNotFound');
  assert.equal(waiting.nextRetryAt, NOW + 5000);
  const later = planNode({
    desired: [model('a')],
    disk: disk(),
    inFlight: new Map(),
    failures,
    reportedKeys: new Map(),
    now: NOW + 6000,
  });
  assert.equal(later.actions[0]?.kind, 'download');
});

test('daemon plan: unwanted files are removed and their status entry stays until they are gone; unwanted downloads are cancelled', () => {
  const inFlight = new Map<string, InFlight>([
    ['k-c', { modelName: 'c', queued: false, uri: 's3://b/c', bytesDone: 1, startedAt: 't0' }],
  ]);
  const reportedKeys = new Map([
    ['old', 'k-old'],
    ['c', 'k-c'],
    ['gone', 'k-gone'],
  ]);
  const plan = planNode({
    desired: [],
    disk: disk({ 'k-old': 's3://b/old' }, ['k-stray']),
    inFlight,
    failures: new Map(),
    reportedKeys,
    now: NOW,
  });
  assert.deepEqual(
    plan.actions.sort((x, y) => (JSON.stringify(x) < JSON.stringify(y) ? -1 : 1)),
    [
      { kind: 'cancel', storageKey: 'k-c' },
      { kind: 'remove', storageKey: 'k-old' },
      { kind: 'remove', storageKey: 'k-stray' },
    ],
  );
  assert.deepEqual(
    Object.keys(plan.status.modelStatus ?? {}).sort(),
    ['c', 'old'],
    "'gone' has no files left: its entry is dropped",
  );
});

test('daemon plan: a folder holding another URI is replaced', () => {
  const plan = planNode({
    desired: [model('a', 'k-a', 's3://b/new')],
    disk: disk({ 'k-a': 's3://b/old' }),
    inFlight: new Map(),
    failures: new Map(),
    reportedKeys: new Map(),
    now: NOW,
  });
  assert.deepEqual(plan.actions, [{ kind: 'remove', storageKey: 'k-a' }]);
  assert.equal(plan.status.modelStatus?.a, 'ModelDownloadPending');
});

test('daemon plan: on a node being removed nothing new starts; models wait Pending with the reason, running ones go on', () => {
  const inFlight = new Map<string, InFlight>([
    ['k-b', { modelName: 'b', queued: false, uri: 's3://b/b', bytesDone: 40, startedAt: 't0' }],
  ]);
  const plan = planNode({
    desired: [model('a'), model('b')],
    disk: disk(),
    inFlight,
    failures: new Map(),
    reportedKeys: new Map(),
    now: NOW,
    paused: 'node n1 has taint ToBeDeletedByClusterAutoscaler',
  });
  assert.deepEqual(plan.actions, []);
  assert.equal(plan.status.modelStatus?.a, 'ModelDownloadPending');
  assert.equal(plan.status.models?.a?.message, 'not started: node n1 has taint ToBeDeletedByClusterAutoscaler');
  assert.equal(plan.status.modelStatus?.b, 'ModelDownloading');
});

test('daemon plan: an absent LocalModelNode is not an empty one: files and downloads stay for the grace period, then go', () => {
  const inFlight = new Map<string, InFlight>([
    ['k-c', { modelName: 'c', queued: false, uri: 's3://b/c', bytesDone: 1, startedAt: 't0' }],
  ]);
  const o = {
    desired: [],
    disk: disk({ 'k-a': 's3://b/a' }, ['k-b']),
    inFlight,
    failures: new Map(),
    reportedKeys: new Map(),
    specMissingSince: NOW - 1000,
    orphanGraceMs: 60_000,
  };
  const held = planNode({ ...o, now: NOW });
  assert.deepEqual(held.actions, []);
  assert.equal(held.nextRetryAt, NOW + 59_000, 'looked at again when the grace ends');
  const after = planNode({ ...o, now: NOW + 59_000 });
  assert.deepEqual(after.actions.map((a) => `${a.kind} ${'storageKey' in a ? a.storageKey : ''}`).sort(), [
    'cancel k-c',
    'remove k-a',
    'remove k-b',
  ]);
  const empty = planNode({ ...o, specMissingSince: undefined, now: NOW });
  assert.equal(empty.actions.length, 3, 'an empty spec (the controller asking) removes at once');
});

test('daemon plan: a failure not retried until the spec changes stays an error and asks for no requeue', () => {
  const failures = new Map<string, Failure>([
    ['k-a', { uri: 's3://b/a', reason: 'InvalidUri', message: 'bad', retryAt: undefined }],
  ]);
  const plan = planNode({
    desired: [model('a')],
    disk: disk(),
    inFlight: new Map(),
    failures,
    reportedKeys: new Map(),
    now: NOW + 10 ** 12,
  });
  assert.deepEqual(plan.actions, []);
  assert.equal(plan.status.modelStatus?.a, 'ModelDownloadError');
  assert.equal(plan.status.models?.a?.reason, 'InvalidUri');
  assert.equal(plan.nextRetryAt, undefined);
});

test('daemon plan: a model whose group path is not the host path of --root is reported StoragePathMismatch, not downloaded', () => {
  const elsewhere = { ...model('a'), storagePath: '/mnt/other', nodeGroup: 'gpus' };
  const here = { ...model('b'), storagePath: '/var/lib/modelcache/' };
  const plan = planNode({
    desired: [elsewhere, here],
    disk: disk(),
    inFlight: new Map(),
    failures: new Map(),
    reportedKeys: new Map(),
    now: NOW,
    hostRoot: '/var/lib/modelcache',
  });
  assert.deepEqual(
    plan.actions,
    [{ kind: 'download', model: here, from: 'origin' }],
    'a trailing slash is the same directory',
  );
  assert.equal(plan.status.modelStatus?.a, 'ModelDownloadError');
  const detail = plan.status.models?.a;
  assert.equal(detail?.reason, 'StoragePathMismatch');
  assert.match(detail?.message ?? '', /\/mnt\/other.*\/var\/lib\/modelcache/);
  assert.equal(plan.status.summary?.failed, 1);
});

test('daemon plan: a mismatched group path is the condition StoragePathMatches False naming the group, both paths and the fix; none when all match', () => {
  const elsewhere = { ...model('a'), storagePath: '/mnt/other', nodeGroup: 'gpus' };
  const also = { ...model('c'), storagePath: '/mnt/other', nodeGroup: 'gpus' };
  const here = { ...model('b'), storagePath: '/var/lib/modelcache', nodeGroup: 'cpus' };
  const observe = (desired: LocalModelInfo[], now: number, reportedConditions?: Condition[]) =>
    planNode({
      desired,
      disk: disk(),
      inFlight: new Map(),
      failures: new Map(),
      reportedKeys: new Map(),
      now,
      hostRoot: '/var/lib/modelcache',
      ...(reportedConditions ? { reportedConditions } : {}),
    });
  const first = observe([elsewhere, also, here], NOW).status.conditions ?? [];
  assert.equal(first.length, 1);
  const c = first[0];
  assert.equal(c?.type, 'StoragePathMatches');
  assert.equal(c?.status, 'False');
  assert.equal(c?.reason, 'StoragePathMismatch');
  assert.equal(c?.lastTransitionTime, new Date(NOW).toISOString());
  assert.match(
    c?.message ?? '',
    /node group gpus keeps its models in \/mnt\/other .*--root is mounted from \/var\/lib\/modelcache/,
  );
  assert.match(
    c?.message ?? '',
    /Mount \/mnt\/other as the daemon's root .* or set the group's storage path to \/var\/lib\/modelcache/,
  );
  assert.equal((c?.message ?? '').match(/node group gpus/g)?.length, 1, 'a group is named once, however many models');

  const later = observe([elsewhere, here], NOW + 60_000, first).status.conditions;
  assert.deepEqual(later, first, 'an unchanged condition keeps its transition time (no write per pass)');

  assert.equal(observe([here], NOW + 60_000, first).status.conditions, undefined, 'all paths match: no condition');
  assert.equal(observe([], NOW).status.conditions, undefined);
});

const sized = (name: string, bytes: number): LocalModelInfo => ({ ...model(name), modelSize: bytes });
const capacity = (freeBytes: number, reservedBytes = 0, marginBytes = 0) => ({
  path: '/cache',
  freeBytes,
  reservedBytes,
  marginBytes,
});

test('daemon plan: free minus reserved bytes decides: what does not fit is InsufficientCapacity with the numbers, not started', () => {
  const plan = planNode({
    desired: [sized('a', 200), sized('b', 200), sized('c', 50)],
    disk: disk(),
    inFlight: new Map(),
    failures: new Map(),
    reportedKeys: new Map(),
    now: NOW,
    capacity: capacity(1000, 600, 100),
  });
  assert.deepEqual(
    plan.actions.map((a) => (a.kind === 'download' ? a.model.modelName : a.kind)),
    ['a', 'c'],
    '300 bytes available: a takes 200, b does not fit in the 100 left, c does',
  );
  assert.deepEqual(plan.status.modelStatus, {
    a: 'ModelDownloadPending',
    b: 'ModelDownloadError',
    c: 'ModelDownloadPending',
  });
  assert.equal(plan.status.models?.b?.reason, 'InsufficientCapacity');
  assert.equal(
    plan.status.models?.b?.message,
    'needs 200 but only 100 is available on /cache (1000 free, 800 reserved by downloads in flight, 100 safety margin)',
  );
  assert.equal(plan.status.summary?.failed, 1);
  assert.equal(plan.nextRetryAt, undefined, 'looked at again when capacity is read next, not on a timer of its own');
});

test('daemon plan: a resume needs only the bytes still to come, a folder to adopt none; running ones are not measured', () => {
  const inFlight = new Map<string, InFlight>([
    ['k-r', { modelName: 'r', queued: false, uri: 's3://b/r', bytesDone: 10, startedAt: 't0' }],
  ]);
  const o = {
    desired: [sized('a', 500), sized('b', 500), sized('r', 500)],
    disk: { ...disk({}, ['k-a', 'k-r']), unmarked: new Set(['k-b']) },
    inFlight,
    failures: new Map(),
    reportedKeys: new Map(),
    now: NOW,
    capacity: capacity(100),
  };
  assert.deepEqual(startableKeys(o), ['k-a', 'k-b'], 'the shell measures the partial bytes of these only');
  const measured = planNode({ ...o, disk: { ...o.disk, partialBytes: new Map([['k-a', 450]]) } });
  assert.deepEqual(
    measured.actions.map((a) => (a.kind === 'download' ? `${a.model.modelName} from ${a.from}` : a.kind)),
    ['a from origin', 'b from origin'],
  );
  const unmeasured = planNode(o);
  assert.equal(unmeasured.status.models?.a?.reason, 'InsufficientCapacity', 'a partial key not measured needs it all');
  assert.match(unmeasured.status.models?.a?.message ?? '', /^needs 500 but only 100 is available/);
});

test('daemon plan: on a node being removed a model that would not fit is Pending with the pause, not a capacity error', () => {
  const plan = planNode({
    desired: [sized('a', 500)],
    disk: disk(),
    inFlight: new Map(),
    failures: new Map(),
    reportedKeys: new Map(),
    now: NOW,
    paused: 'node n1 is being deleted',
    capacity: capacity(0),
  });
  assert.equal(plan.status.modelStatus?.a, 'ModelDownloadPending');
  assert.equal(plan.status.models?.a?.message, 'not started: node n1 is being deleted');
});

test('daemon plan: last use is carried: a wanted model is used now, one only on disk keeps its time, one gone is forgotten', () => {
  const plan = planNode({
    desired: [model('a'), model('b')],
    disk: disk({ 'k-a': 's3://b/a', 'k-old': 's3://b/old' }, ['k-part']),
    inFlight: new Map(),
    failures: new Map(),
    reportedKeys: new Map(),
    now: NOW,
    lastUse: new Map([
      ['k-a', NOW - 50],
      ['k-old', NOW - 7000],
      ['k-part', NOW - 8000],
      ['k-gone', NOW - 9000],
      ['k-served', NOW + 5],
    ]),
    specMissingSince: NOW,
    orphanGraceMs: 60_000,
  });
  assert.deepEqual(
    [...plan.lastUse].sort(([x], [y]) => (x < y ? -1 : 1)),
    [
      ['k-a', NOW],
      ['k-b', NOW],
      ['k-old', NOW - 7000],
      ['k-part', NOW - 8000],
    ],
  );
  const served = planNode({
    desired: [model('a')],
    disk: disk({ 'k-a': 's3://b/a' }),
    inFlight: new Map(),
    failures: new Map(),
    reportedKeys: new Map(),
    now: NOW,
    lastUse: new Map([['k-a', NOW + 5]]),
  });
  assert.equal(served.lastUse.get('k-a'), NOW + 5, 'a use after the observation is not moved back');
});
