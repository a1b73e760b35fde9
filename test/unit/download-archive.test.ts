import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, readlink, rm, mkdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { downloadModel } from '../../download/fetch.ts';
import { DownloadError } from '../../download/errors.ts';
import { Origin } from '../helpers/origin.ts';
import { makeTar, makeZip, type TarEntry } from '../helpers/archives.ts';

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

test('tar, tar.gz and zip are recognised by their bytes (misleading name and Content-Type) and extracted', async () => {
  for (const [path, body] of [
    ['/a/model.txt', await makeTar(model)],
    ['/a/model.bin', await makeTar(model, true)],
  ] as const) {
    const { dir, result, error } = await fetchInto(path, body);
    assert.equal(error, undefined, error?.message);
    assert.equal(result?.files, 3);
    assert.deepEqual((await readdir(dir)).sort(), ['model']);
    assert.ok((await readFile(join(dir, 'model/weights/part-0.bin'))).equals(weights), path);
    assert.equal(await readFile(join(dir, 'model/config.json'), 'utf8'), '{"layers":2}');
    assert.equal(await readlink(join(dir, 'model/latest')), 'weights/part-0.bin');
  }
  const { dir, result } = await fetchInto(
    '/a/weights.dat',
    makeZip({ 'config.json': '{"z":1}', 'sub/w.bin': weights }),
  );
  assert.equal(result?.files, 2);
  assert.ok((await readFile(join(dir, 'sub/w.bin'))).equals(weights));
  assert.deepEqual((await readdir(dir)).sort(), ['config.json', 'sub']);
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
