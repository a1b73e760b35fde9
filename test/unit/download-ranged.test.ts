import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_DOWNLOAD_OPTIONS, type DownloadOptions } from '../../download/types.ts';
import { DownloadError } from '../../download/errors.ts';
import { fetchObject, type FetchContext, type RemoteObject } from '../../download/ranged.ts';
import { HttpClient } from '../../download/http-client.ts';
import { generated, Origin, toBuffer } from '../../localcluster/origin.ts';

const MiB = 1024 * 1024;
let origin: Origin;
let base: string;
const body = toBuffer(generated(10 * MiB + 77, 3));
const md5 = createHash('md5').update(body).digest('hex');

before(async () => {
  origin = await Origin.start();
  base = await mkdtemp(join(tmpdir(), 'modelcache-ranged-'));
});
after(async () => {
  await origin.close();
  await rm(base, { recursive: true, force: true });
});

const opts = (o: Partial<DownloadOptions> = {}): DownloadOptions => ({
  ...DEFAULT_DOWNLOAD_OPTIONS,
  partSizeBytes: 4 * MiB,
  partParallelism: 2,
  backoffBaseMs: 10,
  backoffMaxMs: 50,
  stallTimeoutMs: 2000,
  ...o,
});
let n = 0;
function fetchTo(
  obj: RemoteObject,
  o: DownloadOptions,
  signal = AbortSignal.timeout(30_000),
  partial = join(base, `f${n++}`),
  more: Partial<FetchContext> = {},
) {
  let bytes = 0;
  const http = new HttpClient(o);
  const result = fetchObject(obj, partial, {
    o,
    http,
    signal,
    authorize: (_u, h) => ({ ...h, authorization: 'Bearer t' }),
    onBytes: (k) => (bytes += k),
    limit: 20 * MiB,
    ...more,
  });
  void result.finally(() => http.close()).catch(() => undefined);
  return { partial, result, bytes: () => bytes };
}

test('ranged: parts in parallel, If-Match on each, a reset part resumes from its last byte alone, digest checked', async () => {
  origin.set('/big', body, { etag: '"v1"' });
  origin.fault('/big', { resetAfterBytes: 1_500_000 });
  const { partial, result, bytes } = fetchTo(
    { url: origin.url('/big'), size: body.length, etag: '"v1"', digest: { algorithm: 'md5', hex: md5 } },
    opts(),
  );
  assert.equal(await result, body.length);
  assert.ok((await readFile(partial)).equals(body), 'bytes identical');
  assert.equal(bytes(), body.length, 'progress adds up to the size');
  const reqs = origin.requestsFor('/big');
  assert.equal(reqs.length, 4, `3 parts + 1 retry: ${JSON.stringify(reqs)}`);
  const ranges = reqs.map((r) => r.range);
  const reset = reqs[0]!.range!; // the first request got the reset
  const first = Number(/bytes=(\d+)-/.exec(reset)![1]);
  assert.ok(
    ranges.includes(`bytes=${first + 1_500_000}-${first + 4 * MiB - 1}`),
    `retry starts after the bytes already written: ${ranges.join(' ')}`,
  );
  assert.ok(ranges.includes(`bytes=${8 * MiB}-${body.length - 1}`), 'last part ends at the last byte');
});

test('ranged: after a crash (abort) a new run fetches only the missing bytes, and a changed object is refused', async () => {
  origin.set('/slow', body, { etag: '"v1"', rate: 8 * MiB });
  const partial = join(base, 'crash');
  const ac = new AbortController();
  const first = fetchTo({ url: origin.url('/slow'), size: body.length, etag: '"v1"' }, opts(), ac.signal, partial);
  const t = setInterval(() => {
    if (first.bytes() > 3 * MiB) ac.abort(new Error('crash'));
  }, 20);
  await assert.rejects(first.result, (e: unknown) => e instanceof DownloadError && e.code === 'Cancelled');
  clearInterval(t);
  const before = origin.requestsFor('/slow').length;
  const had = first.bytes();
  origin.set('/slow', body, { etag: '"v1"' });
  const second = fetchTo({ url: origin.url('/slow'), size: body.length, etag: '"v1"' }, opts(), undefined, partial);
  assert.equal(await second.result, body.length);
  assert.ok((await readFile(partial)).equals(body));
  const resumed = origin.requestsFor('/slow').slice(before);
  const fetched = resumed.reduce((a, r) => {
    const m = /bytes=(\d+)-(\d+)/.exec(r.range!)!;
    return a + Number(m[2]) - Number(m[1]) + 1;
  }, 0);
  assert.ok(fetched <= body.length - had + 2 * MiB, `fetched ${fetched} after a crash at ${had} of ${body.length}`);
  assert.ok(fetched < body.length, 'not everything again');
  await assert.rejects(stat(`${partial}.state.json`), 'state removed when complete');

  origin.set('/changed', body, { etag: '"v2"' });
  const changed = fetchTo({ url: origin.url('/changed'), size: body.length, etag: '"v1"' }, opts());
  await assert.rejects(
    changed.result,
    (e: unknown) =>
      e instanceof DownloadError &&
      e.code === 'IntegrityMismatch' &&
      /changed while it was being downloaded/.test(e.message),
  );
});

test('ranged: a wrong digest, a short body and a server ignoring Range are clear failures; one stream without a size works', async () => {
  origin.set('/d', body, { etag: '"v1"' });
  const bad = fetchTo(
    { url: origin.url('/d'), size: body.length, digest: { algorithm: 'md5', hex: '0'.repeat(32) } },
    opts(),
  );
  await assert.rejects(
    bad.result,
    (e: unknown) => e instanceof DownloadError && e.code === 'IntegrityMismatch' && /md5/.test(e.message),
  );
  origin.set('/short', body.subarray(0, 100), {});
  const short = fetchTo({ url: origin.url('/short'), size: 200 }, opts({ attempts: 2 }));
  await assert.rejects(short.result, (e: unknown) => e instanceof DownloadError && e.code === 'IntegrityMismatch');
  origin.set('/norange', body, { range: false });
  const norange = fetchTo({ url: origin.url('/norange'), size: body.length }, opts());
  await assert.rejects(
    norange.result,
    (e: unknown) => e instanceof DownloadError && /ignores Range requests; set --parallel-parts 1/.test(e.message),
  );
  const single = fetchTo({ url: origin.url('/norange') }, opts());
  assert.equal(await single.result, body.length);
  assert.ok((await readFile(single.partial)).equals(body));
});

/** A file of the body's size holding only the given 4 MiB pieces of `content` (zeros elsewhere), as a copy leaves it. */
async function piecesFile(name: string, pieces: number[], content = body): Promise<string> {
  const buf = Buffer.alloc(content.length);
  for (const i of pieces) content.copy(buf, i * 4 * MiB, i * 4 * MiB, (i + 1) * 4 * MiB);
  const file = join(base, name);
  await writeFile(file, buf);
  return file;
}

test('ranged: pieces a failed copy verified are kept where the digest checks them; only the rest is fetched', async () => {
  const digest = { algorithm: 'md5' as const, hex: md5 };
  origin.set('/kept', body, { etag: '"v1"' });
  const obj = { url: origin.url('/kept'), size: body.length, etag: '"v1"', digest };
  const kept = (file: string, pieces: number[]) => ({
    kept: { path: 'kept', size: body.length, file, pieceSize: 4 * MiB, pieces },
  });

  // Parts of the piece size: pieces 0 and 2 are kept, part 1 alone comes from the origin.
  let taken = 0;
  const parts = fetchTo(obj, opts(), undefined, undefined, {
    ...kept(await piecesFile('k1', [0, 2]), [0, 2]),
    onKept: (k) => (taken += k),
  });
  assert.equal(await parts.result, body.length);
  assert.ok((await readFile(parts.partial)).equals(body), 'bytes identical');
  assert.equal(origin.bytesSent.get('/kept'), 4 * MiB, 'only the missing part was sent');
  assert.equal(taken, body.length - 4 * MiB, 'the kept bytes are reported');
  assert.equal(parts.bytes(), body.length, 'progress adds up to the size');
  await assert.rejects(stat(join(base, 'k1')), 'the kept file was moved into the download');

  // One stream: the kept pieces from the first byte on without a gap (0; not 2, after the gap).
  origin.bytesSent.clear();
  const stream = fetchTo(
    obj,
    opts({ partParallelism: 1 }),
    undefined,
    undefined,
    kept(await piecesFile('k2', [0, 2]), [0, 2]),
  );
  assert.equal(await stream.result, body.length);
  assert.ok((await readFile(stream.partial)).equals(body));
  assert.equal(origin.bytesSent.get('/kept'), body.length - 4 * MiB, 'fetched from the first missing byte on');

  // No digest to check them: not kept, removed, the whole object fetched.
  origin.bytesSent.clear();
  const { digest: _d, ...unchecked } = obj;
  const plain = fetchTo(unchecked, opts(), undefined, undefined, kept(await piecesFile('k3', [0, 1, 2]), [0, 1, 2]));
  assert.equal(await plain.result, body.length);
  assert.equal(origin.bytesSent.get('/kept'), body.length, 'everything from the origin');
  await assert.rejects(stat(join(base, 'k3')), 'the unchecked pieces were removed');

  // Pieces of another version of the file (or a lying copy): the digest refuses them, the object comes again whole.
  origin.bytesSent.clear();
  const other = Buffer.from(body);
  other[5] = other[5]! ^ 0xff;
  let net = 0;
  const wrong = fetchTo(obj, opts(), undefined, undefined, {
    ...kept(await piecesFile('k4', [0], other), [0]),
    onKept: (k) => (net += k),
  });
  assert.equal(await wrong.result, body.length);
  assert.ok((await readFile(wrong.partial)).equals(body), 'the bytes of the source, none of the kept ones');
  assert.equal(origin.bytesSent.get('/kept'), body.length - 4 * MiB + body.length, 'the rest, then all of it again');
  assert.equal(net, 0, 'no kept byte counts');
  assert.equal(wrong.bytes(), body.length, 'progress adds up to the size');
});
