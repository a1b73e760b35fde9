import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { request, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { PeerAuthenticator } from '../../daemon/peers/auth.ts';
import { buildManifest, writeManifest } from '../../daemon/peers/manifest.ts';
import {
  MANIFEST_FILE,
  manifestPath,
  PEER_AUDIENCE,
  piecePath,
  type ManifestSummary,
} from '../../daemon/peers/protocol.ts';
import { peerRoutes, startPeerServer, type PeerServer } from '../../daemon/peers/server.ts';
import { commitModel } from '../../disk/atomic.ts';
import { modelPaths } from '../../disk/layout.ts';
import { KubeClient } from '../../kube/client.ts';
import { NAMESPACES, SERVICE_ACCOUNTS } from '../../kube/resources.ts';
import { requestToken, reviewToken } from '../../kube/token-review.ts';
import { ControlPlane } from '../../localcluster/control-plane.ts';
import { eventually } from '../../localcluster/eventually.ts';
import { createLogger } from '../../ops/logger.ts';
import { uniqueName, useControlPlane } from '../helpers/cluster.ts';
import { grantShippedRbac } from '../helpers/kube-fixtures.ts';

const PIECE = 64 * 1024;
/** The product's service-account name, in a namespace this file owns. */
const ns = uniqueName('peer-server');
const DAEMON_USER = `system:serviceaccount:${ns}:modelcache-daemon`;

interface Reply {
  status: number;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

interface Model {
  key: string;
  files: Record<string, Buffer>;
  summary: ManifestSummary;
}

const tokens = { daemon: '', other: '', wrongAudience: '' };
const served: Array<{ bytes: number; key: string }> = [];
const logLines: string[] = [];
let root = '';
let outside = '';
let reviewer: KubeClient;
let unprivileged: KubeClient;
let server: PeerServer;
let noRbacServer: PeerServer;
let model: Model;
let big: Model;

/** Bytes that differ from piece to piece. */
function content(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (i * 31 + seed * 7 + (i >> 12)) % 251;
  return b;
}

/** A model committed the way the daemon does it: files in staging, the manifest beside them, the marker last. */
async function commit(key: string, files: Record<string, Buffer>, pieceSize: number): Promise<Model> {
  const staging = modelPaths(root, key).staging;
  for (const [p, b] of Object.entries(files)) {
    await mkdir(join(staging, p, '..'), { recursive: true });
    await writeFile(join(staging, p), b);
  }
  const built = await buildManifest(staging, key, new AbortController().signal, pieceSize);
  await writeManifest(staging, built.bytes);
  const bytes = Object.values(files).reduce((n, b) => n + b.length, 0);
  await commitModel(root, key, {
    uri: `s3://bucket/${key}`,
    bytes,
    files: Object.keys(files).length,
    pieces: built.summary,
  });
  return { key, files, summary: built.summary };
}

/** GET (or another method) with the path sent exactly as written: fetch would normalise '..' away. */
function send(
  base: string,
  path: string,
  token?: string,
  method = 'GET',
  opts: { hold?: (res: IncomingMessage) => void } = {},
): Promise<Reply> {
  const u = new URL(base);
  const headers: Record<string, string> = token === undefined ? {} : { authorization: `Bearer ${token}` };
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path, method, headers, agent: false }, (res) => {
      if (opts.hold) {
        opts.hold(res);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.alloc(0) });
        return;
      }
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

const get = (path: string, token?: string): Promise<Reply> => send(server.url, path, token);

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

const cluster = useControlPlane({
  controllerManager: false,
  setup: async (c) => {
    await c.client.create(NAMESPACES, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
    for (const name of ['modelcache-daemon', 'someone-else'])
      await c.client.create(SERVICE_ACCOUNTS, {
        apiVersion: 'v1',
        kind: 'ServiceAccount',
        metadata: { name, namespace: ns },
      });
    tokens.daemon = await requestToken(c.client, ns, 'modelcache-daemon', [PEER_AUDIENCE], 3600);
    tokens.other = await requestToken(c.client, ns, 'someone-else', [PEER_AUDIENCE], 3600);
    tokens.wrongAudience = await requestToken(c.client, ns, 'modelcache-daemon', ['not-the-peers'], 3600);

    // The reviewing daemon runs with exactly the shipped daemon RBAC; a second one with none at all.
    await grantShippedRbac(c.client, 'daemon', ControlPlane.username('tester-1'));
    reviewer = KubeClient.fromKubeconfig({ kubeconfig: await c.cp.kubeconfigFor('tester-1') });
    unprivileged = KubeClient.fromKubeconfig({ kubeconfig: await c.cp.kubeconfigFor('tester-3') });

    root = await mkdtemp(join(tmpdir(), 'mc-peer-server-'));
    outside = await mkdtemp(join(tmpdir(), 'mc-peer-outside-'));
    model = await commit(
      'model-a',
      {
        'weights.bin': content(3 * PIECE + 123, 1),
        'sub/config.json': content(200, 2),
        'empty.txt': Buffer.alloc(0),
      },
      PIECE,
    );
    // One piece larger than every socket buffer on the way: held unread, its response stays in flight.
    big = await commit('model-big', { 'huge.bin': content(64 * 1024 * 1024, 3) }, 64 * 1024 * 1024);

    const sink = new Writable({
      write: (chunk: Buffer, _e, cb) => {
        logLines.push(chunk.toString());
        cb();
      },
    });
    const log = createLogger('peer-server', 'debug', sink);
    const auth = new PeerAuthenticator({
      review: (token, signal) => reviewToken(reviewer, token, [PEER_AUDIENCE], signal),
      allowed: [DAEMON_USER],
    });
    const onServed = (bytes: number, key: string): void => void served.push({ bytes, key });
    server = await startPeerServer('127.0.0.1:0', peerRoutes(root, { auth, maxUploads: 1, log, onServed }));
    const noRbac = new PeerAuthenticator({
      review: (token, signal) => reviewToken(unprivileged, token, [PEER_AUDIENCE], signal),
      allowed: [DAEMON_USER],
    });
    noRbacServer = await startPeerServer('127.0.0.1:0', peerRoutes(root, { auth: noRbac, maxUploads: 4, log }));
  },
  teardown: async () => {
    await server?.close();
    await noRbacServer?.close();
    await reviewer?.close();
    await unprivileged?.close();
    await rm(root, { recursive: true, force: true });
    await rm(outside, { recursive: true, force: true });
  },
});

/** The file's piece as the test computes it from the bytes it wrote. */
function pieceOf(m: Model, path: string, piece: number, pieceSize = PIECE): Buffer {
  return m.files[path]!.subarray(piece * pieceSize, (piece + 1) * pieceSize);
}

/** Index of `path` in the manifest (files sorted by path). */
function fileIndex(m: Model, path: string): number {
  return Object.keys(m.files).sort().indexOf(path);
}

test('no token, a garbage token or one for another audience: 401 with WWW-Authenticate, no bytes', async () => {
  const path = piecePath(model.key, { file: fileIndex(model, 'weights.bin'), piece: 0 });
  for (const [why, token] of [
    ['no token', undefined],
    ['garbage', 'not-a-token'],
    ['another audience', tokens.wrongAudience],
  ] as const) {
    const r = await get(path, token);
    assert.equal(r.status, 401, why);
    assert.equal(r.headers['www-authenticate'], 'Bearer', why);
    assert.equal(r.headers['content-type'], 'application/json', why);
  }
  // Authentication comes first: a POST without a token learns nothing else.
  assert.equal((await send(server.url, path, undefined, 'POST')).status, 401);
});

test("another service account's token: 403", async () => {
  const r = await get(manifestPath(model.key), tokens.other);
  assert.equal(r.status, 403);
  assert.match(JSON.parse(r.body.toString()).error as string, /someone-else/);
});

test("the daemon's token: every piece is exactly the file's bytes, the manifest hashes to the digest", async () => {
  const m = await get(manifestPath(model.key), tokens.daemon);
  assert.equal(m.status, 200);
  assert.equal(m.headers['content-type'], 'application/json');
  assert.equal(`sha256:${sha256(m.body)}`, model.summary.digest);
  assert.ok(m.body.equals(await readFile(join(modelPaths(root, model.key).final, MANIFEST_FILE))));

  const before = served.length;
  const weights = model.files['weights.bin']!;
  const parts: Buffer[] = [];
  for (let piece = 0; piece < 4; piece++) {
    const r = await get(piecePath(model.key, { file: fileIndex(model, 'weights.bin'), piece }), tokens.daemon);
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'application/octet-stream');
    assert.equal(Number(r.headers['content-length']), r.body.length);
    assert.ok(r.body.equals(pieceOf(model, 'weights.bin', piece)), `piece ${piece}`);
    parts.push(r.body);
  }
  assert.ok(Buffer.concat(parts).equals(weights), 'the pieces make the file');
  assert.equal(parts[3]!.length, 123, 'the last piece is the rest of the file');
  const config = await get(
    piecePath(model.key, { file: fileIndex(model, 'sub/config.json'), piece: 0 }),
    tokens.daemon,
  );
  assert.ok(config.body.equals(model.files['sub/config.json']!));
  assert.deepEqual(
    served.slice(before).map((s) => s.bytes),
    [PIECE, PIECE, PIECE, 123, 200],
  );
  assert.ok(served.slice(before).every((s) => s.key === model.key));
});

test('keys not complete here, ids out of range: 404; malformed ids and keys: 400; other methods: 405', async () => {
  // A folder with files and a manifest but no marker is not complete.
  const partial = modelPaths(root, 'partial-1').final;
  await mkdir(partial, { recursive: true });
  await writeFile(join(partial, 'w.bin'), content(100, 5));
  await writeManifest(partial, (await buildManifest(partial, 'partial-1', new AbortController().signal, PIECE)).bytes);
  for (const path of [
    manifestPath('partial-1'),
    piecePath('partial-1', { file: 0, piece: 0 }),
    manifestPath('absent-key'),
    piecePath(model.key, { file: 99, piece: 0 }),
    piecePath(model.key, { file: fileIndex(model, 'weights.bin'), piece: 4 }),
    piecePath(model.key, { file: fileIndex(model, 'empty.txt'), piece: 0 }),
    `/v1/peer/models/${model.key}/nothing`,
  ])
    assert.equal((await get(path, tokens.daemon)).status, 404, path);
  for (const path of [
    `/v1/peer/models/${model.key}/pieces/x/0`,
    `/v1/peer/models/${model.key}/pieces/0/-1`,
    `/v1/peer/models/${model.key}/pieces/0/1.5`,
    `/v1/peer/models/${model.key}/pieces/0/99999999999999999999`,
    '/v1/peer/models/..%2Fmodel-a/manifest',
    '/v1/peer/models/-bad/manifest',
    '/v1/peer/models/%zz/manifest',
  ])
    assert.equal((await get(path, tokens.daemon)).status, 400, path);
  for (const method of ['POST', 'PUT', 'DELETE', 'HEAD']) {
    const r = await send(server.url, manifestPath(model.key), tokens.daemon, method);
    assert.equal(r.status, 405, method);
    assert.equal(r.headers.allow, 'GET');
  }
});

test('path tricks, and links planted after the manifest was made, never serve bytes from outside', async () => {
  const secret = Buffer.from('TOP-SECRET-'.repeat(30));
  await writeFile(join(outside, 'secret'), secret);
  const tricky = await commit(
    'model-tricks',
    { 'a.bin': content(secret.length, 7), 'dir/b.bin': content(secret.length, 8), 'c.bin': content(10, 9) },
    PIECE,
  );
  const final = modelPaths(root, tricky.key).final;
  const refusedNotSecret = async (path: string): Promise<void> => {
    const r = await get(path, tokens.daemon);
    assert.notEqual(r.status, 200, path);
    assert.ok(!r.body.toString().includes('TOP-SECRET'), path);
  };
  for (const path of [
    `/v1/peer/models/../../${outside}/secret`,
    '/v1/peer/models/%2e%2e/manifest',
    `/v1/peer/models/${tricky.key}/pieces/0/0/../../../../../secret`,
    `/v1/peer/models/${tricky.key}%2F..%2F..%2Fsecret/manifest`,
    `/v1/peer/models/${tricky.key}/..%2F..%2F/pieces/0/0`,
  ])
    await refusedNotSecret(path);

  // A file replaced by a link (same size) to a file outside, a folder replaced by a link to one outside.
  await rm(join(final, 'a.bin'));
  await symlink(join(outside, 'secret'), join(final, 'a.bin'));
  await mkdir(join(outside, 'dir'));
  await writeFile(join(outside, 'dir', 'b.bin'), secret);
  await rename(join(final, 'dir'), join(outside, 'was-dir'));
  await symlink(join(outside, 'dir'), join(final, 'dir'));
  // A file whose size changed since the manifest was made.
  await rm(join(final, 'c.bin'));
  await writeFile(join(final, 'c.bin'), content(11, 9));
  await refusedNotSecret(piecePath(tricky.key, { file: fileIndex(tricky, 'a.bin'), piece: 0 }));
  await refusedNotSecret(piecePath(tricky.key, { file: fileIndex(tricky, 'dir/b.bin'), piece: 0 }));
  assert.equal(
    (await get(piecePath(tricky.key, { file: fileIndex(tricky, 'c.bin'), piece: 0 }), tokens.daemon)).status,
    404,
  );
  // The manifest itself replaced by a link to a copy outside is no manifest either.
  const manifest = join(final, MANIFEST_FILE);
  await writeFile(join(outside, 'manifest'), await readFile(manifest));
  await rm(manifest);
  await symlink(join(outside, 'manifest'), manifest);
  assert.equal((await get(manifestPath(tricky.key), tokens.daemon)).status, 404);
});

test('with maxUploads 1, a second piece while one is in flight gets 429 with Retry-After; the slot frees', async () => {
  let held: IncomingMessage | undefined;
  const first = await send(server.url, piecePath(big.key, { file: 0, piece: 0 }), tokens.daemon, 'GET', {
    hold: (res) => (held = res),
  });
  assert.equal(first.status, 200, 'the big piece is being sent and is not read');
  const second = await get(
    piecePath(model.key, { file: fileIndex(model, 'sub/config.json'), piece: 0 }),
    tokens.daemon,
  );
  assert.equal(second.status, 429);
  assert.equal(second.headers['retry-after'], '1');
  // The manifest is not a piece: it is answered while the piece is in flight.
  assert.equal((await get(manifestPath(big.key), tokens.daemon)).status, 200);
  held?.destroy();
  await eventually(async () => {
    const r = await get(piecePath(model.key, { file: fileIndex(model, 'sub/config.json'), piece: 0 }), tokens.daemon);
    assert.equal(r.status, 200);
  });
  assert.ok(!served.some((s) => s.key === big.key), 'a piece the peer dropped is not counted as served');
});

test('with maxUploads 1, a peer asking for each piece as soon as the last arrived is never refused, each counted', async () => {
  const before = served.length;
  const path = piecePath(model.key, { file: fileIndex(model, 'sub/config.json'), piece: 0 });
  const statuses: number[] = [];
  for (let i = 0; i < 60; i++) statuses.push((await get(path, tokens.daemon)).status);
  assert.deepEqual(new Set(statuses), new Set([200]), `no 429 between pieces asked one after another: ${statuses}`);
  assert.equal(served.length - before, 60, 'every piece counted served by the time it arrived');
});

test('a reviewer without the shipped RBAC cannot review: 503, never admitted', async () => {
  const r = await send(noRbacServer.url, manifestPath(model.key), tokens.daemon);
  assert.equal(r.status, 503);
});

test('an admitted token is remembered a while without the apiserver; an unknown one is not admitted then', async () => {
  assert.equal((await get(manifestPath(model.key), tokens.daemon)).status, 200);
  await cluster.cp.stopApiserver();
  assert.equal((await get(manifestPath(model.key), tokens.daemon)).status, 200, 'admitted within cacheMs');
  assert.equal((await get(manifestPath(model.key), tokens.other)).status, 503, 'a refusal is never remembered');
  const fresh = await get(manifestPath(model.key), `${tokens.daemon.slice(0, -2)}xx`);
  assert.equal(fresh.status, 503, 'another token needs a review');
});

test('no log line carries a token', () => {
  assert.ok(logLines.length > 0);
  for (const t of Object.values(tokens)) assert.ok(!logLines.some((l) => l.includes(t.slice(-40))));
});
