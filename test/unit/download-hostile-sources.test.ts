import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { access, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { downloadModel } from '../../download/fetch.ts';
import type { SourceCredentials } from '../../download/types.ts';
import { makeTar, makeZip } from '../../localcluster/archives.ts';
import { downloadFailure } from '../helpers/download-errors.ts';
import { HfHub } from '../helpers/hf-hub.ts';

// Hostile stores: bad archives from file://, s3 and gs objects are coded failures (never a crash),
// listings that page forever fail with a reason, names the node cannot store are the content's fault.

/**
 * A small store on loopback speaking just enough S3 (ListObjectsV2, path style, unsigned) and GCS
 * JSON API (list, alt=media) for the sources, with pagination that can be made to loop.
 */
class MiniStore {
  readonly objects = new Map<string, Buffer>(); // object key → bytes, in bucket 'bkt'
  pagination: 'normal' | 'repeat' = 'normal';
  listings = 0;
  readonly #server: Server = createServer((req, res) => this.#handle(req, res));
  endpoint = '';

  static async start(): Promise<MiniStore> {
    const s = new MiniStore();
    await new Promise<void>((r) => s.#server.listen(0, '127.0.0.1', r));
    s.endpoint = `http://127.0.0.1:${(s.#server.address() as AddressInfo).port}`;
    return s;
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', this.endpoint);
    const prefix = url.searchParams.get('prefix') ?? '';
    const listed = [...this.objects].filter(([k]) => k.startsWith(prefix));
    const etag = (b: Buffer): string => `"${createHash('md5').update(b).digest('hex')}"`;
    const repeat = this.pagination === 'repeat';
    if (url.pathname === '/bkt' && url.searchParams.get('list-type') === '2') {
      this.listings++;
      const contents = listed
        .map(([k, b]) => `<Contents><Key>${k}</Key><Size>${b.length}</Size><ETag>${etag(b)}</ETag></Contents>`)
        .join('');
      const more = repeat ? '<IsTruncated>true</IsTruncated><NextContinuationToken>again</NextContinuationToken>' : '';
      res.writeHead(200, { 'content-type': 'application/xml' });
      return void res.end(`<?xml version="1.0"?><ListBucketResult>${contents}${more}</ListBucketResult>`);
    }
    if (url.pathname === '/storage/v1/b/bkt/o') {
      this.listings++;
      const items = listed.map(([name, b]) => ({ name, size: String(b.length), generation: '1' }));
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end(JSON.stringify({ items, ...(repeat ? { nextPageToken: 'again' } : {}) }));
    }
    const key = url.pathname.startsWith('/storage/v1/b/bkt/o/')
      ? decodeURIComponent(url.pathname.slice('/storage/v1/b/bkt/o/'.length))
      : decodeURIComponent(url.pathname.slice('/bkt/'.length));
    const body = this.objects.get(key);
    if (!body) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-length': String(body.length), etag: etag(body) }).end(body);
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise((r) => this.#server.close(r));
  }
}

let store: MiniStore;
let hub: HfHub;
let base: string;
const unhandled: unknown[] = [];
const record = (err: unknown): void => void unhandled.push(err);
let corrupt: Record<string, Buffer>;
before(async () => {
  process.on('unhandledRejection', record);
  store = await MiniStore.start();
  hub = await HfHub.start();
  base = await mkdtemp(join(tmpdir(), 'modelcache-hostile-src-'));
  const gz = await makeTar([{ name: 'w.bin', content: randomBytes(50_000) }], true);
  corrupt = {
    'garbage.tar.gz': Buffer.concat([gz.subarray(0, 10), randomBytes(40_000)]), // a gzip header, then garbage
    'truncated.tar.gz': gz.subarray(0, 30_000),
    'truncated.tar': (await makeTar([{ name: 'w.bin', content: randomBytes(50_000) }])).subarray(0, 30_000),
  };
});
after(async () => {
  process.off('unhandledRejection', record);
  await store.close();
  await hub.close();
  await rm(base, { recursive: true, force: true });
});

let n = 0;
function run(uri: string, credentials: SourceCredentials = {}, fileRoots: string[] = []) {
  const workDir = join(base, `w${n++}`);
  const result = downloadModel({
    uri,
    workDir,
    maxBytes: 10_000_000,
    signal: AbortSignal.timeout(30_000),
    credentials,
    options: { attempts: 2, backoffBaseMs: 10, backoffMaxMs: 20, fileRoots },
  });
  return { workDir, result };
}
const exists = (p: string): Promise<boolean> =>
  access(p).then(
    () => true,
    () => false,
  );

test('file://: a corrupt or truncated tar/tar.gz is BadResponse, and the process does not crash', async () => {
  const root = join(base, 'host');
  await mkdir(root, { recursive: true });
  for (const [name, body] of Object.entries(corrupt)) {
    await writeFile(join(root, name), body);
    const e = await downloadFailure(run(pathToFileURL(join(root, name)).href, {}, [root]).result);
    assert.equal(e.code, 'BadResponse', `${name}: ${e.message}`);
  }
  assert.deepEqual(unhandled, []);
});

test('s3:// and gs:// single objects: a corrupt or truncated archive is BadResponse, its partial is not kept', async () => {
  for (const [name, body] of Object.entries(corrupt)) store.objects.set(`single/${name}`, body);
  for (const name of Object.keys(corrupt)) {
    const s3 = run(`s3://bkt/single/${name}`, { AWS_ENDPOINT_URL: store.endpoint });
    const e1 = await downloadFailure(s3.result);
    assert.equal(e1.code, 'BadResponse', `s3 ${name}: ${e1.message}`);
    assert.equal(await exists(join(s3.workDir, '.download')), false, `s3 ${name}: partial removed`);
    const gs = run(`gs://bkt/single/${name}`, { STORAGE_EMULATOR_HOST: store.endpoint });
    const e2 = await downloadFailure(gs.result);
    assert.equal(e2.code, 'BadResponse', `gs ${name}: ${e2.message}`);
    assert.equal(await exists(join(gs.workDir, '.download')), false, `gs ${name}: partial removed`);
  }
  assert.deepEqual(unhandled, []);
});

test('a FIFO or device entry is skipped and named in the result: http (tar streamed, zip), file://, s3 and gs objects', async () => {
  const tar = await makeTar([
    { name: 'w.bin', content: 'W' },
    { name: 'pipe', type: 'fifo' },
    { name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3 },
  ]);
  const zip = makeZip([
    { name: 'w.bin', content: 'W' },
    { name: 'pipe', mode: 0o10644 },
  ]);
  store.objects.set('skip/m.tar', tar);
  store.objects.set('skip/m.zip', zip);
  const root = join(base, 'skip-host');
  await mkdir(root, { recursive: true });
  await writeFile(join(root, 'm.tar'), tar);
  const cases: Array<[string, () => ReturnType<typeof run>, string[]]> = [
    ['http tar', () => run(`${store.endpoint}/bkt/skip/m.tar`), ['pipe', 'dev/null']],
    ['http zip', () => run(`${store.endpoint}/bkt/skip/m.zip`), ['pipe']],
    ['file', () => run(pathToFileURL(join(root, 'm.tar')).href, {}, [root]), ['pipe', 'dev/null']],
    ['s3', () => run('s3://bkt/skip/m.tar', { AWS_ENDPOINT_URL: store.endpoint }), ['pipe', 'dev/null']],
    ['gs', () => run('gs://bkt/skip/m.tar', { STORAGE_EMULATOR_HOST: store.endpoint }), ['pipe', 'dev/null']],
  ];
  for (const [what, start, skipped] of cases) {
    const { workDir, result } = start();
    assert.deepEqual(await result, { bytes: what === 'http zip' ? zip.length : tar.length, files: 1, skipped }, what);
    assert.deepEqual(await readdir(workDir), ['w.bin'], `${what}: nothing made for the skipped entries`);
  }
  // No entry skipped: no `skipped` field (what callers log only when there is something to say).
  const plain = await makeTar([{ name: 'w.bin', content: 'W' }]);
  store.objects.set('skip/plain.tar', plain);
  assert.deepEqual(await run(`${store.endpoint}/bkt/skip/plain.tar`).result, { bytes: plain.length, files: 1 });
});

test('an object name too long for the node is UnsafeObjectName, not a disk error', async () => {
  store.objects.set(`long/${'n'.repeat(300)}.bin`, Buffer.from('x'));
  store.objects.set('long/ok.bin', Buffer.from('y'));
  const e = await downloadFailure(run('s3://bkt/long', { AWS_ENDPOINT_URL: store.endpoint }).result);
  assert.equal(e.code, 'UnsafeObjectName', e.message);
});

test(
  'endless pagination: a repeated S3 continuation token or GCS page token is BadResponse, not an OOM',
  { timeout: 20_000 },
  async () => {
    store.objects.set('loop/a.bin', Buffer.from('a'));
    store.pagination = 'repeat';
    try {
      const before = store.listings;
      const e1 = await downloadFailure(run('s3://bkt/loop', { AWS_ENDPOINT_URL: store.endpoint }).result);
      assert.equal(e1.code, 'BadResponse', e1.message);
      assert.match(e1.message, /pagination loops/);
      const e2 = await downloadFailure(run('gs://bkt/loop', { STORAGE_EMULATOR_HOST: store.endpoint }).result);
      assert.equal(e2.code, 'BadResponse', e2.message);
      assert.match(e2.message, /pagination loops/);
      assert.ok(store.listings - before <= 6, `a few pages, not endless: ${store.listings - before}`);
    } finally {
      store.pagination = 'normal';
    }
  },
);

test(
  'endless pagination: an HF Link: rel=next to itself or in a cycle is BadResponse',
  { timeout: 20_000 },
  async () => {
    hub.addRepo('acme/loop', {
      revisions: { main: 'd'.repeat(40) },
      files: { 'a.json': Buffer.from('{}'), 'b.json': Buffer.from('{}'), 'c.json': Buffer.from('{}') },
    });
    for (const mode of ['self', 'cycle'] as const) {
      hub.pagination = mode;
      try {
        const e = await downloadFailure(run('hf://acme/loop', { HF_ENDPOINT: hub.endpoint }).result);
        assert.equal(e.code, 'BadResponse', `${mode}: ${e.message}`);
        assert.match(e.message, /pagination loops/);
      } finally {
        hub.pagination = 'normal';
      }
    }
  },
);

test('a listing guard caps pages and objects even when every token is new', async () => {
  const { listingGuard, MAX_LIST_PAGES, MAX_LIST_OBJECTS } = await import('../../download/objects.ts');
  assert.equal(MAX_LIST_PAGES, 10_000);
  assert.equal(MAX_LIST_OBJECTS, 1_000_000);
  const pages = listingGuard('s3://bkt/x', { pages: 3, objects: 100 });
  for (let i = 0; i < 3; i++) {
    pages.page(1);
    pages.next(`token-${i}`);
  }
  assert.throws(
    () => pages.page(1),
    (e: unknown) =>
      e instanceof Error && 'code' in e && e.code === 'BadResponse' && /more than 3 pages/.test(e.message),
  );
  const objects = listingGuard('gs://bkt/x', { pages: 10, objects: 100 });
  objects.page(100);
  assert.throws(() => objects.page(1), /more than 100 objects/);
});
