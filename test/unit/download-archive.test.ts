import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, readlink, rm, mkdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { downloadModel } from '../../download/fetch.ts';
import { DownloadError } from '../../download/errors.ts';
import { HfHub } from '../helpers/hf-hub.ts';
import { Origin } from '../../localcluster/origin.ts';
import { makeTar, makeZip, type TarEntry } from '../../localcluster/archives.ts';

let origin: Origin;
let base: string;
before(async () => {
  origin = await Origin.start();
  base = await mkdtemp(join(tmpdir(), 'modelcache-arc-'));
});
after(async () => {
  await origin.close();
  await rm(base, { recursive: true, force: true });
});

const weights = Buffer.from(Array.from({ length: 400_000 }, (_, i) => (i * 7) % 256));
const model: TarEntry[] = [
  { name: 'model/', type: 'directory' },
  { name: 'model/config.json', content: '{"layers":2}' },
  { name: 'model/weights/part-0.bin', content: weights },
  { name: 'model/tokenizer.json', content: '{}' },
  { name: 'model/latest', type: 'symlink', linkname: 'weights/part-0.bin' },
];

async function fetchInto(
  path: string,
  body: Buffer,
  maxBytes = 10_000_000,
): Promise<{ dir: string; result?: { bytes: number; files: number }; error?: DownloadError }> {
  origin.set(path, body, { contentType: 'text/plain' });
  const dir = join(base, path.replace(/\W/g, '_'));
  await mkdir(dir);
  try {
    const result = await downloadModel({
      uri: origin.url(path),
      workDir: dir,
      maxBytes,
      signal: AbortSignal.timeout(20_000),
    });
    return { dir, result };
  } catch (err) {
    if (err instanceof DownloadError) return { dir, error: err };
    throw err;
  }
}

test('archives named .tar/.tgz/.tar.gz/.zip are extracted; a tar, zip or gzip under another name is kept as it is', async () => {
  for (const [path, body] of [
    ['/a/model.tar', await makeTar(model)],
    ['/a/model.tar.gz', await makeTar(model, true)],
    ['/a/model.tgz', await makeTar(model, true)],
  ] as const) {
    const { dir, result, error } = await fetchInto(path, body);
    assert.equal(error, undefined, error?.message);
    assert.equal(result?.files, 3);
    assert.deepEqual((await readdir(dir)).sort(), ['model']);
    assert.ok((await readFile(join(dir, 'model/weights/part-0.bin'))).equals(weights), path);
    assert.equal(await readFile(join(dir, 'model/config.json'), 'utf8'), '{"layers":2}');
    assert.equal(await readlink(join(dir, 'model/latest')), 'weights/part-0.bin');
  }
  const zip = makeZip({ 'config.json': '{"z":1}', 'sub/w.bin': weights });
  const { dir, result } = await fetchInto('/a/weights.zip', zip);
  assert.equal(result?.files, 2);
  assert.ok((await readFile(join(dir, 'sub/w.bin'))).equals(weights));
  assert.deepEqual((await readdir(dir)).sort(), ['config.json', 'sub']);
  // What KServe's storage initializer keeps as it is: a .pt/.keras is a zip inside, a .gz is not a .tar.gz.
  for (const [path, body] of [
    ['/k/model.bin', await makeTar(model)],
    ['/k/w.pt', zip],
    ['/k/m.keras', zip],
    ['/k/x.gz', await makeTar(model, true)],
    ['/k/weights.dat', zip],
  ] as const) {
    const name = path.split('/').pop()!;
    const kept = await fetchInto(path, body);
    assert.equal(kept.error, undefined, kept.error?.message);
    assert.equal(kept.result?.files, 1, path);
    assert.deepEqual(await readdir(kept.dir), [name]);
    assert.ok((await readFile(join(kept.dir, name))).equals(body), path);
  }
});

test('malicious archives are refused (UnsafeArchive) and nothing is written outside the model directory', async () => {
  const cases: Array<[string, TarEntry[]]> = [
    ['dotdot', [{ name: '../escaped.txt', content: 'x' }]],
    ['nested-dotdot', [{ name: 'a/../../escaped.txt', content: 'x' }]],
    ['absolute', [{ name: '/tmp/modelcache-escaped.txt', content: 'x' }]],
    ['symlink-out', [{ name: 'link', type: 'symlink', linkname: '../../../etc' }]],
    ['hardlink-out', [{ name: 'hl', type: 'link', linkname: '../../etc/passwd' }]],
    [
      'through-symlink',
      [
        { name: 'd', type: 'symlink', linkname: '.' },
        { name: 'd/x', type: 'symlink', linkname: '..' },
        { name: 'd/x/escaped.txt', content: 'x' },
      ],
    ],
  ];
  for (const [label, entries] of cases) {
    const { dir, error } = await fetchInto(`/evil/${label}.tar`, await makeTar(entries));
    assert.equal(error?.code, 'UnsafeArchive', `${label}: ${error?.message}`);
    assert.equal(await stat(join(dir, '..', 'escaped.txt')).catch(() => 'absent'), 'absent', label);
  }
  assert.equal(await stat('/tmp/modelcache-escaped.txt').catch(() => 'absent'), 'absent');
});

test('extracted bytes count toward modelSize', async () => {
  const { error } = await fetchInto(
    '/big/model.tar.gz',
    await makeTar([{ name: 'w.bin', content: Buffer.alloc(2_000_000) }], true),
    100_000,
  );
  assert.equal(error?.code, 'SizeExceeded');
});

test('hf: a repo listing names the cache reserves is UnsafeObjectName before anything is fetched', async () => {
  const hub = await HfHub.start();
  try {
    for (const [i, bad] of [
      '.modelcache.json',
      'sub/.modelcache.json.tmp',
      '.download/x',
      'a/.staging',
      '.trash/y',
    ].entries()) {
      hub.addRepo(`evil/r${i}`, {
        revisions: { main: String(i).repeat(40) },
        files: { 'config.json': Buffer.from('{}'), [bad]: Buffer.from('{"storageKey":"other"}') },
      });
      const dir = join(base, `hf-reserved-${i}`);
      await mkdir(dir);
      const error = await downloadModel({
        uri: `hf://evil/r${i}`,
        workDir: dir,
        maxBytes: 1_000_000,
        signal: AbortSignal.timeout(20_000),
        credentials: { HF_ENDPOINT: hub.endpoint },
      }).then(
        () => undefined,
        (err: unknown) => err as DownloadError,
      );
      assert.equal(error?.code, 'UnsafeObjectName', `${bad}: ${error?.message}`);
      assert.deepEqual(await readdir(dir), [], bad);
    }
  } finally {
    await hub.close();
  }
});
