import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { downloadModel, type DownloadRequest } from '../../download/fetch.ts';
import { DownloadError } from '../../download/errors.ts';
import { Origin } from '../../localcluster/origin.ts';

let origin: Origin;
let base: string;
before(async () => {
  origin = await Origin.start();
  base = await mkdtemp(join(tmpdir(), 'modelcache-dl-'));
});
after(async () => {
  await origin.close();
  await rm(base, { recursive: true, force: true });
});

const FAST = { attempts: 5, backoffBaseMs: 20, backoffMaxMs: 200, stallTimeoutMs: 300 };
const bytes = (n: number, seed = 7): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) % 256));
let n = 0;
async function workDir(): Promise<string> {
  const d = join(base, `w${n++}`);
  await mkdir(d, { recursive: true });
  return d;
}
function req(uri: string, dir: string, extra: Partial<DownloadRequest> = {}): DownloadRequest {
  return {
    uri,
    workDir: dir,
    maxBytes: 10 * 1024 * 1024,
    signal: AbortSignal.timeout(20_000),
    options: FAST,
    ...extra,
  };
}
async function expectCode(p: Promise<unknown>, code: string): Promise<DownloadError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof DownloadError, String(err));
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected ${code}`);
}

test('plain file: bytes identical, saved under its name, nothing else left in workDir', async () => {
  const body = bytes(300_000);
  origin.set('/m/weights.bin', body);
  const dir = await workDir();
  const r = await downloadModel(req(origin.url('/m/weights.bin'), dir));
  assert.deepEqual(r, { bytes: body.length, files: 1 });
  assert.ok((await readFile(join(dir, 'weights.bin'))).equals(body));
  assert.deepEqual(await readdir(dir), ['weights.bin']);
});

test('cancelled mid-way, then resumed with Range + If-Range: bytes identical', async () => {
  const body = bytes(3_000_000, 3);
  origin.set('/m/resume.bin', body);
  origin.fault('/m/resume.bin', { stallAfterBytes: 1_000_000, stallMs: 3000 });
  const dir = await workDir();
  const ac = new AbortController();
  const first = downloadModel(
    req(origin.url('/m/resume.bin'), dir, {
      signal: ac.signal,
      options: { ...FAST, stallTimeoutMs: 10_000 },
      onProgress: (p) => {
        if (p.bytesDone >= 1_000_000) ac.abort();
      },
    }),
  );
  await expectCode(first, 'Cancelled');
  const kept = (await stat(join(dir, '.download', 'resume.bin.partial'))).size;
  assert.ok(kept >= 1_000_000, `partial kept: ${kept}`);
  await downloadModel(req(origin.url('/m/resume.bin'), dir));
  const last = origin.requestsFor('/m/resume.bin').at(-1);
  assert.equal(last?.range, `bytes=${kept}-`);
  assert.ok(last?.ifRange);
  assert.equal(last?.status, 206);
  assert.ok((await readFile(join(dir, 'resume.bin'))).equals(body));
});

test('the object changed since the partial was written: If-Range fails, the download starts over', async () => {
  const dir = await workDir();
  await mkdir(join(dir, '.download'));
  await writeFile(join(dir, '.download', 'changed.bin.partial'), bytes(5000, 1));
  await writeFile(
    join(dir, '.download', 'changed.bin.partial.json'),
    JSON.stringify({ url: origin.url('/m/changed.bin'), etag: '"old"', total: 20000 }),
  );
  const body = bytes(20000, 2);
  origin.set('/m/changed.bin', body);
  await downloadModel(req(origin.url('/m/changed.bin'), dir));
  assert.equal(origin.requestsFor('/m/changed.bin').at(-1)?.status, 200);
  assert.ok((await readFile(join(dir, 'changed.bin'))).equals(body));
});

test('503 three times then OK; 429 with Retry-After; reset and stall mid-body: all retried and resumed', async () => {
  const body = bytes(2_000_000, 5);
  for (const [path, faults] of [
    ['/f/503', [{ status: 503 }, { status: 503 }, { status: 503 }]],
    ['/f/429', [{ status: 429, retryAfter: '1' }]],
    ['/f/reset', [{ resetAfterBytes: 700_000 }]],
    ['/f/stall', [{ stallAfterBytes: 500_000, stallMs: 5000 }]],
  ] as const) {
    origin.set(path, body);
    origin.fault(path, ...faults);
    const dir = await workDir();
    await downloadModel(req(origin.url(path), dir));
    const name = path.split('/').pop() as string;
    assert.ok((await readFile(join(dir, name))).equals(body), path);
    const log = origin.requestsFor(path);
    assert.equal(log.length, faults.length + 1, `${path}: ${JSON.stringify(log)}`);
    if (path === '/f/reset' || path === '/f/stall')
      assert.match(log.at(-1)?.range ?? '', /^bytes=[1-9]\d*-$/, `${path} resumed`);
  }
});

test('404 → SourceNotFound and 403 → AccessDenied at once: one request each, no retry storm', async () => {
  const e = await expectCode(downloadModel(req(origin.url('/missing/model.bin'), await workDir())), 'SourceNotFound');
  assert.match(e.message, /HTTP 404/);
  assert.equal(origin.requestsFor('/missing/model.bin').length, 1);
  origin.set('/secret.bin', bytes(10));
  origin.fault('/secret.bin', { status: 403 });
  await expectCode(downloadModel(req(origin.url('/secret.bin?sig=SECRET'), await workDir())), 'AccessDenied');
  assert.equal(origin.requestsFor('/secret.bin').length, 1);
});

test('a body that keeps ending early is IntegrityMismatch after the attempts; an oversized one is SizeExceeded; nothing partial kept', async () => {
  origin.set('/short.bin', bytes(100_000));
  // Every answer ends 10 bytes before its Content-Length: resuming cannot complete it.
  origin.fault('/short.bin', ...Array.from({ length: 10 }, () => ({ shortBody: 10 })));
  const dir = await workDir();
  const e = await expectCode(downloadModel(req(origin.url('/short.bin'), dir)), 'IntegrityMismatch');
  assert.match(e.message, /after 5 attempts/);
  assert.deepEqual(await readdir(dir), []);
  origin.set('/big.bin', bytes(200_000));
  const dir2 = await workDir();
  await expectCode(downloadModel(req(origin.url('/big.bin'), dir2, { maxBytes: 100_000 })), 'SizeExceeded');
  assert.deepEqual(await readdir(dir2), []);
});

test('unsupported scheme and invalid URI are clear errors', async () => {
  await expectCode(downloadModel(req('ftp://host/x', await workDir())), 'UnsupportedScheme');
  await expectCode(downloadModel(req('not a uri', await workDir())), 'InvalidUri');
});
