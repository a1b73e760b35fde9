// A seed serves its origin download while it runs (protocol.ts, live manifests): a real LiveSeed hears of bytes
// written into its partial files, this node's real peer server serves the pieces it hashed, and a real fetch copies
// them before the seed is done, then commits only once a complete peer published the digest it assembled.
// Tokens are checked by a table reviewer (the apiserver's side is in test/integration/peer-server.test.ts).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DownloadError } from '../../download/errors.ts';
import { CopiesInProgress } from '../../daemon/peers/copies.ts';
import { fetchFromPeers, type PeerFetchRequest, type PeerRef } from '../../daemon/peers/fetch.ts';
import { LiveSeed } from '../../daemon/peers/live-seed.ts';
import { buildManifest } from '../../daemon/peers/manifest.ts';
import { parseManifest } from '../../daemon/peers/manifest-check.ts';
import {
  countPieces,
  digestOf,
  liveSummary,
  manifestPath,
  piecePath,
  pieceOffsets,
  PROGRESS_HEADER,
  serializeManifest,
  UNKNOWN_HASH,
  type ManifestSummary,
  type PieceManifest,
} from '../../daemon/peers/protocol.ts';
import type { PeerServer } from '../../daemon/peers/server.ts';
import { firstReceiverOf } from '../../daemon/peers/spread.ts';
import { eventually } from '../../localcluster/eventually.ts';
import { createLogger } from '../../ops/logger.ts';
import { startTablePeerServer, TestPeer } from '../helpers/test-peer.ts';

const KiB = 1024;
const TOKEN = 'daemon-token';
const log = createLogger('peer-live-seed-test', 'silent');
const WEIGHTS = randomBytes(6 * KiB + 5);
const CONFIG = randomBytes(300);

let base: string;
let copies: CopiesInProgress;
let server: PeerServer;
before(async () => {
  base = await mkdtemp(join(tmpdir(), 'modelcache-live-seed-'));
  copies = new CopiesInProgress();
  server = await startTablePeerServer(join(base, 'root'), copies, TOKEN, log);
});
after(async () => {
  await server?.close();
  await rm(base, { recursive: true, force: true });
});

/** A seed's staging folder as an origin download fills it: partial files in .download/, told to a LiveSeed. */
async function seeding(key: string): Promise<{
  dir: string;
  seed: LiveSeed;
  offers: (ManifestSummary | undefined)[];
  write: (path: 'weights.bin' | 'config.json', start: number, end: number) => Promise<void>;
  place: (path: string) => Promise<void>;
}> {
  const dir = join(base, `seed-${key}`);
  await mkdir(join(dir, '.download'), { recursive: true });
  const partial = (path: string): string => join(dir, '.download', `partial-${path}`);
  const offers: (ManifestSummary | undefined)[] = [];
  const seed = new LiveSeed({
    storageKey: key,
    workDir: dir,
    copies,
    log,
    onOffer: (s) => offers.push(s),
    pieceSize: KiB,
  });
  for (const path of ['weights.bin', 'config.json']) await writeFile(partial(path), '');
  seed.listed([
    { path: 'weights.bin', size: WEIGHTS.length, partial: partial('weights.bin') },
    { path: 'config.json', size: CONFIG.length, partial: partial('config.json') },
  ]);
  return {
    dir,
    seed,
    offers,
    write: async (path, start, end) => {
      const body = path === 'weights.bin' ? WEIGHTS : CONFIG;
      const fh = await open(partial(path), 'r+');
      try {
        await fh.write(body, start, end - start, start);
      } finally {
        await fh.close();
      }
      seed.written(path, start, end - start);
    },
    place: (path) => rename(partial(path), join(dir, path)),
  };
}

function request(key: string, dir: string, extra: Partial<PeerFetchRequest>): PeerFetchRequest {
  return {
    storageKey: key,
    workDir: dir,
    limitBytes: 1024 * KiB,
    summary: { digest: '', pieceSize: KiB, count: 0 },
    peers: [],
    token: () => Promise.resolve(TOKEN),
    signal: AbortSignal.timeout(30_000),
    stallTimeoutMs: 10_000,
    backoff: { baseMs: 5, maxMs: 20 },
    haveRefreshMs: 10,
    minPieceSize: KiB,
    anchorTimeoutMs: 10_000,
    log,
    ...extra,
  };
}

const get = (path: string): Promise<Response> =>
  fetch(new URL(path, server.url), { headers: { authorization: `Bearer ${TOKEN}` } });

test('a seed serves the pieces it wrote while its download runs; a copy takes them, then commits on the final digest', async () => {
  const key = 'live-model';
  const s = await seeding(key);
  const live = s.offers[0];
  assert.ok(live, 'the seed publishes a live summary as soon as the files are listed');
  assert.equal(live.live, 'origin');
  assert.equal(live.count, 7 + 1, '7 pieces of weights.bin, 1 of config.json');
  // Half the weights are written: those pieces are hashed and served, the others are not there yet.
  await s.write('weights.bin', 0, 3 * KiB + 100);
  await eventually(async () => assert.equal((await get(piecePath(key, { file: 1, piece: 2 }))).status, 200));
  assert.equal((await get(piecePath(key, { file: 1, piece: 3 }))).status, 404, 'piece 3 is only partly written');
  const m = await get(manifestPath(key));
  assert.equal(
    m.headers.get(PROGRESS_HEADER),
    String(3 * KiB + 100),
    'the bytes written so far, partial piece included',
  );

  const refs: PeerRef[] = [{ node: 'seed', url: server.url, partial: true, summary: live }];
  let fetched = 0;
  const copyDir = join(base, 'copy-live');
  await mkdir(copyDir, { recursive: true });
  const copying = fetchFromPeers(
    request(key, copyDir, { summary: live, peers: refs, morePeers: () => refs, onBytes: (n) => (fetched += n) }),
  );
  await eventually(() => assert.equal(fetched, 3 * KiB, 'the three hashed pieces, before the seed has the rest'));

  await s.write('weights.bin', 3 * KiB + 100, WEIGHTS.length);
  await s.write('config.json', 0, CONFIG.length);
  await s.place('config.json');
  await s.place('weights.bin');
  await eventually(() => assert.equal(fetched, WEIGHTS.length + CONFIG.length));
  // Every piece is there, but nothing is committed until the seed, done, publishes its manifest's digest.
  const built = await buildManifest(s.dir, key, AbortSignal.timeout(5000), KiB, await s.seed.known());
  const reread = await buildManifest(s.dir, key, AbortSignal.timeout(5000), KiB);
  assert.ok(built.bytes.equals(reread.bytes), 'the hashes taken as the bytes were written are those of the files');
  const settled = await Promise.race([copying.then(() => 'ended'), new Promise((r) => setTimeout(r, 300, 'waits'))]);
  assert.equal(settled, 'waits', 'no commit before a complete peer published the digest');
  refs.push({ node: 'seed-done', url: server.url, summary: built.summary });
  const r = await copying;
  assert.deepEqual(r.summary, built.summary);
  assert.ok(r.manifest.equals(built.bytes), 'the manifest written beside the copy is the seed’s');
  assert.ok((await readFile(join(copyDir, 'weights.bin'))).equals(WEIGHTS));
  assert.ok((await readFile(join(copyDir, 'config.json'))).equals(CONFIG));
  s.seed.end();
  assert.equal((await get(manifestPath(key))).status, 404, 'ended: not served any more');
});

test('a live copy no complete peer vouches for in time is not committed; peers copying a live manifest are not asked for hashes', async () => {
  const key = 'live-unanchored';
  const s = await seeding(key);
  const live = s.offers[0]!;
  await s.write('weights.bin', 0, WEIGHTS.length);
  await s.write('config.json', 0, CONFIG.length);
  const dir = join(base, 'copy-unanchored');
  await mkdir(dir, { recursive: true });
  const seedRef: PeerRef = { node: 'seed', url: server.url, partial: true, summary: live };
  await assert.rejects(
    fetchFromPeers(request(key, dir, { summary: live, peers: [seedRef], anchorTimeoutMs: 300 })),
    (err: unknown) =>
      err instanceof DownloadError && err.code === 'SourceUnavailable' && /no complete peer/.test(err.message),
  );
  // Every piece verified against the seed's hashes, but none anchored: no file sits where a fallback would keep it.
  await assert.rejects(readFile(join(dir, 'weights.bin')), { code: 'ENOENT' });
  await assert.rejects(readFile(join(dir, 'config.json')), { code: 'ENOENT' });
  // The same server announced as a node that itself copies from peers: its hashes are nobody's word.
  const copier: PeerRef = { node: 'copier', url: server.url, partial: true, summary: { ...live, live: 'peers' } };
  await assert.rejects(
    fetchFromPeers(request(key, join(base, 'copy-unvouched'), { summary: live, peers: [copier] })),
    (err: unknown) => err instanceof DownloadError && /no peer served the manifest/.test(err.message),
  );
  s.seed.end();
});

test('a slow source is no stall: the copy waits for the seed as long as its written bytes grow', async () => {
  const key = 'live-slow';
  const s = await seeding(key);
  const live = s.offers[0]!;
  const refs: PeerRef[] = [{ node: 'seed', url: server.url, partial: true, summary: live }];
  const dir = join(base, 'copy-slow');
  await mkdir(dir, { recursive: true });
  let fetched = 0;
  // Hashes arrive about once a second, far apart against the 400 ms stall timeout; bytes every 50 ms.
  const copying = fetchFromPeers(
    request(key, dir, { summary: live, peers: refs, stallTimeoutMs: 400, onBytes: (n) => (fetched += n) }),
  );
  const failed = copying.then(
    () => undefined,
    (err: unknown) => err,
  );
  await s.write('config.json', 0, CONFIG.length);
  for (let at = 0; at < 2 * KiB; at += 64) {
    await s.write('weights.bin', at, at + 64);
    await new Promise((r) => setTimeout(r, 50));
  }
  await eventually(() => assert.equal(fetched, 2 * KiB + CONFIG.length));
  const early = await Promise.race([failed, new Promise((r) => setTimeout(r, 50, 'running'))]);
  assert.equal(early, 'running', `the copy is still waiting for the seed: ${String(early)}`);
  s.seed.end(); // the seed goes away: now the copy does stall, and gives up
  const err = await failed;
  assert.ok(err instanceof DownloadError && err.code === 'SourceUnavailable', String(err));
});

test('a seed that stops vouching (it now copies from peers) is asked for no more hashes', async () => {
  const key = 'live-demoted';
  const s = await seeding(key);
  const live = s.offers[0]!;
  await s.write('weights.bin', 0, 3 * KiB);
  const refs: PeerRef[] = [{ node: 'seed', url: server.url, partial: true, summary: live }];
  const dir = join(base, 'copy-demoted');
  await mkdir(dir, { recursive: true });
  let fetched = 0;
  const copying = fetchFromPeers(
    request(key, dir, {
      summary: live,
      peers: refs,
      morePeers: () => refs,
      stallTimeoutMs: 1000,
      anchorTimeoutMs: 300,
      onBytes: (n) => (fetched += n),
    }),
  ).then(
    () => undefined,
    (err: unknown) => err,
  );
  await eventually(() => assert.equal(fetched, 3 * KiB));
  refs[0] = { ...refs[0]!, summary: { ...live, live: 'peers' } }; // as its status says now
  await new Promise((r) => setTimeout(r, 100));
  await s.write('weights.bin', 3 * KiB, WEIGHTS.length);
  await s.write('config.json', 0, CONFIG.length);
  const err = await copying;
  assert.ok(err instanceof DownloadError && err.code === 'SourceUnavailable', String(err));
  assert.equal(fetched, 3 * KiB, 'no piece whose hash only a non-vouching peer gave');
  s.seed.end();
});

test('a source that restarts a file after pieces of it were served: the live offer is withdrawn, nothing more served', async () => {
  const key = 'live-restarted';
  const s = await seeding(key);
  await s.write('weights.bin', 0, 2 * KiB);
  await eventually(async () => assert.equal((await get(piecePath(key, { file: 1, piece: 0 }))).status, 200));
  s.seed.reset('weights.bin');
  assert.deepEqual(s.offers.slice(1), [undefined], 'the live summary is withdrawn');
  assert.equal((await get(piecePath(key, { file: 1, piece: 0 }))).status, 404);
  assert.equal((await s.seed.known()).size, 0, 'no hash of it is used for the manifest');
  s.seed.end();
});

test('live manifests: unknown hashes only under a live summary, whose digest must be that of the skeleton', () => {
  const m: PieceManifest = {
    version: 1,
    storageKey: 'k',
    pieceSize: KiB,
    files: [{ path: 'w.bin', size: 2 * KiB, pieces: ['a'.repeat(64), UNKNOWN_HASH] }],
  };
  const bytes = serializeManifest(m);
  const live = liveSummary(m, 'origin');
  assert.deepEqual(parseManifest(bytes, live, 'k', 4 * KiB, KiB), m);
  const other = liveSummary({ ...m, files: [{ ...m.files[0]!, path: 'x.bin' }] }, 'origin');
  assert.throws(
    () => parseManifest(bytes, other, 'k', 4 * KiB, KiB),
    (err: unknown) => err instanceof DownloadError && err.code === 'IntegrityMismatch' && /skeleton/.test(err.message),
  );
  const complete = { digest: digestOf(bytes), pieceSize: KiB, count: 2 };
  assert.throws(
    () => parseManifest(bytes, complete, 'k', 4 * KiB, KiB),
    (err: unknown) => err instanceof DownloadError && err.code === 'BadResponse' && /piece 1: hash/.test(err.message),
    'a complete manifest lists every hash',
  );
});

/**
 * A live copy by node 'x' from the seed, with three other copiers of it ('c1'–'c3', one TestPeer holding only
 * `offered`) that publish as copiers do. Resolves once the seed wrote every piece, with what x's fetch then does.
 * With `otherZone`, the seed is in another zone than x and c1–c3, and so is copier 'a1', which holds every piece.
 */
async function spreadCopy(
  key: string,
  graceMs: number,
  otherZone = false,
): Promise<{
  copying: Promise<Awaited<ReturnType<typeof fetchFromPeers>>>;
  copier: TestPeer;
  /** The copier in the other zone (otherZone), holding every piece. */
  across?: TestPeer;
  fetched: () => number;
  /** Bytes of the pieces x is a first receiver of, and the ids of the others (`file/piece`). */
  firstBytes: number;
  others: string[];
  anchor: () => Promise<void>;
}> {
  const s = await seeding(key);
  const live = s.offers[0]!;
  const src = join(base, `${key}-copier`);
  await mkdir(src, { recursive: true });
  await writeFile(join(src, 'weights.bin'), WEIGHTS);
  await writeFile(join(src, 'config.json'), CONFIG);
  const full = await buildManifest(src, key, AbortSignal.timeout(5000), KiB);
  const copier = await TestPeer.start(src, key, full.bytes);
  copier.holding = new Set();
  const names = ['c1', 'c2', 'c3'];
  const across = otherZone ? await TestPeer.start(src, key, full.bytes) : undefined;
  const copierOf = (node: string, url: string, sameZone?: boolean): PeerRef => ({
    node,
    url,
    partial: true,
    summary: { ...live, live: 'peers' as const },
    ...(sameZone === undefined ? {} : { sameZone }),
  });
  const refs: PeerRef[] = [
    { node: 'seed', url: server.url, partial: true, summary: live, ...(otherZone ? { sameZone: false } : {}) },
    ...names.map((node) => copierOf(node, copier.url, otherZone || undefined)),
    ...(across ? [copierOf('a1', across.url, false)] : []),
  ];
  const m = parseManifest(full.bytes, full.summary, key, 1024 * KiB, KiB);
  const firsts = firstReceiverOf('x', names, countPieces(m));
  const offsets = pieceOffsets(m);
  let firstBytes = 0;
  const others: string[] = [];
  for (const [i, f] of m.files.entries())
    for (let p = 0; p < f.pieces.length; p++)
      if (firsts[offsets[i]! + p]) firstBytes += Math.min(KiB, f.size - p * KiB);
      else others.push(`${i}/${p}`);
  assert.ok(others.length > 0 && firstBytes > 0, 'x is first receiver of some pieces, not of all');
  const dir = join(base, `copy-${key}`);
  await mkdir(dir, { recursive: true });
  let fetched = 0;
  const copying = fetchFromPeers(
    request(key, dir, {
      summary: live,
      peers: refs,
      morePeers: () => refs,
      self: 'x',
      receiverGraceMs: graceMs,
      onBytes: (n) => (fetched += n),
    }),
  );
  await s.write('weights.bin', 0, WEIGHTS.length);
  await s.write('config.json', 0, CONFIG.length);
  const anchor = async (): Promise<void> => {
    await s.place('config.json');
    await s.place('weights.bin');
    const built = await buildManifest(s.dir, key, AbortSignal.timeout(5000), KiB, await s.seed.known());
    refs.push({ node: 'seed-done', url: server.url, summary: built.summary });
    s.seed.end();
  };
  return { copying, copier, ...(across ? { across } : {}), fetched: () => fetched, firstBytes, others, anchor };
}

test('a live copy asks the seed at once only for the pieces it is a first receiver of; the others it copies from the copiers that offer them', async (t) => {
  const c = await spreadCopy('live-spread', 60_000);
  t.after(() => c.copier.close());
  await eventually(() => assert.equal(c.fetched(), c.firstBytes, 'its first pieces, from the seed'));
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(c.fetched(), c.firstBytes, 'the other pieces are waited for: no copier offers them yet');
  c.copier.holding = new Set(c.others); // the other copiers got them from the seed
  await eventually(() => assert.equal(c.fetched(), WEIGHTS.length + CONFIG.length));
  await c.anchor();
  const r = await c.copying;
  assert.equal(r.byPeer.get('seed'), c.firstBytes, 'the seed sent this node only the pieces it is first for');
  const fromCopiers = ['c1', 'c2', 'c3'].reduce((n, node) => n + (r.byPeer.get(node) ?? 0), 0);
  assert.equal(fromCopiers, WEIGHTS.length + CONFIG.length - c.firstBytes);
});

test('a live copy asks the seed for the other pieces too once no copier offered them within the grace', async (t) => {
  const c = await spreadCopy('live-spread-grace', 2000);
  t.after(() => c.copier.close());
  await eventually(() => assert.equal(c.fetched(), c.firstBytes, 'its first pieces, from the seed, at once'));
  await eventually(() => assert.equal(c.fetched(), WEIGHTS.length + CONFIG.length), { timeoutMs: 10_000 });
  await c.anchor();
  const r = await c.copying;
  assert.equal(r.byPeer.get('seed'), WEIGHTS.length + CONFIG.length, 'every piece from the seed, none from copiers');
});

test('a live copy asks peers in another zone at once only for the pieces it is first for among its own zone', async (t) => {
  const c = await spreadCopy('live-spread-zones', 60_000, true);
  t.after(() => Promise.all([c.copier.close(), c.across?.close()]));
  await eventually(() => assert.equal(c.fetched(), c.firstBytes, 'its first pieces, from the other zone'));
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(c.fetched(), c.firstBytes, 'the others wait for this zone, though a peer across offers every piece');
  c.copier.holding = new Set(c.others); // this zone's other copiers took them across
  await eventually(() => assert.equal(c.fetched(), WEIGHTS.length + CONFIG.length));
  await c.anchor();
  const r = await c.copying;
  const across = (r.byPeer.get('seed') ?? 0) + (r.byPeer.get('a1') ?? 0);
  assert.equal(across, c.firstBytes, 'only the pieces this node is first for in its zone crossed zones');
  const fromZone = ['c1', 'c2', 'c3'].reduce((n, node) => n + (r.byPeer.get(node) ?? 0), 0);
  assert.equal(fromZone, WEIGHTS.length + CONFIG.length - c.firstBytes);
});
