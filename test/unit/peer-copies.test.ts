// A copy in progress served to peers (the fan-out tree): a real fetch into a staging folder records its verified
// pieces, this node's real peer server serves them, and a third node copies from it before it is complete.
// Tokens are checked by a table reviewer (the apiserver's side is in test/integration/peer-server.test.ts).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { CopiesInProgress } from '../../daemon/peers/copies.ts';
import { fetchFromPeers, type PeerFetchRequest } from '../../daemon/peers/fetch.ts';
import {
  countBits,
  decodeHave,
  hasBit,
  havePath,
  manifestPath,
  piecePath,
  waitQuery,
  type ManifestSummary,
  type PieceManifest,
} from '../../daemon/peers/protocol.ts';
import type { PeerServer } from '../../daemon/peers/server.ts';
import { eventually } from '../../localcluster/eventually.ts';
import { createLogger } from '../../ops/logger.ts';
import { buildManifest, startTablePeerServer, TestPeer } from '../helpers/test-peer.ts';

const KiB = 1024;
const KEY = 'copy-model';
const TOKEN = 'daemon-token';
const FILES: Record<string, number> = { 'config.json': 300, 'weights.bin': 8 * KiB + 5 };
const log = createLogger('peer-copies-test', 'silent');

let base: string;
let src: string;
let model: { manifest: PieceManifest; bytes: Buffer; summary: ManifestSummary };
let copies: CopiesInProgress;
let server: PeerServer;
before(async () => {
  base = await mkdtemp(join(tmpdir(), 'modelcache-peer-copies-'));
  src = join(base, 'src');
  for (const [path, size] of Object.entries(FILES)) {
    await mkdir(dirname(join(src, path)), { recursive: true });
    await writeFile(join(src, path), randomBytes(size));
  }
  model = await buildManifest(src, KEY, KiB);
  copies = new CopiesInProgress();
  // The root holds no complete model: everything served comes from the copy in progress.
  server = await startTablePeerServer(join(base, 'root'), copies, TOKEN, log);
});
after(async () => {
  await server?.close();
  await rm(base, { recursive: true, force: true });
});

function request(dir: string, extra: Partial<PeerFetchRequest>): PeerFetchRequest {
  return {
    storageKey: KEY,
    workDir: dir,
    limitBytes: 1024 * KiB,
    summary: model.summary,
    peers: [],
    token: () => Promise.resolve(TOKEN),
    signal: AbortSignal.timeout(30_000),
    stallTimeoutMs: 10_000,
    backoff: { baseMs: 5, maxMs: 20 },
    haveRefreshMs: 10,
    minPieceSize: KiB,
    log,
    ...extra,
  };
}

const get = (path: string, token = TOKEN): Promise<Response> =>
  fetch(new URL(path, server.url), { headers: { authorization: `Bearer ${token}` } });

/** The piece's bytes as the source folder holds them. */
async function pieceOf(file: number, piece: number): Promise<Buffer> {
  const f = model.manifest.files[file]!;
  return (await readFile(join(src, f.path))).subarray(piece * KiB, (piece + 1) * KiB);
}

test('a copy in progress: its manifest, `have` and verified pieces are served, a piece not yet verified is 404; a third node copies from it; ended, nothing', async (t) => {
  const weights = model.manifest.files.findIndex((f) => f.path === 'weights.bin');
  const config = 1 - weights;
  // The seed itself holds only part yet: config.json whole and pieces 0-2 of weights.bin.
  const seed = await TestPeer.start(src, KEY, model.bytes);
  t.after(() => seed.close());
  seed.holding = new Set([`${config}/0`, `${weights}/0`, `${weights}/1`, `${weights}/2`]);
  const middle = join(base, 'middle');
  await mkdir(middle, { recursive: true });
  const copying = fetchFromPeers(request(middle, { copies, peers: [{ node: 'seed', url: seed.url, partial: true }] }));

  await eventually(() => assert.equal(countBits(copies.get(KEY)?.have().bits ?? new Uint8Array()), 4));
  const m = await get(manifestPath(KEY));
  assert.equal(m.status, 200);
  assert.ok(Buffer.from(await m.arrayBuffer()).equals(model.bytes), 'the very manifest bytes published');
  const have = decodeHave(await (await get(havePath(KEY))).json(), 10);
  assert.ok(have, 'a well-formed have');
  const offsets = [0, model.manifest.files[0]!.pieces.length];
  const held = (file: number, piece: number): boolean => hasBit(have, offsets[file]! + piece);
  assert.ok(held(config, 0) && held(weights, 0) && held(weights, 2) && !held(weights, 3), 'the verified pieces');
  // config.json is whole, so placed at its path; weights.bin's pieces are still in its partial file.
  for (const [file, piece] of [
    [config, 0],
    [weights, 1],
  ] as const) {
    const r = await get(piecePath(KEY, { file, piece }));
    assert.equal(r.status, 200, `${file}/${piece}`);
    assert.ok(Buffer.from(await r.arrayBuffer()).equals(await pieceOf(file, piece)), `${file}/${piece} bytes`);
  }
  assert.equal((await get(piecePath(KEY, { file: weights, piece: 3 }))).status, 404, 'not verified yet: 404');
  assert.equal((await get(havePath(KEY), 'nope')).status, 401, 'authentication first');

  // A third node copies from the one still copying; the seed joins it later (once the middle's fetch ends, its copy
  // is served again only after the daemon commits it, which this test does not do).
  const last = join(base, 'last');
  await mkdir(last, { recursive: true });
  let fromMiddle = 0;
  const third = fetchFromPeers(
    request(last, {
      peers: [{ node: 'middle', url: server.url, partial: true }],
      morePeers: () => (fromMiddle > 0 ? [{ node: 'seed', url: seed.url, partial: true }] : []),
      onBytes: (n, node) => void (node === 'middle' && (fromMiddle += n)),
    }),
  );
  await eventually(() => assert.ok(fromMiddle > 0, 'a piece from the copy in progress'));
  seed.holding = undefined; // the seed is complete
  const [, r3] = await Promise.all([copying, third]);
  assert.equal((r3.byPeer.get('middle') ?? 0) + (r3.byPeer.get('seed') ?? 0), 300 + 8 * KiB + 5);
  for (const path of Object.keys(FILES))
    assert.ok((await readFile(join(last, path))).equals(await readFile(join(src, path))), `${path} identical`);

  assert.equal(copies.get(KEY), undefined, 'the ended copy is no longer recorded');
  assert.equal((await get(manifestPath(KEY))).status, 404, 'nor served');
  assert.equal((await get(havePath(KEY))).status, 404);
});

test('a long-polled `have` of a copy in progress is answered once it holds more, or once it ends', async () => {
  const key = 'long-poll-model';
  const dir = join(base, 'long-poll');
  await mkdir(dir, { recursive: true });
  const record = copies.begin(key, dir, model.manifest, { bytes: model.bytes });
  const count = 10;
  const haveOf = async (r: Response): Promise<Uint8Array> => {
    assert.equal(r.status, 200);
    const bits = decodeHave(await r.json(), count);
    assert.ok(bits, 'a well-formed have');
    return bits;
  };
  /** The answer, or 'pending' when none came within `ms` (the server holds it for up to 30 s). */
  const within = async <T>(p: Promise<T>, ms: number): Promise<T | 'pending'> => {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([p, new Promise<'pending'>((resolve) => (timer = setTimeout(resolve, ms, 'pending')))]);
    } finally {
      clearTimeout(timer);
    }
  };

  // Asked with what it holds (nothing): held back until a piece is verified.
  const asked = get(`${havePath(key)}${waitQuery(0, 60_000)}`);
  assert.equal(await within(asked, 300), 'pending', 'no news: no answer yet');
  record.verified({ file: 1, piece: 2 });
  const answer = await within(asked, 10_000);
  assert.notEqual(answer, 'pending', 'answered once the copy holds more');
  const bits = await haveOf(answer as Response);
  assert.ok(hasBit(bits, model.manifest.files[0]!.pieces.length + 2), 'with the piece just verified');

  // Asked with more than it holds: held back until it holds more than that, not at the next piece.
  const more = get(`${havePath(key)}${waitQuery(2, 60_000)}`);
  record.verified({ file: 1, piece: 3 });
  assert.equal(await within(more, 300), 'pending', 'two pieces held, more than two asked for');
  record.verified({ file: 1, piece: 4 });
  assert.notEqual(await within(more, 10_000), 'pending', 'three held: answered');

  // Asked with less than it holds: at once. With a query that asks no wait: at once too.
  assert.notEqual(await within(get(`${havePath(key)}${waitQuery(0, 60_000)}`), 10_000), 'pending');
  assert.notEqual(await within(get(`${havePath(key)}?held=1&wait=0`), 10_000), 'pending');

  // The manifest of a copy in progress is long-polled alike; the copy ending answers it (it is not served any more).
  const manifest = get(`${manifestPath(key)}${waitQuery(3, 60_000)}`);
  assert.equal(await within(manifest, 300), 'pending');
  record.end();
  const ended = await within(manifest, 10_000);
  assert.notEqual(ended, 'pending', 'answered once the copy ended');
  assert.equal((ended as Response).status, 404, 'no copy of it any more');
});
