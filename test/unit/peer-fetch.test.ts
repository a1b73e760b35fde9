import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { access, mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve, sep } from 'node:path';
import fc from 'fast-check';
import { fetchFromPeers, type PeerFetchRequest } from '../../daemon/peers/fetch.ts';
import { parseManifest } from '../../daemon/peers/manifest-check.ts';
import type { ManifestSummary, PieceManifest } from '../../daemon/peers/protocol.ts';
import { isInside, safeJoin } from '../../download/containment.ts';
import { DownloadError, IncompleteCopyError } from '../../download/errors.ts';
import { isReservedInModel } from '../../disk/layout.ts';
import { eventually } from '../../localcluster/eventually.ts';
import { createLogger } from '../../ops/logger.ts';
import { downloadFailure } from '../helpers/download-errors.ts';
import { buildManifest, summaryOf, TestPeer, type PeerFault } from '../helpers/test-peer.ts';

// The fetching side of peer-to-peer: real HTTP peers on loopback, real files, 1 KiB pieces.

const KiB = 1024;
const KEY = 'peer-model';
const FILES: Record<string, number> = {
  'config.json': 300,
  'empty.txt': 0,
  'weights/model.bin': 2 * KiB + 1,
  'weights/shard-2.bin': 10 * KiB + 17,
  'tokenizer/vocab.txt': KiB,
};
const PIECES = 1 + 0 + 3 + 11 + 1;
const TOTAL = Object.values(FILES).reduce((a, b) => a + b, 0);
const log = createLogger('peer-fetch-test', 'silent');

let base: string;
let src: string;
let model: { manifest: PieceManifest; bytes: Buffer; summary: ManifestSummary };
before(async () => {
  base = await mkdtemp(join(tmpdir(), 'modelcache-peer-fetch-'));
  src = join(base, 'src');
  for (const [path, size] of Object.entries(FILES)) {
    await mkdir(dirname(join(src, path)), { recursive: true });
    await writeFile(join(src, path), randomBytes(size));
  }
  model = await buildManifest(src, KEY, KiB);
});
after(async () => {
  await rm(base, { recursive: true, force: true });
});

let n = 0;
async function workDir(): Promise<string> {
  const d = join(base, `w${n++}`, 'work');
  await mkdir(d, { recursive: true });
  return d;
}

/** `count` peers serving the model (or `manifest`), closed when the test ends. */
async function startPeers(t: TestContext, count: number, manifest = model.bytes): Promise<TestPeer[]> {
  const peers = await Promise.all(Array.from({ length: count }, () => TestPeer.start(src, KEY, manifest)));
  t.after(() => Promise.all(peers.map((p) => p.close())));
  return peers;
}

function request(peers: TestPeer[], dir: string, extra: Partial<PeerFetchRequest> = {}): PeerFetchRequest {
  let tok = 0;
  return {
    storageKey: KEY,
    workDir: dir,
    limitBytes: 1024 * KiB,
    summary: model.summary,
    peers: peers.map((p, i) => ({ node: `node-${i}`, url: p.url })),
    token: () => Promise.resolve(`tok-${tok++}`),
    signal: AbortSignal.timeout(30_000),
    stallTimeoutMs: 300,
    backoff: { baseMs: 5, maxMs: 20 },
    minPieceSize: KiB,
    log,
    ...extra,
  };
}

/** Regular files under `dir` by '/'-path, `.download/` included (it must be gone when a fetch completes). */
async function tree(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    const abs = join(e.parentPath, e.name);
    if (e.isFile()) out.set(relative(dir, abs).split(sep).join('/'), await readFile(abs));
  }
  return out;
}

async function assertIdentical(dir: string): Promise<void> {
  const got = await tree(dir);
  assert.deepEqual([...got.keys()].sort(), Object.keys(FILES).sort(), 'exactly the model files, no .download/');
  for (const [path, bytes] of got) assert.ok(bytes.equals(await readFile(join(src, path))), `${path} identical`);
  await assert.rejects(access(join(dir, '.download')), 'no .download/ left');
}

/** Every file at a final path (outside .download/) holds exactly the model's bytes. */
async function assertOnlyVerified(dir: string): Promise<void> {
  for (const [path, bytes] of await tree(dir)) {
    if (path.startsWith('.download/')) continue;
    assert.ok(path in FILES, `${path} is a model file`);
    assert.ok(bytes.equals(await readFile(join(src, path))), `${path} at its final path verified`);
  }
}

/** The files a failed fetch left in `.download/`, and those its error hands on (KeptPieces): they must be the same. */
async function partialsLeft(dir: string, err: DownloadError): Promise<{ left: string[]; handed: string[] }> {
  const left = [...(await tree(dir)).keys()].filter((p) => p.startsWith('.download/')).sort();
  const kept = err instanceof IncompleteCopyError ? err.kept : [];
  return { left, handed: kept.map((k) => relative(dir, k.file).split(sep).join('/')).sort() };
}

const pieceRequests = (peers: TestPeer[]): number => peers.reduce((a, p) => a + p.pieceRequests().length, 0);

test('three peers: byte-identical files, no .download/, bytes from more than one peer, a fresh token each request', async (t) => {
  const peers = await startPeers(t, 3);
  const dir = await workDir();
  const seen: string[] = [];
  const r = await fetchFromPeers(request(peers, dir, { onBytes: (_n, node) => seen.push(node) }));
  assert.equal(r.bytes, TOTAL);
  assert.equal(r.files, Object.keys(FILES).length);
  await assertIdentical(dir);
  const used = [...r.byPeer].filter(([, b]) => b > 0);
  assert.ok(used.length > 1, `bytes spread over peers: ${JSON.stringify([...r.byPeer])}`);
  assert.equal(
    [...r.byPeer.values()].reduce((a, b) => a + b, 0),
    TOTAL,
    'every byte fetched once',
  );
  assert.equal(pieceRequests(peers), PIECES, 'one request per piece');
  assert.equal(seen.length, PIECES);
  const auths = peers.flatMap((p) => p.requests.map((q) => q.authorization));
  assert.ok(
    auths.every((a) => a !== undefined && /^Bearer tok-\d+$/.test(a)),
    'every request carries the bearer token',
  );
  assert.equal(new Set(auths).size, auths.length, 'the token is read again for every request');
});

test("peers in this node's zone are asked first: those in other zones serve only while this zone's are busy", async (t) => {
  const peers = await startPeers(t, 4);
  const zoned = (maxPeers: number): PeerFetchRequest => {
    const req = request(peers, '', { maxPeers });
    return { ...req, peers: req.peers.map((p, i) => ({ ...p, sameZone: i < 2 })) };
  };
  const across = (r: { byPeer: Map<string, number> }): number =>
    (r.byPeer.get('node-2') ?? 0) + (r.byPeer.get('node-3') ?? 0);
  const two = await fetchFromPeers({ ...zoned(2), workDir: await workDir() });
  assert.equal(across(two), 0, `two at once: this zone's two peers only ${JSON.stringify([...two.byPeer])}`);
  const dir = await workDir();
  const four = await fetchFromPeers({ ...zoned(4), workDir: dir });
  assert.ok(across(four) > 0, `four at once: the other zone's too ${JSON.stringify([...four.byPeer])}`);
  await assertIdentical(dir);
});

test('a peer whose zone becomes known while the fetch runs is ranked by it from then on', async (t) => {
  const peers = await startPeers(t, 4);
  const req = request(peers, await workDir(), { maxPeers: 2 });
  // First offered with the zones the wrong way round (their Nodes not seen yet), then as they are.
  const first = req.peers.map((p, i) => ({ ...p, sameZone: i >= 2 }));
  const now = req.peers.map((p, i) => ({ ...p, sameZone: i < 2 }));
  const r = await fetchFromPeers({ ...req, peers: first, morePeers: () => now });
  const across = (r.byPeer.get('node-2') ?? 0) + (r.byPeer.get('node-3') ?? 0);
  assert.equal(across, 0, `only this zone's peers: ${JSON.stringify([...r.byPeer])}`);
});

test('a peer that flips bits: onBadPiece names it, it is not asked again, the files are still identical', async (t) => {
  const peers = await startPeers(t, 3);
  peers[0]!.always = { flipBits: true };
  const dir = await workDir();
  const bad: string[] = [];
  await fetchFromPeers(request(peers, dir, { onBadPiece: (node) => bad.push(node) }));
  await assertIdentical(dir);
  assert.deepEqual(bad, ['node-0']);
  assert.equal(peers[0]!.pieceRequests().length, 1, 'asked once, never again');
});

for (const [name, fault] of [
  ['500s', { status: 500 }],
  ['429s', { status: 429, retryAfter: '0' }],
  ['resets', { resetAfterBytes: 100 }],
  ['stalls', { stallMs: 10_000, afterBytes: 10 }],
] as const satisfies readonly (readonly [string, PeerFault])[]) {
  test(`a peer that ${name}: the others finish, it is dropped after 3 failures in a row`, async (t) => {
    const peers = await startPeers(t, 3);
    peers[1]!.always = fault;
    const dir = await workDir();
    const bad: string[] = [];
    const r = await fetchFromPeers(request(peers, dir, { onBadPiece: (node) => bad.push(node) }));
    await assertIdentical(dir);
    assert.deepEqual(bad, [], 'network trouble is no bad piece');
    assert.equal(r.byPeer.get('node-1') ?? 0, 0);
    assert.ok(peers[1]!.pieceRequests().length <= 3, `dropped after 3: ${peers[1]!.pieceRequests().length}`);
  });
}

test('all peers bad: SourceUnavailable, and no file at a final path that did not verify', async (t) => {
  const peers = await startPeers(t, 3);
  peers[0]!.always = { flipBits: true };
  peers[1]!.always = { status: 503 };
  peers[2]!.always = { resetAfterBytes: 512 };
  const dir = await workDir();
  const err = await downloadFailure(fetchFromPeers(request(peers, dir)));
  assert.equal(err.code, 'SourceUnavailable', err.message);
  assert.match(err.message, /pieces still missing and no peer left/);
  assert.match(err.message, /node-0: served a bad piece/);
  await assertOnlyVerified(dir);
  assert.deepEqual(await partialsLeft(dir, err), { left: [], handed: [] }, 'no piece verified: no partial file left');
});

test('a manifest whose digest differs from the summary is refused before any piece is fetched', async (t) => {
  const peers = await startPeers(t, 2);
  const dir = await workDir();
  const summary = { ...model.summary, digest: `sha256:${'0'.repeat(64)}` };
  const err = await downloadFailure(fetchFromPeers(request(peers, dir, { summary })));
  assert.equal(err.code, 'IntegrityMismatch', err.message);
  assert.match(err.message, /hash to sha256:[0-9a-f]{64}, sha256:0{64} published/);
  assert.equal(pieceRequests(peers), 0, 'no piece asked for');
  assert.deepEqual(await readdir(dir), [], 'nothing written');
});

test('a peer serving another manifest than published is skipped; the next one serves', async (t) => {
  const peers = await startPeers(t, 2);
  peers[0]!.setManifest(Buffer.from(JSON.stringify({ ...model.manifest, files: [] })));
  const dir = await workDir();
  const r = await fetchFromPeers(request(peers, dir));
  await assertIdentical(dir);
  assert.equal(peers[0]!.pieceRequests().length, 0, 'the stale peer is not asked for pieces');
  assert.equal(r.byPeer.get('node-1'), TOTAL);
});

/** A manifest with the model's files changed by `edit`, and the summary a node would publish for it. */
function hostile(edit: (files: PieceManifest['files']) => unknown[], extra: Record<string, unknown> = {}) {
  const files = structuredClone(model.manifest.files);
  const doc = { ...model.manifest, files: edit(files), ...extra };
  const bytes = Buffer.from(JSON.stringify(doc));
  const count = (doc.files as { pieces?: unknown[] }[]).reduce((a, f) => a + (f.pieces?.length ?? 0), 0);
  return { bytes, summary: { ...summaryOf(bytes, KiB, []), count } };
}
const renamed = (path: string) => (fs: PieceManifest['files']) => [...fs, { ...fs[0]!, path }];
/** Hostile manifests (built once the model exists): what each is, its bytes and summary, the code and message. */
const hostileCases = (): [string, ReturnType<typeof hostile>, string, RegExp][] => [
  ['../x', hostile(renamed('../x')), 'UnsafeObjectName', /'\.\.\/x' would be written outside the model folder/],
  ['an absolute path', hostile(renamed('/etc/x')), 'UnsafeObjectName', /'\/etc\/x' would be written outside/],
  ['.modelcache.json', hostile(renamed('.modelcache.json')), 'UnsafeObjectName', /keeps for its own state/],
  ['a nested .download', hostile(renamed('a/.download/x')), 'UnsafeObjectName', /'\.download', a name the cache/],
  ['a//b', hostile(renamed('weights//x')), 'UnsafeObjectName', /not a plain relative path/],
  ['a duplicate path', hostile(renamed('config.json')), 'UnsafeObjectName', /'config\.json' is listed twice/],
  [
    'a file that is also a folder',
    hostile(renamed('config.json/x')),
    'UnsafeObjectName',
    /'config\.json' is both a file and a folder of 'config\.json\/x'/,
  ],
  [
    'a size over limitBytes',
    hostile((fs) => [...fs, { path: 'big', size: 2048 * KiB, pieces: Array(2048).fill('a'.repeat(64)) }]),
    'SizeExceeded',
    /more than modelSize allows/,
  ],
  [
    'a wrong piece count',
    hostile((fs) => fs.map((f) => (f.path === 'weights/model.bin' ? { ...f, pieces: f.pieces.slice(1) } : f))),
    'BadResponse',
    /'weights\/model\.bin' has 2 piece hashes, 3 expected for 2049 bytes/,
  ],
  [
    'a non-hex hash',
    hostile((fs) => fs.map((f, i) => (i === 0 ? { ...f, pieces: [f.pieces[0]!.toUpperCase()] } : f))),
    'BadResponse',
    /piece 0: hash is not 64 lower-case hex digits/,
  ],
  [
    'a negative size',
    hostile((fs) => [...fs, { path: 'neg', size: -1, pieces: [] }]),
    'BadResponse',
    /'neg' has size -1/,
  ],
  ['another version', hostile((fs) => fs, { version: 2 }), 'BadResponse', /version 2, only 1/],
  ['another storage key', hostile((fs) => fs, { storageKey: 'other' }), 'BadResponse', /storage key "other"/],
  ['tiny pieces', hostile((fs) => fs, { pieceSize: 16 }), 'BadResponse', /piece size 16 is not between/],
  [
    'not JSON',
    { bytes: Buffer.from('{nope'), summary: summaryOf(Buffer.from('{nope'), KiB, []) },
    'BadResponse',
    /not JSON/,
  ],
];

test('hostile manifests are refused with a DownloadError that names the problem', () => {
  for (const [name, { bytes, summary }, code, message] of hostileCases()) {
    assert.throws(
      () => parseManifest(bytes, summary, KEY, 1024 * KiB, KiB),
      (e: unknown) => e instanceof DownloadError && e.code === code && message.test(e.message),
      name,
    );
  }
  const { bytes, summary } = hostile((fs) => fs);
  assert.throws(() => parseManifest(bytes, summary, KEY, 1024 * KiB), /piece size 1024 is not between 1048576/);
  assert.throws(() => parseManifest(bytes, { ...summary, count: 3 }, KEY, 1024 * KiB, KiB), /16 pieces, 3 published/);
});

test('property: whatever paths a manifest names, it is refused or every path is plain, inside, unique and no folder of another', () => {
  const component = fc.oneof(
    { weight: 30, arbitrary: fc.constantFrom('a', 'b', 'w.bin', '..x', 'C:') },
    { weight: 3, arbitrary: fc.constantFrom('.', '', '..', 'a\\..', '/') },
    { weight: 1, arbitrary: fc.constantFrom('.modelcache.json', '.modelcache.json.pieces', '.download', '.trash') },
  );
  const path = fc.array(component, { minLength: 1, maxLength: 4 }).map((c) => c.join('/'));
  fc.assert(
    fc.property(fc.array(path, { minLength: 1, maxLength: 6 }), (paths) => {
      const { bytes, summary } = hostile(() => paths.map((p) => ({ path: p, size: 0, pieces: [] })));
      let m: PieceManifest;
      try {
        m = parseManifest(bytes, summary, KEY, 1024 * KiB, KiB);
      } catch (e) {
        assert.ok(e instanceof DownloadError && ['UnsafeObjectName', 'BadResponse'].includes(e.code), String(e));
        return;
      }
      const root = resolve('/model');
      const seen = new Set<string>();
      for (const { path: p } of m.files) {
        assert.ok(isInside(root, safeJoin(root, p)) && safeJoin(root, p) !== root, `${p} inside`);
        assert.equal(p.split('/').filter((c) => c === '' || c === '.' || c === '..').length, 0, `${p} plain`);
        assert.ok(!p.includes('\\') && !p.split('/').some(isReservedInModel), `${p} not reserved`);
        assert.ok(!seen.has(p), `${p} once`);
        seen.add(p);
      }
      for (const p of seen) for (const q of seen) assert.ok(!q.startsWith(`${p}/`), `${p} is no folder of ${q}`);
    }),
    { numRuns: 500 },
  );
});

test('a hostile manifest served by peers: refused, no piece fetched, nothing written outside the folder', async (t) => {
  const { bytes, summary } = hostileCases()[0]![1];
  const peers = await startPeers(t, 2, bytes);
  const dir = await workDir();
  const err = await downloadFailure(fetchFromPeers(request(peers, dir, { summary })));
  assert.equal(err.code, 'UnsafeObjectName', err.message);
  assert.equal(pieceRequests(peers), 0);
  assert.equal(peers[1]!.requests.length, 0, 'the same published bytes are not asked of another peer');
  await assert.rejects(access(join(dir, '..', 'x')));
  assert.deepEqual(await readdir(dir), []);
});

test('abort: Cancelled, and no request keeps running after it returns (a stalled one included)', async (t) => {
  const peers = await startPeers(t, 3);
  peers[2]!.always = { stallMs: 60_000, afterBytes: 10 }; // hangs until the abort ends it
  const dir = await workDir();
  const ctl = new AbortController();
  let written = 0;
  let returned = false;
  const onBytes = (): void => {
    assert.equal(returned, false, 'no byte written after the fetch returned');
    if (++written === 4) ctl.abort(new Error('test abort'));
  };
  const started = Date.now();
  const err = await downloadFailure(
    fetchFromPeers(request(peers, dir, { signal: ctl.signal, onBytes, stallTimeoutMs: 60_000 })),
  );
  returned = true;
  assert.ok(Date.now() - started < 10_000, 'the stalled request did not hold the return');
  assert.ok(peers[2]!.pieceRequests().length >= 1, 'a request was stalled at the abort');
  assert.equal(err.code, 'Cancelled');
  const asked = peers.map((p) => p.requests.length);
  await eventually(() =>
    assert.deepEqual(
      peers.map((p) => p.active),
      [0, 0, 0],
      'every answer closed',
    ),
  );
  assert.deepEqual(
    peers.map((p) => p.requests.length),
    asked,
    'no request after it returned',
  );
  await assertOnlyVerified(dir);
});

test('resume: run, abort midway, run again: only the missing pieces are fetched', async (t) => {
  const first = await startPeers(t, 3);
  const dir = await workDir();
  const ctl = new AbortController();
  let written = 0;
  const onBytes = (): void => {
    if (++written === 7) ctl.abort(new Error('test abort'));
  };
  const err = await downloadFailure(fetchFromPeers(request(first, dir, { signal: ctl.signal, onBytes })));
  assert.equal(err.code, 'Cancelled');
  assert.ok(written >= 7 && written < PIECES, `aborted midway: ${written} of ${PIECES}`);
  await assertOnlyVerified(dir);

  const second = await startPeers(t, 3);
  const r = await fetchFromPeers(request(second, dir));
  await assertIdentical(dir);
  assert.equal(pieceRequests(second), PIECES - written, 'only the pieces not written before');
  assert.equal([...r.byPeer.values()].reduce((a, b) => a + b, 0) > 0, true);
});

test('left-overs in the folder: a wrong file of the right size is fetched again, strays and links are removed', async (t) => {
  const peers = await startPeers(t, 2);
  const dir = await workDir();
  await writeFile(join(dir, 'config.json'), Buffer.alloc(300)); // right size, wrong bytes
  await mkdir(join(dir, 'tokenizer/vocab.txt'), { recursive: true }); // a folder where a file goes
  await writeFile(join(dir, 'stray.bin'), 'x');
  await mkdir(join(base, 'outside'), { recursive: true });
  await symlink(join(base, 'outside'), join(dir, 'weights')); // a link where a folder goes
  await fetchFromPeers(request(peers, dir));
  await assertIdentical(dir);
  assert.deepEqual(await readdir(join(base, 'outside')), [], 'nothing written through the link');
});

/** Every piece of the model as `file/piece`, in manifest order. */
const allPieces = (): string[] => model.manifest.files.flatMap((f, i) => f.pieces.map((_h, p) => `${i}/${p}`));

test('a peer still copying is asked only for the pieces its `have` lists; a complete peer serves the rest', async (t) => {
  const [copying, complete] = await startPeers(t, 2);
  copying!.holding = new Set(allPieces().filter((_p, i) => i % 2 === 0));
  const dir = await workDir();
  const peers = [
    { node: 'copying', url: copying!.url, partial: true },
    { node: 'complete', url: complete!.url },
  ];
  const r = await fetchFromPeers(request([], dir, { peers, haveRefreshMs: 20 }));
  await assertIdentical(dir);
  assert.ok(
    copying!.requests.some((q) => q.kind === 'have'),
    'asked which pieces it holds',
  );
  const asked = copying!.pieceRequests();
  assert.ok(asked.length > 0, 'pieces came from the peer still copying too');
  assert.ok(
    asked.every((q) => q.status === 200 && copying!.holding!.has(`${q.file}/${q.piece}`)),
    'never asked for a piece it does not hold',
  );
  assert.equal((r.byPeer.get('copying') ?? 0) + (r.byPeer.get('complete') ?? 0), TOTAL);
});

test('rarest first: a complete peer is asked for the pieces no peer still copying holds before the others', async (t) => {
  const [copying, complete] = await startPeers(t, 2);
  copying!.holding = new Set(allPieces().filter((_p, i) => i % 4 !== 0)); // 4 pieces only the complete peer has
  const rare = allPieces().filter((p) => !copying!.holding!.has(p));
  const dir = await workDir();
  const peers = [
    { node: 'copying', url: copying!.url, partial: true },
    { node: 'complete', url: complete!.url },
  ];
  // One piece at a time: each goes to the least loaded peer, which takes the rarest piece it holds.
  await fetchFromPeers(request([], dir, { peers, haveRefreshMs: 20, maxPeers: 1 }));
  await assertIdentical(dir);
  // Its first two pieces may be asked before the other peer's `have` is known; from then on, rare pieces come first.
  const asked = complete!.pieceRequests().map((q) => `${q.file}/${q.piece}`);
  const lastRare = Math.max(...asked.map((p, i) => (rare.includes(p) ? i : -1)));
  const commonEarly = asked.slice(2, lastRare).filter((p) => !rare.includes(p));
  assert.deepEqual(commonEarly, [], `pieces the other peer holds asked before rare ones: ${asked.join(' ')}`);
  assert.ok(lastRare >= rare.length - 1, `the complete peer gave the rare pieces: ${asked.join(' ')}`);
});

test('a 404 from a peer still copying is "not yet", no failure: it stays asked and serves the rest once it has it', async (t) => {
  const [copying] = await startPeers(t, 1);
  const first = allPieces().slice(0, 3);
  copying!.holding = new Set(first);
  copying!.claimsAll = true; // its `have` says more than it serves: every other piece is a 404 for now
  const dir = await workDir();
  const bad: string[] = [];
  const peers = [{ node: 'copying', url: copying!.url, partial: true }];
  const fetching = fetchFromPeers(
    request([], dir, { peers, haveRefreshMs: 10, onBadPiece: (n) => bad.push(n), stallTimeoutMs: 10_000 }),
  );
  const notYet = (): number => copying!.pieceRequests().filter((q) => q.status === 404).length;
  await eventually(() => assert.ok(notYet() > 3, `more 404s than the 3 failures that drop a peer: ${notYet()}`));
  copying!.holding = new Set(allPieces()); // it has copied the rest
  const r = await fetching;
  await assertIdentical(dir);
  assert.equal(r.byPeer.get('copying'), TOTAL, 'every byte from the peer that answered 404 before');
  assert.deepEqual(bad, []);
});

test('peers still copying that hold no missing piece for stallTimeoutMs: SourceUnavailable, verified pieces kept', async (t) => {
  const [copying] = await startPeers(t, 1);
  // Two pieces of the largest file: it stays partial, with pieces to hand on; the other files hold none.
  const shard = model.manifest.files.findIndex((f) => f.path === 'weights/shard-2.bin');
  copying!.holding = new Set([`${shard}/0`, `${shard}/1`]);
  const dir = await workDir();
  const peers = [{ node: 'copying', url: copying!.url, partial: true }];
  const started = Date.now();
  const err = await downloadFailure(fetchFromPeers(request([], dir, { peers, haveRefreshMs: 10 })));
  assert.equal(err.code, 'SourceUnavailable', err.message);
  assert.match(err.message, /copying: still copying it, without the missing pieces/);
  assert.ok(Date.now() - started >= 300, 'waited stallTimeoutMs for it to get further');
  assert.equal(copying!.pieceRequests().length, 2, 'asked for exactly the pieces it holds');
  await assertOnlyVerified(dir);
  const { left, handed } = await partialsLeft(dir, err);
  assert.equal(handed.length, 1, `one file holds kept pieces: ${handed}`);
  assert.deepEqual(left, handed, 'partial files only of the files whose pieces are handed on');
});

test('a peer that starts offering the model while the fetch runs (morePeers) is asked too', async (t) => {
  const [copying, late] = await startPeers(t, 2);
  copying!.holding = new Set(allPieces().slice(0, 4));
  const dir = await workDir();
  let joined = false;
  const r = await fetchFromPeers(
    request([], dir, {
      peers: [{ node: 'copying', url: copying!.url, partial: true }],
      morePeers: () => (joined ? [{ node: 'late', url: late!.url }] : []),
      onBytes: () => void (joined = true),
      haveRefreshMs: 10,
      stallTimeoutMs: 5000,
    }),
  );
  await assertIdentical(dir);
  assert.ok((r.byPeer.get('late') ?? 0) > 0, 'the peer that joined served pieces');
});
