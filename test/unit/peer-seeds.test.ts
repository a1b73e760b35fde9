import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planNode } from '../../daemon/node-cache/plan.ts';
import {
  COPY_QUEUED,
  offerSeen,
  seedOf,
  SEED_RECHECK_MS,
  SEED_SETTLE_MIN_MS,
  SEED_SETTLE_MS,
  WAITING_FOR_SEED,
} from '../../daemon/node-cache/peer-rules.ts';
import { SeedCandidates } from '../../daemon/peers/seeds.ts';
import { ZONE_LABEL } from '../../kube/node-facts.ts';
import type { LocalModelInfo, LocalModelNode, ModelState } from '../../api/types.ts';
import type { Node } from '../../kube/types.ts';

const model = (name: string): LocalModelInfo => ({
  sourceModelUri: `s3://b/${name}`,
  modelName: name,
  modelSize: 100,
  storagePath: '/x',
  storageKey: `k-${name}`,
});
const base = {
  inFlight: new Map(),
  failures: new Map(),
  reportedKeys: new Map<string, string>(),
  disk: { complete: new Map(), partial: new Set<string>() },
  now: 1_000_000,
  peerAddress: 'h:1',
};
const names = Array.from({ length: 8 }, (_, i) => `node-${i}`);

test('seeds: every node picks the same seed per model, and models spread over the nodes', () => {
  const seeds = new Set<string>();
  for (let i = 0; i < 40; i++) {
    const key = `k-${i}`;
    const picks = names.map((self) =>
      seedOf(
        key,
        self,
        names.filter((n) => n !== self),
      ),
    );
    assert.equal(new Set(picks).size, 1, `${key}: one seed whoever asks`);
    seeds.add(picks[0]!);
  }
  assert.ok(seeds.size >= 5, `40 models are seeded by ${seeds.size} of 8 nodes`);
  // When the seed drops out, the models it did not seed keep their seed (rendezvous hashing).
  const key = 'k-x';
  const first = seedOf(key, names[0]!, names);
  const rest = names.filter((n) => n !== first);
  assert.notEqual(seedOf(key, rest[0]!, rest), first);
});

test('daemon plan, seeds: the seed fetches from the origin; the others wait (Pending, with who they wait for)', () => {
  const key = 'k-a';
  const seed = seedOf(key, names[0]!, names);
  const other = names.find((n) => n !== seed)!;
  const candidates = (self: string): Map<string, string[]> => new Map([[key, names.filter((n) => n !== self)]]);
  const atSeed = planNode({ ...base, desired: [model('a')], self: seed, seedCandidates: candidates(seed) });
  assert.deepEqual(atSeed.actions, [{ kind: 'download', model: model('a'), from: 'origin' }]);
  const waiting = planNode({ ...base, desired: [model('a')], self: other, seedCandidates: candidates(other) });
  assert.deepEqual(waiting.actions, [], 'no origin download off the seed');
  assert.equal(waiting.status.modelStatus?.a, 'ModelDownloadPending');
  assert.match(String(waiting.status.models?.a?.message), new RegExp(`waiting for ${seed}`));
  assert.equal(waiting.nextRetryAt, base.now + SEED_RECHECK_MS, 'it looks again soon');
  // Alone (no other candidate), or peers off: the origin, as without peer-to-peer.
  const alone = planNode({ ...base, desired: [model('a')], self: other, seedCandidates: new Map() });
  assert.deepEqual(alone.actions, [{ kind: 'download', model: model('a'), from: 'origin' }]);
});

const node = (name: string, ready = true, zone?: string): Node => ({
  apiVersion: 'v1',
  kind: 'Node',
  metadata: { name, ...(zone ? { labels: { [ZONE_LABEL]: zone } } : {}) },
  status: { conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }] },
});
const lmn = (
  name: string,
  state?: ModelState,
  bytesDone = 0,
  address: string | null = `${name}:1`,
  reason?: string,
): LocalModelNode => ({
  apiVersion: 'serving.kserve.io/v1alpha1',
  kind: 'LocalModelNode',
  metadata: { name },
  spec: { localModels: [model('a')] },
  status: {
    ...(address ? { peer: { address } } : {}),
    ...(state
      ? { modelStatus: { a: state }, models: { a: { storageKey: 'k-a', bytesDone, ...(reason ? { reason } : {}) } } }
      : {}),
  },
});

test('seed candidates: same zone, Ready, serving peers, wanting and not holding the model, not failed', () => {
  const nodes = new Map([
    ['self', node('self', true, 'z1')],
    ['ok', node('ok', true, 'z1')],
    ['pending', node('pending', true, 'z1')],
    ['other-zone', node('other-zone', true, 'z2')],
    ['not-ready', node('not-ready', false, 'z1')],
    ['done', node('done', true, 'z1')],
    ['failed', node('failed', true, 'z1')],
    ['no-peers', node('no-peers', true, 'z1')],
    ['silent', node('silent', true, 'z1')],
  ]);
  const c = new SeedCandidates(10_000).observe(
    [
      lmn('self'),
      lmn('ok', 'ModelDownloading', 5),
      lmn('pending', 'ModelDownloadPending'),
      lmn('other-zone', 'ModelDownloading'),
      lmn('not-ready', 'ModelDownloading'),
      lmn('done', 'ModelDownloaded'),
      lmn('failed', 'ModelDownloadError'),
      lmn('no-peers', 'ModelDownloading', 0, null),
      lmn('no-node', 'ModelDownloading'),
      lmn('silent'),
    ],
    (n) => nodes.get(n),
    'self',
    new Set(['k-a']),
    0,
  );
  assert.deepEqual([...c.candidates], [['k-a', ['ok', 'pending', 'silent']]], 'silent: not reported yet');
  assert.deepEqual([...c.settling], ['k-a'], 'just wanted: the seed is not chosen yet');
});

test('seed candidates: a copy whose bytes stop moving for the stall time stops being a candidate', () => {
  const seeds = new SeedCandidates(10_000);
  const nodeOf = (n: string): Node => node(n);
  const at = (t: number, bytes: number): string[] =>
    seeds
      .observe(
        [
          lmn('seed', 'ModelDownloading', bytes),
          lmn('queued', 'ModelDownloadPending'),
          lmn('waiter', 'ModelDownloadPending', 0, 'waiter:1', WAITING_FOR_SEED),
          lmn('silent'),
        ],
        nodeOf,
        'self',
        new Set(['k-a']),
        t,
      )
      .candidates.get('k-a') ?? [];
  assert.deepEqual(at(0, 10), ['seed', 'queued', 'waiter', 'silent']);
  assert.deepEqual(at(9_000, 10), ['seed', 'queued', 'waiter', 'silent'], 'not yet stalled');
  assert.deepEqual(at(10_001, 10), ['waiter'], 'stalled, queued or silent too long: the next node takes over');
  assert.deepEqual(at(12_000, 20), ['seed', 'waiter'], 'moving again');
});

test('daemon plan, seeds: a model wanted a moment ago waits to see who else wants it, then decides', () => {
  const settling = planNode({
    ...base,
    desired: [model('a')],
    self: 'node-0',
    seedCandidates: new Map(),
    seedSettling: new Set(['k-a']),
  });
  assert.deepEqual(settling.actions, []);
  assert.equal(settling.status.models?.a?.reason, WAITING_FOR_SEED);
  assert.equal(settling.nextRetryAt, base.now + SEED_SETTLE_MIN_MS, 'looked at again soon');
  const seeds = new SeedCandidates(10_000);
  const nodeOf = (n: string): Node => node(n);
  assert.deepEqual([...seeds.observe([], nodeOf, 'self', new Set(['k-a']), 0).settling], ['k-a']);
  assert.deepEqual([...seeds.observe([], nodeOf, 'self', new Set(['k-a']), SEED_SETTLE_MS).settling], []);
});

test('seeds: the settle time ends early once every other node seen wanting the model has reported it', () => {
  const nodeOf = (n: string): Node => node(n);
  /** What settles at `t` for a node that first wanted the model at 0, seeing `others`. */
  const at = (t: number, others: LocalModelNode[]): string[] => {
    const s = new SeedCandidates(10_000);
    s.observe(others, nodeOf, 'self', new Set(['k-a']), 0);
    return [...s.observe(others, nodeOf, 'self', new Set(['k-a']), t).settling];
  };
  const reported = [lmn('a', 'ModelDownloadPending'), lmn('b', 'ModelDownloadPending')];
  assert.deepEqual(at(SEED_SETTLE_MIN_MS - 1, reported), ['k-a'], 'not before the shortest settle time');
  assert.deepEqual(at(SEED_SETTLE_MIN_MS, reported), [], 'everyone reported: decided');
  assert.deepEqual(at(SEED_SETTLE_MIN_MS, [...reported, lmn('silent')]), ['k-a'], 'one has not reported yet');
  assert.deepEqual(at(SEED_SETTLE_MIN_MS, []), ['k-a'], 'alone so far: the others may not be seen yet');
  assert.deepEqual(at(SEED_SETTLE_MS, [lmn('silent')]), [], 'and never longer than the settle time');
});

test('seeds: a candidate already fetching the model stays its seed, whatever the hash says now', () => {
  const key = 'k-a';
  const top = seedOf(key, names[0]!, names);
  const other = names.find((n) => n !== top)!;
  const self = names.find((n) => n !== top && n !== other)!;
  const plan = planNode({
    ...base,
    desired: [model('a')],
    self,
    seedCandidates: new Map([[key, names.filter((n) => n !== self)]]),
    seedsFetching: new Map([[key, [other]]]),
  });
  assert.deepEqual(plan.actions, [], 'not a second origin download');
  assert.match(String(plan.status.models?.a?.message), new RegExp(`waiting for ${other}`));
  const c = new SeedCandidates(10_000).observe(
    [
      lmn('fetching', 'ModelDownloading', 5),
      lmn('queued', 'ModelDownloadPending'),
      lmn('waiter', 'ModelDownloadPending', 0, 'waiter:1', WAITING_FOR_SEED),
      lmn('silent'),
    ],
    (n) => node(n),
    'self',
    new Set([key]),
    0,
  );
  assert.deepEqual([...c.fetching], [[key, ['fetching', 'queued']]]);
});

test('seed candidates: the stall clock starts again when a node stops waiting and starts fetching', () => {
  const seeds = new SeedCandidates(10_000);
  const nodeOf = (n: string): Node => node(n);
  const at = (t: number, copy: LocalModelNode): string[] =>
    seeds.observe([copy], nodeOf, 'self', new Set(['k-a']), t).candidates.get('k-a') ?? [];
  assert.deepEqual(at(0, lmn('seed', 'ModelDownloadPending', 0, 'seed:1', WAITING_FOR_SEED)), ['seed']);
  assert.deepEqual(at(30_000, lmn('seed', 'ModelDownloadPending', 0, 'seed:1', WAITING_FOR_SEED)), ['seed']);
  assert.deepEqual(at(30_001, lmn('seed', 'ModelDownloadPending')), ['seed'], 'queued to fetch: fresh, not stalled');
  assert.deepEqual(at(40_002, lmn('seed', 'ModelDownloadPending')), [], 'queued for the stall time: passed over');
});

test('seeds: a model a peer holds complete but cannot share (links) is fetched from the origin, not waited for', () => {
  const shared = lmn('done', 'ModelDownloaded', 100);
  const c = new SeedCandidates(10_000).observe([shared], (n) => node(n), 'self', new Set(['k-a']), 0);
  assert.deepEqual([...c.unshareable], ['k-a']);
  const plan = planNode({
    ...base,
    desired: [model('a')],
    self: 'self',
    seedCandidates: new Map([['k-a', ['other-waiting-one']]]),
    unshareable: c.unshareable,
  });
  assert.equal(plan.actions[0]?.kind, 'download', 'no waiting for a seed whose copy cannot be shared');
});

test('seed candidates: a node copying from peers is a candidate, but no seed already fetching from the source', () => {
  const copier = lmn('copier', 'ModelDownloading', 5);
  copier.status!.models!.a!.pieces = { digest: `sha256:${'c'.repeat(64)}`, pieceSize: 16, count: 7, live: 'peers' };
  const seed = lmn('seed', 'ModelDownloading', 5);
  seed.status!.models!.a!.pieces = { digest: `sha256:${'c'.repeat(64)}`, pieceSize: 16, count: 7, live: 'origin' };
  const queued = lmn('queued', 'ModelDownloadPending', 0, 'queued:1', COPY_QUEUED);
  const c = new SeedCandidates(10_000).observe([copier, seed, queued], (n) => node(n), 'self', new Set(['k-a']), 0);
  assert.deepEqual([...c.candidates], [['k-a', ['copier', 'seed', 'queued']]]);
  assert.deepEqual([...c.fetching], [['k-a', ['seed']]], 'the copiers wait for a seed like this node would');
  const inFlight = new Map([
    ['k-a', { modelName: 'a', queued: true, uri: 's3://b/a', bytesDone: 0, startedAt: '', copyQueued: true as const }],
  ]);
  const plan = planNode({ ...base, desired: [model('a')], inFlight });
  assert.equal(plan.status.models?.a?.reason, COPY_QUEUED, 'a copy queued behind other downloads says so');
});

test('daemon plan, seeds: a seed a copy failed with is not copied from again while its status stays the same', () => {
  const key = 'k-a';
  const dead = seedOf(key, names[0]!, names);
  const rest = names.filter((n) => n !== dead);
  const next = seedOf(key, rest[0]!, rest);
  const third = rest.find((n) => n !== next)!;
  const pieces = { digest: `sha256:${'d'.repeat(64)}`, pieceSize: 16, count: 7, live: 'origin' as const };
  const offer = (bytesDone: number) => ({
    node: dead,
    address: `${dead}:1`,
    pieces,
    sameZone: true,
    inProgress: true as const,
    bytesDone,
  });
  /** `stalled`: the dead seed is no candidate any more (SeedCandidates: no progress for the stall time). */
  /** `backAgo`: how long ago this node's copy was handed back (ms). */
  const at = (self: string, bytesDone: number, failedAt: number | undefined, stalled = false, backAgo = 10_000) =>
    planNode({
      ...base,
      desired: [model('a')],
      self,
      seedCandidates: new Map([[key, names.filter((n) => n !== self && !(stalled && n === dead))]]),
      seedsFetching: new Map([[key, stalled ? [] : [dead]]]),
      peers: new Map([[key, [offer(bytesDone)]]]),
      ...(failedAt !== undefined
        ? {
            handedBack: new Map([
              [key, { avoided: new Map([[dead, offerSeen(offer(failedAt))]]), at: base.now - backAgo }],
            ]),
          }
        : {}),
    });
  assert.deepEqual(at(next, 50, undefined).actions[0], {
    kind: 'download',
    model: model('a'),
    from: 'peers',
    pieces,
    peers: [offer(50)],
  });
  const slow = at(next, 50, 50);
  assert.deepEqual(slow.actions, [], 'not copied from again, and not replaced yet: it may only be slow to report');
  assert.match(String(slow.status.models?.a?.message), new RegExp(`waiting for ${dead},`));
  const takeover = at(next, 50, 50, true);
  assert.deepEqual(takeover.actions, [{ kind: 'download', model: model('a'), from: 'origin' }], 'stalled: replaced');
  const settling = at(next, 50, 50, true, SEED_SETTLE_MS - 1);
  assert.deepEqual(settling.actions, [], 'just handed back: the others that failed too decide first');
  assert.equal(settling.nextRetryAt, base.now + SEED_SETTLE_MIN_MS);
  const waiting = at(third, 50, 50, true);
  assert.deepEqual(waiting.actions, []);
  assert.match(String(waiting.status.models?.a?.message), new RegExp(`waiting for ${next},`), 'the others wait for it');
  assert.equal(at(next, 60, 50).actions[0]?.kind, 'download');
  assert.deepEqual(
    (at(next, 60, 50).actions[0] as { peers?: unknown }).peers,
    [offer(60)],
    'a seed whose status moves again is copied from again',
  );
});

test("daemon plan, seeds: each zone fetches from the origin through its own seed; another zone's copies in progress are not taken, its complete ones are", () => {
  const key = 'k-a';
  const zone = names.slice(0, 4);
  const seed = seedOf(key, zone[0]!, zone);
  const other = zone.find((n) => n !== seed)!;
  const pieces = { digest: `sha256:${'e'.repeat(64)}`, pieceSize: 16, count: 7 };
  const across = (node: string, live?: 'origin' | 'peers') => ({
    node,
    address: `${node}:1`,
    pieces: live ? { ...pieces, live } : pieces,
    sameZone: false,
    ...(live ? { inProgress: true as const, bytesDone: 32 } : {}),
  });
  const at = (self: string, offers: ReturnType<typeof across>[]) =>
    planNode({
      ...base,
      desired: [model('a')],
      self,
      seedCandidates: new Map([[key, zone.filter((n) => n !== self)]]),
      peers: new Map([[key, offers]]),
    });
  const liveAcross = [across('node-7', 'origin'), across('node-6', 'peers')];
  assert.deepEqual(at(seed, liveAcross).actions, [{ kind: 'download', model: model('a'), from: 'origin' }]);
  const waiting = at(other, liveAcross);
  assert.deepEqual(waiting.actions, [], "the zone's other nodes wait for its seed");
  assert.equal(waiting.status.models?.a?.reason, WAITING_FOR_SEED);
  assert.match(String(waiting.status.models?.a?.message), new RegExp(`waiting for ${seed}`));
  const ownSeed = { ...across(seed, 'origin'), sameZone: true };
  assert.deepEqual(
    at(other, [{ ...across('node-7'), pieces: { ...pieces, digest: `sha256:${'f'.repeat(64)}` } }, ownSeed]).actions,
    [{ kind: 'download', model: model('a'), from: 'peers', pieces: ownSeed.pieces, peers: [ownSeed] }],
    "its zone's seed, once it offers, before a complete copy across",
  );
  const complete = [across('node-7')];
  for (const self of [seed, other])
    assert.deepEqual(
      at(self, complete).actions,
      [{ kind: 'download', model: model('a'), from: 'peers', pieces, peers: complete }],
      'a complete copy in another zone is copied: it is no slower than the origin',
    );
});

test('--peer-seeds cluster: one seed for all zones; the others, in any zone, copy its live download', () => {
  const nodes = new Map([
    ['self', node('self', true, 'z1')],
    ['near', node('near', true, 'z1')],
    ['far', node('far', true, 'z2')],
  ]);
  const observe = (scope?: 'cluster') =>
    new SeedCandidates(10_000, scope).observe(
      [lmn('self'), lmn('near', 'ModelDownloading', 5), lmn('far', 'ModelDownloading', 5)],
      (n) => nodes.get(n),
      'self',
      new Set(['k-a']),
      0,
    ).candidates;
  assert.deepEqual([...observe()], [['k-a', ['near']]], 'zone: candidates of this zone only');
  assert.deepEqual([...observe('cluster')], [['k-a', ['near', 'far']]], 'cluster: of every zone');
  const key = 'k-a';
  const all = names.slice(0, 4);
  const seed = seedOf(key, all[0]!, all);
  const other = all.find((n) => n !== seed)!;
  const liveSeed = {
    node: seed,
    address: `${seed}:1`,
    pieces: { digest: `sha256:${'c'.repeat(64)}`, pieceSize: 16, count: 7, live: 'origin' as const },
    sameZone: false,
    inProgress: true as const,
    bytesDone: 32,
  };
  const at = (seedScope?: 'cluster') =>
    planNode({
      ...base,
      desired: [model('a')],
      self: other,
      seedCandidates: new Map([[key, all.filter((n) => n !== other)]]),
      peers: new Map([[key, [liveSeed]]]),
      ...(seedScope ? { seedScope } : {}),
    });
  assert.deepEqual(at('cluster').actions, [
    { kind: 'download', model: model('a'), from: 'peers', pieces: liveSeed.pieces, peers: [liveSeed] },
  ]);
  assert.deepEqual(at().actions, [], 'zone: a live seed in another zone is not copied (this one waits for its own)');
});
