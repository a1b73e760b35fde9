import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planNode, type PeerOffer } from '../../daemon/node-cache/plan.ts';
import { peerOffers } from '../../daemon/peers/offers.ts';
import { ZONE_LABEL } from '../../kube/node-facts.ts';
import type { LocalModelInfo, LocalModelNode } from '../../api/types.ts';
import { uriSha256 } from '../../disk/inventory.ts';
import type { PiecesSummary } from '../../disk/layout.ts';

const model = (name: string): LocalModelInfo => ({
  sourceModelUri: `s3://b/${name}`,
  modelName: name,
  modelSize: 100,
  storagePath: '/x',
  storageKey: `k-${name}`,
});
const digest = (c: string): string => `sha256:${c.repeat(64)}`;
const offer = (node: string, d = digest('a'), sameZone = true): PeerOffer => ({
  node,
  address: `${node}:7000`,
  pieces: { digest: d, pieceSize: 16, count: 7 },
  sameZone,
});
const base = {
  inFlight: new Map(),
  failures: new Map(),
  reportedKeys: new Map<string, string>(),
  now: 1_000_000,
};

test('daemon plan, peers: a model some peer offers is fetched from the peers that agree on one manifest', () => {
  const plan = planNode({
    ...base,
    desired: [model('a'), model('b')],
    disk: { complete: new Map(), partial: new Set() },
    peers: new Map([['k-a', [offer('n3'), offer('n9', digest('b')), offer('n1')]]]),
    peerAddress: '10.0.0.1:7000',
  });
  assert.deepEqual(plan.actions, [
    {
      kind: 'download',
      model: model('a'),
      from: 'peers',
      pieces: offer('n1').pieces,
      peers: [offer('n1'), offer('n3')],
    },
    { kind: 'download', model: model('b'), from: 'origin' },
  ]);
  assert.deepEqual(plan.status.peer, { address: '10.0.0.1:7000' }, 'the address peers reach this node at');
  const serving = planNode({
    ...base,
    desired: [],
    disk: { complete: new Map(), partial: new Set() },
    peerAddress: '10.0.0.1:7000',
    peerBytesServed: 42,
  });
  assert.deepEqual(serving.status.peer, { address: '10.0.0.1:7000', bytesServed: 42 }, 'and what it served');
});

test('daemon plan, peers: a complete copy reports its manifest and the bytes peers gave; off → no peer fields', () => {
  const pieces = { digest: digest('c'), pieceSize: 16, count: 7 };
  const complete = new Map([
    ['k-a', { uriSha256: uriSha256('s3://b/a'), bytes: 100, completedAt: 't', pieces, bytesFromPeers: 60 }],
  ]);
  const on = planNode({ ...base, desired: [model('a')], disk: { complete, partial: new Set() }, peerAddress: 'h:1' });
  assert.deepEqual(on.status.models?.a, {
    storageKey: 'k-a',
    bytesDone: 100,
    bytesTotal: 100,
    completedAt: 't',
    bytesFromPeers: 60,
    pieces,
  });
  const off = planNode({
    ...base,
    desired: [model('a'), model('b')],
    disk: { complete: new Map(), partial: new Set() },
  });
  assert.equal(off.status.peer, undefined);
  assert.deepEqual(
    off.actions.map((a) => a.kind === 'download' && a.from),
    ['origin', 'origin'],
  );
});

test('peer offers: other nodes that report a model Downloaded, or Downloading (in progress), with a manifest, at a published address', () => {
  const pieces = { digest: digest('d'), pieceSize: 16, count: 1 };
  const lmn = (name: string, status: LocalModelNode['status']): LocalModelNode => ({
    apiVersion: 'serving.kserve.io/v1alpha1',
    kind: 'LocalModelNode',
    metadata: { name },
    spec: { localModels: [] },
    ...(status ? { status } : {}),
  });
  const offers = peerOffers(
    [
      lmn('self', {
        peer: { address: 's:1' },
        modelStatus: { a: 'ModelDownloaded' },
        models: { a: { storageKey: 'k-a', pieces } },
      }),
      lmn('n1', {
        peer: { address: 'n1:1' },
        modelStatus: { a: 'ModelDownloaded' },
        models: { a: { storageKey: 'k-a', pieces } },
      }),
      lmn('n2', {
        peer: { address: 'n2:1' },
        modelStatus: { a: 'ModelDownloading' },
        models: { a: { storageKey: 'k-a', pieces } },
      }),
      lmn('n3', { modelStatus: { a: 'ModelDownloaded' }, models: { a: { storageKey: 'k-a', pieces } } }),
      lmn('n4', {
        peer: { address: 'n4:1' },
        modelStatus: { a: 'ModelDownloaded' },
        models: { a: { storageKey: 'k-a' } },
      }),
    ],
    'self',
    (n) => ({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: n, labels: { [ZONE_LABEL]: n === 'n1' ? 'z1' : 'z2' } },
    }),
  );
  assert.deepEqual(
    [...offers],
    [
      [
        'k-a',
        [
          { node: 'n1', address: 'n1:1', pieces, sameZone: false },
          { node: 'n2', address: 'n2:1', pieces, sameZone: true, inProgress: true },
        ],
      ],
    ],
  );
});

test('daemon plan, peers: a complete copy without a manifest (adopted, or cached before) is hashed to be offered', () => {
  const complete = new Map([['k-a', { uriSha256: uriSha256('s3://b/a'), bytes: 100, completedAt: 't' }]]);
  const disk = { complete, partial: new Set<string>() };
  const on = planNode({ ...base, desired: [model('a')], disk, peerAddress: 'h:1' });
  assert.deepEqual(on.actions, [{ kind: 'describe', storageKey: 'k-a' }]);
  assert.equal(on.status.modelStatus?.a, 'ModelDownloaded', 'it is served to pods meanwhile');
  assert.deepEqual(planNode({ ...base, desired: [model('a')], disk }).actions, [], 'peers off: nothing to hash');
});

test("daemon plan, peers: peers in this node's zone are asked first", () => {
  const plan = planNode({
    ...base,
    desired: [model('a')],
    disk: { complete: new Map(), partial: new Set() },
    peers: new Map([
      ['k-a', [offer('n1', digest('a'), false), offer('n3'), offer('n2', digest('a'), false), offer('n4')]],
    ]),
    peerAddress: 'h:1',
  });
  const a = plan.actions[0];
  assert.ok(a?.kind === 'download' && a.from === 'peers');
  assert.deepEqual(
    a.peers.map((p) => p.node),
    ['n3', 'n4', 'n1', 'n2'],
  );
});

test('daemon plan, peers: a copy from peers running publishes its manifest and gets the latest offers; an origin download does not', () => {
  const pieces = offer('n1').pieces;
  const running = (extra: object) => ({
    modelName: 'a',
    queued: false,
    uri: 's3://b/a',
    bytesDone: 10,
    startedAt: 't',
    ...extra,
  });
  const peers = new Map([
    ['k-a', [offer('n1'), offer('n2', digest('b')), { ...offer('n3'), inProgress: true as const }]],
  ]);
  const fromPeers = planNode({
    ...base,
    desired: [model('a')],
    disk: { complete: new Map(), partial: new Set() },
    inFlight: new Map([['k-a', running({ pieces })]]),
    peers,
    peerAddress: 'h:1',
  });
  assert.equal(fromPeers.status.modelStatus?.a, 'ModelDownloading');
  assert.deepEqual(fromPeers.status.models?.a?.pieces, pieces, 'offered while it copies');
  assert.deepEqual(fromPeers.actions, [
    { kind: 'offers', storageKey: 'k-a', peers: [offer('n1'), { ...offer('n3'), inProgress: true }] },
  ]);
  const fromOrigin = planNode({
    ...base,
    desired: [model('a')],
    disk: { complete: new Map(), partial: new Set() },
    inFlight: new Map([['k-a', running({})]]),
    peers,
    peerAddress: 'h:1',
  });
  assert.equal(fromOrigin.status.models?.a?.pieces, undefined, 'an origin download offers nothing until hashed');
  assert.deepEqual(fromOrigin.actions, []);
  const queued = planNode({
    ...base,
    desired: [model('a')],
    disk: { complete: new Map(), partial: new Set() },
    inFlight: new Map([['k-a', running({ pieces, queued: true })]]),
    peerAddress: 'h:1',
  });
  assert.equal(queued.status.models?.a?.pieces, undefined, 'not while it waits for a slot');
});

test('daemon plan, peers: a live manifest is copied only with its seed among the offers, and complete ones come first', () => {
  const live = (node: string, kind: 'origin' | 'peers'): PeerOffer => ({
    ...offer(node, digest('5')),
    pieces: { ...offer(node, digest('5')).pieces, live: kind },
    inProgress: true,
  });
  const plan = (offers: PeerOffer[]) =>
    planNode({
      ...base,
      desired: [model('a')],
      disk: { complete: new Map(), partial: new Set() },
      peers: new Map([['k-a', offers]]),
      peerAddress: 'h:1',
    }).actions;
  assert.deepEqual(
    plan([live('n2', 'peers'), live('n3', 'peers')]),
    [{ kind: 'download', model: model('a'), from: 'origin' }],
    'copies of a live manifest whose seed is gone: nobody vouches for its hashes',
  );
  assert.deepEqual(plan([live('n2', 'peers'), live('n1', 'origin'), live('n3', 'peers')]), [
    {
      kind: 'download',
      model: model('a'),
      from: 'peers',
      pieces: live('n1', 'origin').pieces,
      peers: [live('n1', 'origin'), live('n2', 'peers'), live('n3', 'peers')],
    },
  ]);
  assert.deepEqual(plan([live('n2', 'peers'), live('n1', 'origin'), offer('n9')]), [
    { kind: 'download', model: model('a'), from: 'peers', pieces: offer('n9').pieces, peers: [offer('n9')] },
  ]);
});

test('daemon plan, peers: a seed publishes its live manifest; a live copy is offered the complete peers too', () => {
  const seedPieces = { digest: digest('5'), pieceSize: 16, count: 7, live: 'origin' as const };
  const copyPieces = { ...seedPieces, live: 'peers' as const };
  const inFlight = (pieces: PiecesSummary) =>
    new Map([['k-a', { modelName: 'a', queued: false, uri: 's3://b/a', bytesDone: 10, startedAt: 't', pieces }]]);
  const peers = new Map([
    [
      'k-a',
      [
        { ...offer('n1', digest('5')), pieces: seedPieces, inProgress: true as const },
        offer('n2', digest('9')),
        { ...offer('n3', digest('9')), inProgress: true as const },
      ],
    ],
  ]);
  const at = { ...base, desired: [model('a')], disk: { complete: new Map(), partial: new Set<string>() }, peers };
  const seed = planNode({ ...at, inFlight: inFlight(seedPieces), peerAddress: 'h:1' });
  assert.deepEqual(seed.status.models?.a?.pieces, seedPieces, 'the seed offers what it has hashed so far');
  assert.deepEqual(seed.actions, [], 'a seed copies from nobody');
  const copy = planNode({ ...at, inFlight: inFlight(copyPieces), peerAddress: 'h:1' });
  assert.deepEqual(copy.status.models?.a?.pieces, copyPieces);
  assert.deepEqual(copy.actions, [
    {
      kind: 'offers',
      storageKey: 'k-a',
      peers: [{ ...offer('n1', digest('5')), pieces: seedPieces, inProgress: true }, offer('n2', digest('9'))],
    },
  ]);
});
