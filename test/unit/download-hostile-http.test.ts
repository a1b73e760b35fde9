import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { access, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { downloadModel, type DownloadRequest } from '../../download/fetch.ts';
import { fetchObject } from '../../download/ranged.ts';
import { HttpClient } from '../../download/http-client.ts';
import { DEFAULT_DOWNLOAD_OPTIONS } from '../../download/types.ts';
import { makeTar } from '../../localcluster/archives.ts';
import { downloadFailure } from '../helpers/download-errors.ts';
import { generated, Origin, toBuffer } from '../../localcluster/origin.ts';

// Hostile and careless HTTP origins: an attempt whose archive fails ends at once, a resume never
// splices two objects, a torn resume file never blocks a model, redirects never leak credentials.

let origin: Origin;
let other: Origin;
let base: string;
const unhandled: unknown[] = [];
const record = (err: unknown): void => void unhandled.push(err);
before(async () => {
  process.on('unhandledRejection', record);
  origin = await Origin.start();
  other = await Origin.start();
  base = await mkdtemp(join(tmpdir(), 'modelcache-hostile-http-'));
});
after(async () => {
  process.off('unhandledRejection', record);
  await origin.close();
  await other.close();
  await rm(base, { recursive: true, force: true });
});

const FAST = { attempts: 4, backoffBaseMs: 20, backoffMaxMs: 100, stallTimeoutMs: 60_000 };
/** The first answer stops after `bytes` (delivered, then silence): the attempt stalls and the next one resumes. */
const STALL = (bytes: number) => ({ stallAfterBytes: bytes, stallMs: 3000 });
const STALLING = { ...FAST, stallTimeoutMs: 300 };
let n = 0;
async function workDir(): Promise<string> {
  const d = join(base, `m${n++}`, 'work');
  await mkdir(d, { recursive: true });
  return d;
}
function req(uri: string, dir: string, extra: Partial<DownloadRequest> = {}): DownloadRequest {
  return {
    uri,
    workDir: dir,
    maxBytes: 20 * 1024 * 1024,
    signal: AbortSignal.timeout(60_000),
    options: FAST,
    ...extra,
  };
}
const exists = (p: string): Promise<boolean> =>
  access(p).then(
    () => true,
    () => false,
  );
/** A tar.gz whose first entry is `first`, then enough incompressible bytes to stream for a long time. */
async function longArchive(first: string): Promise<Buffer> {
  return makeTar(
    [
      { name: first, content: 'pwned' },
      { name: 'model/weights.bin', content: randomBytes(3_000_000) },
    ],
    true,
  );
}

test(
  'an unsafe first entry ends the streaming download at once (no hang while the body still arrives), not retried',
  { timeout: 30_000 },
  async () => {
    origin.set('/slow/evil.tar.gz', await longArchive('../evil'), { rate: 50_000 }); // a minute of body
    const dir = await workDir();
    const e = await downloadFailure(downloadModel(req(origin.url('/slow/evil.tar.gz'), dir)));
    assert.equal(e.code, 'UnsafeArchive', e.message);
    assert.equal(origin.requestsFor('/slow/evil.tar.gz').length, 1, 'a content fault is not retried');
    assert.equal(await exists(join(dir, '..', 'evil')), false, 'nothing outside the model folder');
    assert.equal(await exists(join(dir, '.download')), false, 'the worthless partial is gone');
    assert.deepEqual(unhandled, []);
  },
);

test(
  'a gzip bomb and a corrupt tar end the streaming download at once with their codes',
  { timeout: 30_000 },
  async () => {
    const bomb = await makeTar([{ name: 'zeros.bin', content: Buffer.alloc(64 * 1024 * 1024) }], true);
    origin.set('/slow/bomb.tar.gz', bomb, { rate: 5_000 }); // ~64 KiB of gzip: many seconds of body
    const e1 = await downloadFailure(
      downloadModel(req(origin.url('/slow/bomb.tar.gz'), await workDir(), { maxBytes: 1024 * 1024 })),
    );
    assert.equal(e1.code, 'SizeExceeded', e1.message);
    const good = await makeTar([{ name: 'a.txt', content: 'A' }]);
    const corrupt = Buffer.concat([good.subarray(0, 1024), Buffer.alloc(512, 0xff), randomBytes(2_000_000)]);
    origin.set('/slow/corrupt.tar', corrupt, { rate: 50_000 });
    const e2 = await downloadFailure(downloadModel(req(origin.url('/slow/corrupt.tar'), await workDir())));
    assert.equal(e2.code, 'BadResponse', e2.message);
    assert.equal(origin.requestsFor('/slow/corrupt.tar').length, 1);
    assert.deepEqual(unhandled, []);
  },
);

test('cancel during a streaming extraction ends it with Cancelled', { timeout: 30_000 }, async () => {
  origin.set('/slow/ok.tar.gz', await longArchive('model/config.json'), { rate: 50_000 });
  const ac = new AbortController();
  const e = await downloadFailure(
    downloadModel(
      req(origin.url('/slow/ok.tar.gz'), await workDir(), {
        signal: ac.signal,
        onProgress: (p) => {
          if (p.bytesDone > 10_000) ac.abort();
        },
      }),
    ),
  );
  assert.equal(e.code, 'Cancelled', e.message);
  assert.deepEqual(unhandled, []);
});

test(
  'a resumed download of a corrupt or truncated archive is a coded failure, never a crash, and is not extracted again',
  { timeout: 30_000 },
  async () => {
    const gz = await makeTar([{ name: 'w.bin', content: randomBytes(50_000) }], true);
    const cases = {
      '/resume/garbage.tar.gz': Buffer.concat([gz.subarray(0, 10), randomBytes(40_000)]), // gzip header, then garbage
      '/resume/truncated.tar.gz': gz.subarray(0, 30_000),
      '/resume/truncated.tar': (await makeTar([{ name: 'w.bin', content: randomBytes(50_000) }])).subarray(0, 30_000),
    };
    for (const [path, body] of Object.entries(cases)) {
      origin.set(path, body);
      origin.fault(path, STALL(100)); // too few bytes to start streaming: the retry resumes
      const dir = await workDir();
      const e = await downloadFailure(downloadModel(req(origin.url(path), dir, { options: STALLING })));
      assert.equal(e.code, 'BadResponse', `${path}: ${e.message}`);
      assert.match(origin.requestsFor(path).at(-1)?.range ?? '', /^bytes=100-$/, `${path} was resumed`);
      assert.equal(await exists(join(dir, '.download')), false, `${path}: the complete partial is not kept`);
    }
    assert.deepEqual(unhandled, []);
  },
);

test('resuming against an origin without ETag or Last-Modified starts from zero: two objects are never spliced', async () => {
  const a = toBuffer(generated(300_000, 1));
  const b = toBuffer(generated(300_000, 2));
  origin.set('/nv/model.bin', a, { validators: false });
  origin.fault('/nv/model.bin', STALL(100_000));
  const dir = await workDir();
  let swapped = false;
  await downloadModel(
    req(origin.url('/nv/model.bin'), dir, {
      options: STALLING,
      onProgress: () => {
        if (!swapped) origin.set('/nv/model.bin', b, { validators: false }); // replaced mid-download
        swapped = true;
      },
    }),
  );
  assert.ok((await readFile(join(dir, 'model.bin'))).equals(b), 'the whole of the new object');
  assert.equal(origin.requestsFor('/nv/model.bin').at(-1)?.range, undefined, 'no Range without a validator');
});

test('a 206 of another object (other total, other ETag; the origin ignores If-Range) restarts from zero', async () => {
  for (const [path, second] of [
    ['/ir/longer.bin', toBuffer(generated(400_000, 4))],
    ['/ir/same-size.bin', toBuffer(generated(300_000, 5))],
  ] as const) {
    origin.set(path, toBuffer(generated(300_000, 3)), { preconditions: 'ignore' });
    origin.fault(path, STALL(100_000));
    const dir = await workDir();
    let swapped = false;
    await downloadModel(
      req(origin.url(path), dir, {
        options: STALLING,
        onProgress: () => {
          if (!swapped) origin.set(path, second, { preconditions: 'ignore' });
          swapped = true;
        },
      }),
    );
    const name = path.split('/').pop()!;
    assert.ok((await readFile(join(dir, name))).equals(second), `${path}: the new object, whole`);
    assert.equal(origin.requestsFor(path).at(-1)?.status, 200, `${path}: fetched again from the first byte`);
  }
});

test('a torn or garbage resume file means "no resume state": the download completes', async () => {
  const body = toBuffer(generated(200_000, 6));
  origin.set('/torn/model.bin', body);
  for (const garbage of ['{"url": "http://', 'null', '{"url": 5, "total": "x"}', '[]']) {
    const dir = await workDir();
    await mkdir(join(dir, '.download'));
    await writeFile(join(dir, '.download', 'model.bin.partial'), body.subarray(0, 5000));
    await writeFile(join(dir, '.download', 'model.bin.partial.json'), garbage);
    await downloadModel(req(origin.url('/torn/model.bin'), dir));
    assert.ok((await readFile(join(dir, 'model.bin'))).equals(body), garbage);
    assert.deepEqual(await readdir(dir), ['model.bin']);
  }
});

test('a URL whose name is not valid percent-encoding downloads; a name too long for a file is InvalidUri at once', async () => {
  origin.set('/enc/%E0%A4%A', Buffer.from('weights'));
  const dir = await workDir();
  await downloadModel(req(origin.url('/enc/%E0%A4%A'), dir));
  assert.equal(await readFile(join(dir, '%E0%A4%A'), 'utf8'), 'weights');
  const long = `/enc/${'w'.repeat(300)}.bin`;
  origin.set(long, Buffer.from('x'));
  const e = await downloadFailure(downloadModel(req(origin.url(long), await workDir())));
  assert.equal(e.code, 'InvalidUri', e.message);
  assert.equal(origin.requestsFor(long).length, 0, 'nothing fetched for a name that cannot be stored');
});

test('a redirect to ftp:// or file:// is BadResponse at once, not retried as an outage', async () => {
  for (const [path, location] of [
    ['/redir/ftp.bin', 'ftp://127.0.0.1/model.bin'],
    ['/redir/file.bin', 'file:///etc/passwd'],
  ] as const) {
    origin.set(path, Buffer.from('never'));
    origin.fault(path, { redirect: location });
    const e = await downloadFailure(downloadModel(req(origin.url(path), await workDir())));
    assert.equal(e.code, 'BadResponse', `${path}: ${e.message}`);
    assert.match(e.message, /only http and https redirects are followed/);
    assert.equal(origin.requestsFor(path).length, 1, `${path}: one request`);
  }
});

test('a redirect to another origin carries no credential header; one within the origin keeps them', async () => {
  const body = Buffer.from('object bytes');
  other.set('/bucket/model.bin', body);
  origin.set('/bucket/local.bin', body);
  origin.fault('/signed/model.bin', { redirect: other.url('/bucket/model.bin') });
  origin.fault('/signed/local.bin', { redirect: '/bucket/local.bin' });
  const o = { ...DEFAULT_DOWNLOAD_OPTIONS, backoffBaseMs: 10, backoffMaxMs: 20 };
  const http = new HttpClient(o);
  try {
    for (const path of ['/signed/model.bin', '/signed/local.bin']) {
      const partial = join(await workDir(), 'partial');
      await fetchObject({ url: origin.url(path), size: body.length }, partial, {
        o,
        http,
        signal: AbortSignal.timeout(10_000),
        authorize: (_u, h) => ({
          ...h,
          Authorization: 'AWS4-HMAC-SHA256 Credential=AKIA/secret',
          'X-Amz-Security-Token': 'session-token-secret',
          'x-goog-user-project': 'proj',
          cookie: 'session=secret',
          'proxy-authorization': 'Basic c2VjcmV0',
        }),
        onBytes: () => undefined,
        limit: 1_000_000,
      });
      assert.ok((await readFile(partial)).equals(body));
    }
  } finally {
    await http.close();
  }
  const far = other.requestsFor('/bucket/model.bin').at(-1)!.headers;
  for (const h of ['authorization', 'x-amz-security-token', 'x-goog-user-project', 'cookie', 'proxy-authorization'])
    assert.equal(far[h], undefined, `${h} not sent to another origin`);
  const near = origin.requestsFor('/bucket/local.bin').at(-1)!.headers;
  assert.equal(near['x-amz-security-token'], 'session-token-secret', 'same origin: kept');
});

test('ranged parts: a 206 of another version (other total, other ETag; If-Match ignored) is refused and the partial dropped', async () => {
  const MiB = 1024 * 1024;
  const o = {
    ...DEFAULT_DOWNLOAD_OPTIONS,
    partSizeBytes: MiB,
    partParallelism: 2,
    backoffBaseMs: 10,
    backoffMaxMs: 20,
  };
  const http = new HttpClient(o);
  try {
    for (const [path, served, etag] of [
      ['/rg/longer', toBuffer(generated(4 * MiB, 8)), '"v1"'],
      ['/rg/same-size', toBuffer(generated(3 * MiB, 9)), '"v2"'],
    ] as const) {
      origin.set(path, served, { etag, preconditions: 'ignore' });
      const partial = join(await workDir(), 'partial');
      const e = await downloadFailure(
        fetchObject({ url: origin.url(path), size: 3 * MiB, etag: '"v1"' }, partial, {
          o,
          http,
          signal: AbortSignal.timeout(10_000),
          authorize: (_u, h) => h,
          onBytes: () => undefined,
          limit: 10 * MiB,
        }),
      );
      assert.equal(e.code, 'IntegrityMismatch', `${path}: ${e.message}`);
      assert.match(e.message, /changed while it was being downloaded/);
      assert.equal(await exists(partial), false, `${path}: spliced bytes are not kept`);
      assert.equal(await exists(`${partial}.state.json`), false, `${path}: nor their state`);
    }
  } finally {
    await http.close();
  }
});

test('ranged parts: a torn or garbage state file means "start from zero": the object completes', async () => {
  const body = toBuffer(generated(300_000, 10));
  origin.set('/rg/torn', body, { etag: '"t1"' });
  const o = { ...DEFAULT_DOWNLOAD_OPTIONS, backoffBaseMs: 10, backoffMaxMs: 20 };
  const http = new HttpClient(o);
  try {
    for (const garbage of ['{"url":', 'null', '{"url":"x","done":"all"}', `{"url":"${origin.url('/rg/torn')}"}`]) {
      const partial = join(await workDir(), 'partial');
      await writeFile(partial, body.subarray(0, 1000));
      await writeFile(`${partial}.state.json`, garbage);
      const bytes = await fetchObject({ url: origin.url('/rg/torn'), size: body.length, etag: '"t1"' }, partial, {
        o,
        http,
        signal: AbortSignal.timeout(10_000),
        authorize: (_u, h) => h,
        onBytes: () => undefined,
        limit: 1_000_000,
      });
      assert.equal(bytes, body.length, garbage);
      assert.ok((await readFile(partial)).equals(body), garbage);
    }
  } finally {
    await http.close();
  }
});
