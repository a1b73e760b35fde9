import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { createGzip } from 'node:zlib';
import { pack as tarPack } from 'tar-stream';
import { extractOrPlace, extractZip, sizeBudget, tarExtractor } from '../../download/archive.ts';
import { DownloadError } from '../../download/errors.ts';
import { makeTar, makeZip, type TarEntry, type ZipEntry } from '../../localcluster/archives.ts';
import { smallTmpfs } from '../helpers/tmpfs.ts';

let base: string;
let n = 0;
before(async () => {
  base = await mkdtemp(join(tmpdir(), 'modelcache-hostile-'));
});
after(async () => {
  await rm(base, { recursive: true, force: true });
});

type Outcome = { root: string; files?: number; skipped?: string[]; error?: DownloadError };

/** A model folder beside a sentinel folder (another model's weights) that nothing may touch. */
async function scene(): Promise<{ dir: string; root: string; sentinel: () => Promise<string> }> {
  const dir = join(base, `case-${n++}`);
  const root = join(dir, 'model');
  await mkdir(join(dir, 'sentinel', 'weights'), { recursive: true });
  await mkdir(root);
  await writeFile(join(dir, 'sentinel', 'victim.txt'), 'original');
  await writeFile(join(dir, 'sentinel', 'weights', 'w.bin'), 'weights');
  const sentinel = async (): Promise<string> => {
    const h = createHash('sha256');
    for (const e of (await readdir(dir, { recursive: true })).sort()) {
      if (e === 'model' || e.startsWith('model/')) continue;
      const st = await lstat(join(dir, e));
      h.update(`${e}:${st.isFile() ? await readFile(join(dir, e), 'utf8') : st.isDirectory() ? 'dir' : 'other'}\n`);
    }
    return h.digest('hex');
  };
  return { dir, root, sentinel };
}

/** Until a writable has room again, or is gone. */
function room(input: Writable): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      input.off('drain', done).off('close', done);
      resolve();
    };
    input.once('drain', done).once('close', done);
  });
}

/** Writes `buf` to a writable as a caller would: waits for room, stops when it is destroyed. */
async function feed(input: Writable, buf: Buffer): Promise<void> {
  for (let i = 0; i < buf.length && !input.destroyed; i += 65536) {
    if (!input.write(buf.subarray(i, i + 65536))) await room(input);
  }
  if (!input.destroyed) input.end();
}

/** Through the streaming tar extractor (as HTTP uses it); the sentinel is checked unchanged. */
async function streamTar(buf: Buffer, kind: 'tar' | 'tar.gz' = 'tar', limit = 10_000_000): Promise<Outcome> {
  const { root, sentinel } = await scene();
  const before = await sentinel();
  const ex = tarExtractor(root, kind, sizeBudget(limit));
  await feed(ex.input, buf);
  const out = await ex.done.then(
    (r) => ({ root, ...r }),
    (error: unknown) => {
      assert.ok(error instanceof DownloadError, `not a DownloadError: ${String(error)}`);
      return { root, error };
    },
  );
  assert.equal(await sentinel(), before, 'something outside the model folder changed');
  return out;
}

/** Through extractOrPlace, from a file (as file://, objects and resumed HTTP use it). */
async function fromFile(buf: Buffer, name: string, limit = 10_000_000): Promise<Outcome> {
  const { dir, root, sentinel } = await scene();
  const file = join(dir, 'download.bin');
  await writeFile(file, buf);
  const before = await sentinel();
  const out = await extractOrPlace(file, root, name, sizeBudget(limit), { copy: true }).then(
    (r) => ({ root, ...r }),
    (error: unknown) => {
      assert.ok(error instanceof DownloadError, `not a DownloadError: ${String(error)}`);
      return { root, error };
    },
  );
  assert.equal(await sentinel(), before, 'something outside the model folder changed');
  return out;
}

const escape: TarEntry[] = [
  // A deep link that really resolves shallow, a link through it, then a name starting with '..'.
  { name: 'a/b/c/up', type: 'symlink', linkname: '../..' },
  { name: 'a/b/c/esc', type: 'symlink', linkname: 'up/../../sentinel' },
];

test('symlink chains and names starting with ".." never write outside (High #1)', async () => {
  for (const first of ['..x', '..data']) {
    const entries: TarEntry[] = [
      ...escape,
      { name: first, type: 'symlink', linkname: 'a/b/c/esc' },
      { name: `${first}/victim.txt`, content: 'pwned' },
    ];
    const tar = await streamTar(await makeTar(entries));
    assert.equal(tar.error?.code, 'UnsafeArchive', `${first}: ${tar.error?.message}`);
    const file = await fromFile(await makeTar(entries, true), 'm.tar.gz');
    assert.equal(file.error?.code, 'UnsafeArchive', `${first}: ${file.error?.message}`);
  }
  // A folder named '..x' (a real one) is fine, and so are links that only climb, then descend.
  const ok = await streamTar(
    await makeTar([
      { name: '..x/w.bin', content: 'w' },
      { name: 'snap/rev/w.bin', type: 'symlink', linkname: '../../blobs/abc' },
      { name: 'blobs/abc', content: 'blob' },
    ]),
  );
  assert.equal(ok.error, undefined, ok.error?.message);
  assert.equal(await readFile(join(ok.root, '..x/w.bin'), 'utf8'), 'w');
  assert.equal(await readFile(join(ok.root, 'snap/rev/w.bin'), 'utf8'), 'blob');
});

test('names the cache reserves are refused in archives; the marker temp cannot be planted', async () => {
  for (const name of ['.modelcache.json', '.modelcache.json.tmp', 'sub/.download/x', '.staging/k/x', '.trash']) {
    const cases: TarEntry[][] = [[{ name, content: '{}' }], [{ name, type: 'symlink', linkname: 'a' }]];
    for (const entries of cases) {
      const out = await streamTar(await makeTar(entries));
      assert.equal(out.error?.code, 'UnsafeArchive', `${name} ${entries[0]!.type ?? 'file'}: ${out.error?.message}`);
    }
    const zip = await fromFile(makeZip({ [name]: '{}' }), 'm.zip');
    assert.equal(zip.error?.code, 'UnsafeArchive', `zip ${name}: ${zip.error?.message}`);
  }
});

test('a name used twice in an archive is refused, never a silent overwrite', async () => {
  const cases: TarEntry[][] = [
    [
      { name: 'w.bin', content: 'one' },
      { name: 'w.bin', content: 'two' },
    ],
    [
      { name: 'a', content: 'file' },
      { name: 'a/', type: 'directory' },
    ],
    [
      { name: 'a', content: 'file' },
      { name: 'a/b', content: 'x' },
    ],
    [
      { name: 'l', type: 'symlink', linkname: 'w' },
      { name: 'l', content: 'through' },
    ],
    [
      { name: 'd/', type: 'directory' },
      { name: 'd', content: 'x' },
    ],
  ];
  for (const entries of cases) {
    const out = await streamTar(await makeTar(entries));
    assert.equal(out.error?.code, 'UnsafeArchive', `${entries.map((e) => e.name).join(',')}: ${out.error?.message}`);
  }
  const zip = await fromFile(
    makeZip([
      { name: 'w.bin', content: 'one' },
      { name: 'w.bin', content: 'two' },
    ]),
    'm.zip',
  );
  assert.equal(zip.error?.code, 'UnsafeArchive', zip.error?.message);
  // A folder listed twice is harmless and accepted.
  const dirs = await streamTar(
    await makeTar([
      { name: 'd/', type: 'directory' },
      { name: 'd/w', content: 'w' },
      { name: 'd/', type: 'directory' },
    ]),
  );
  assert.equal(dirs.error, undefined, dirs.error?.message);
});

test('hardlinks only to files this archive extracted before them', async () => {
  const cases: TarEntry[][] = [
    [{ name: 'h', type: 'link', linkname: '../sentinel/victim.txt' }],
    [{ name: 'h', type: 'link', linkname: 'later' }],
    [
      { name: 'l', type: 'symlink', linkname: 'w' },
      { name: 'h', type: 'link', linkname: 'l' },
    ],
    [...escape, { name: 'h', type: 'link', linkname: 'a/b/c/esc/victim.txt' }],
  ];
  for (const entries of cases) {
    const out = await streamTar(await makeTar(entries));
    assert.equal(out.error?.code, 'UnsafeArchive', `${entries.at(-1)!.linkname}: ${out.error?.message}`);
  }
  const ok = await streamTar(
    await makeTar([
      { name: 'w.bin', content: 'w' },
      { name: 'sub/h.bin', type: 'link', linkname: 'w.bin' },
    ]),
  );
  assert.equal(ok.files, 2, ok.error?.message);
  assert.equal(await readFile(join(ok.root, 'sub/h.bin'), 'utf8'), 'w');
});

test("`tar -C model -czf m.tar.gz .` (first entry './') extracts (High #6)", async () => {
  const { dir } = await scene();
  await mkdir(join(dir, 'src', 'sub'), { recursive: true });
  await writeFile(join(dir, 'src', 'a'), 'a');
  await writeFile(join(dir, 'src', 'sub', 'b'), 'b');
  const made = spawnSync('tar', ['-C', join(dir, 'src'), '-czf', join(dir, 'm.tar.gz'), '.']);
  assert.equal(made.status, 0, made.stderr.toString());
  for (const out of [
    await fromFile(await readFile(join(dir, 'm.tar.gz')), 'm.tar.gz'),
    await streamTar(await readFile(join(dir, 'm.tar.gz')), 'tar.gz'),
    await streamTar(
      await makeTar([
        { name: './', type: 'directory' },
        { name: './a', content: 'a' },
        { name: './sub/', type: 'directory' },
        { name: './sub/b', content: 'b' },
      ]),
    ),
  ]) {
    assert.equal(out.error, undefined, out.error?.message);
    assert.equal(out.files, 2);
    assert.equal(await readFile(join(out.root, 'sub', 'b'), 'utf8'), 'b');
  }
  const file = await streamTar(await makeTar([{ name: '.', content: 'a file named like the root' }]));
  assert.equal(file.error?.code, 'UnsafeArchive');
});

test('GNU and PAX sparse entries are refused with a clear code; FIFOs and devices are skipped and listed', async () => {
  const { dir } = await scene();
  await mkdir(join(dir, 'src'));
  const sparse = join(dir, 'src', 'sparse.bin');
  assert.equal(spawnSync('truncate', ['-s', '4M', sparse]).status, 0);
  for (const format of ['gnu', 'pax']) {
    const out = join(dir, `${format}.tar`);
    const made = spawnSync('tar', ['--sparse', `--format=${format}`, '-C', join(dir, 'src'), '-cf', out, 'sparse.bin']);
    assert.equal(made.status, 0, made.stderr.toString());
    const res = await fromFile(await readFile(out), `${format}.tar`);
    assert.equal(res.error?.code, 'UnsafeArchive', `${format}: ${res.error?.message}`);
    assert.match(res.error.message, /sparse tar entries are not supported/);
  }
  const fifo = await streamTar(
    await makeTar([
      { name: 'w.bin', content: 'w' },
      { name: 'pipe', type: 'fifo' },
      { name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3 },
    ]),
  );
  assert.equal(fifo.error, undefined, fifo.error?.message);
  assert.deepEqual(fifo.skipped, ['pipe', 'dev/null']);
  assert.deepEqual(await readdir(fifo.root), ['w.bin']);
});

test('every entry counts against the budget: 20 000 empty files for a 1 KiB model is SizeExceeded, early', async () => {
  const entries: TarEntry[] = Array.from({ length: 20_000 }, (_, i) => ({ name: `f/${i}`, content: '' }));
  const out = await streamTar(await makeTar(entries, true), 'tar.gz', 1024);
  assert.equal(out.error?.code, 'SizeExceeded', out.error?.message);
  assert.match(out.error.message, /1000 entries/);
  assert.ok((await readdir(join(out.root, 'f'))).length <= 1000);
});

test('a gzip bomb (200 MiB of zeros) stops at the byte budget of a 1 MiB model', async () => {
  const p = tarPack();
  const gz = p.pipe(createGzip());
  const chunks: Buffer[] = [];
  gz.on('data', (c: Buffer) => chunks.push(c));
  const ended = new Promise<void>((r) => gz.on('end', () => r()));
  const zeros = Buffer.alloc(1 << 20);
  const entry = p.entry({ name: 'bomb.bin', size: 200 << 20 });
  for (let i = 0; i < 199; i++) if (!entry.write(zeros)) await new Promise<void>((r) => entry.once('drain', () => r()));
  entry.end(zeros);
  p.finalize();
  await ended;
  const bomb = Buffer.concat(chunks);
  for (const out of [await streamTar(bomb, 'tar.gz', 1 << 20), await fromFile(bomb, 'bomb.tar.gz', 1 << 20)]) {
    assert.equal(out.error?.code, 'SizeExceeded', out.error?.message);
    const written = await lstat(join(out.root, 'bomb.bin')).then((s) => s.size);
    assert.ok(written <= 2 << 20, `${written} bytes written`);
  }
});

test('content faults are UnsafeArchive naming the entry, corrupt data BadResponse, never DiskError', async () => {
  const long = await streamTar(await makeTar([{ name: `${'x'.repeat(300)}/w`, content: 'w' }]));
  assert.equal(long.error?.code, 'UnsafeArchive', long.error?.message);
  assert.match(long.error.message, /ENAMETOOLONG/);
  const tar = await makeTar([{ name: 'w.bin', content: Buffer.alloc(100_000, 1) }]);
  const cut = await streamTar(tar.subarray(0, 50_000));
  assert.equal(cut.error?.code, 'BadResponse', cut.error?.message);
  const garbage = await fromFile(Buffer.concat([tar.subarray(0, 512), Buffer.alloc(2048, 7)]), 'm.tar');
  assert.equal(garbage.error?.code, 'BadResponse', garbage.error?.message);
  const gz = await makeTar([{ name: 'w.bin', content: Buffer.alloc(100_000, 1) }], true);
  gz[gz.length - 20]! ^= 0xff;
  const bad = await fromFile(gz, 'm.tar.gz');
  assert.equal(bad.error?.code, 'BadResponse', bad.error?.message);
});

test('a bad tar or tar.gz from a file rejects with a DownloadError, never an unhandled rejection (High #2)', async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown): void => void unhandled.push(e);
  process.on('unhandledRejection', onUnhandled);
  try {
    const tar = await makeTar([{ name: 'w.bin', content: Buffer.alloc(300_000, 1) }]);
    for (const [buf, name] of [
      [Buffer.concat([tar.subarray(0, 1024), Buffer.alloc(4096, 9)]), 'a.tar'],
      [await makeTar([{ name: '../x', content: 'x' }], true), 'b.tar.gz'],
      [tar.subarray(0, 10_000), 'c.tar'],
    ] as const) {
      const out = await fromFile(buf, name);
      assert.ok(out.error, name);
    }
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(unhandled, []);
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
});

/** Through the streaming tar extractor, whose writer destroys its input after `buf`. */
async function stopped(buf: Buffer): Promise<Outcome> {
  const { root } = await scene();
  const ex = tarExtractor(root, 'tar', sizeBudget(10_000_000));
  for (let i = 0; i < buf.length && !ex.input.destroyed; i += 65536) {
    if (!ex.input.write(buf.subarray(i, i + 65536))) await room(ex.input);
  }
  ex.input.destroy();
  return ex.done.then(
    (r) => ({ root, ...r }),
    (error: DownloadError) => ({ root, error }),
  );
}

/** Files the test process holds open under `dir`. */
async function openUnder(dir: string): Promise<string[]> {
  const held: string[] = [];
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (target.startsWith(dir)) held.push(target);
  }
  return held;
}

test('a failed extraction has closed every file it opened by the time it reports', async () => {
  const big = Buffer.alloc(3 << 20, 5);
  const tar = await makeTar([
    { name: 'a.bin', content: big },
    { name: 'b.bin', content: big },
  ]);
  const outcomes = [
    await streamTar(tar.subarray(0, (4 << 20) + 7)), // cut short in the middle of b.bin
    await streamTar(tar, 'tar', 4 << 20), // over budget in the middle of b.bin
    await stopped(tar.subarray(0, (4 << 20) + 7)), // the caller gives up in the middle of b.bin
    await fromFile(makeZip([{ name: 'a.bin', content: big, crc: 1 }]), 'm.zip'),
    await fromFile(makeZip({ 'a.bin': big, 'b.bin': big }), 'm.zip', 4 << 20),
  ];
  for (const out of outcomes) {
    assert.ok(out.error, 'it should fail');
    assert.deepEqual(await openUnder(out.root), [], out.error.message);
  }
});

test('failure destroys the input, so a writer never waits forever; abort() settles done', async () => {
  const { root } = await scene();
  const ex = tarExtractor(root, 'tar.gz', sizeBudget(10_000_000));
  const tail = await makeTar([{ name: 'w.bin', content: Buffer.alloc(8 << 20, 1) }]);
  await feed(
    ex.input,
    await makeTar(
      [
        { name: '/etc/x', content: 'x' },
        { name: 'y', content: tail },
      ],
      true,
    ),
  );
  await assert.rejects(ex.done, (e: DownloadError) => e.code === 'UnsafeArchive');
  assert.ok(ex.input.destroyed);
  const other = tarExtractor((await scene()).root, 'tar', sizeBudget(10_000_000));
  other.input.write((await makeTar([{ name: 'big.bin', content: Buffer.alloc(1 << 20) }])).subarray(0, 4096));
  other.abort(new DownloadError('Cancelled', 'stop'));
  await assert.rejects(other.done, (e: DownloadError) => e.code === 'Cancelled');
  assert.ok(other.input.destroyed);
});

test('zip: path escapes are UnsafeArchive, a CRC mismatch BadResponse, symlinks refused', async () => {
  const cases: Array<[ZipEntry[], string, RegExp?]> = [
    [[{ name: '../escaped.txt', content: 'x' }], 'UnsafeArchive'],
    [[{ name: '/tmp/modelcache-escaped.txt', content: 'x' }], 'UnsafeArchive'],
    [[{ name: 'a\\..\\..\\escaped.txt', content: 'x' }], 'UnsafeArchive'],
    [[{ name: 'w.bin', content: 'weights', crc: 12345 }], 'BadResponse', /CRC mismatch in entry 'w.bin'/],
    [[{ name: 'l', content: '../sentinel', mode: 0o120777 }], 'UnsafeArchive'],
  ];
  for (const [entries, code, message] of cases) {
    const out = await fromFile(makeZip(entries), 'm.zip');
    assert.equal(out.error?.code, code, `${entries[0]!.name}: ${out.error?.message}`);
    if (message) assert.match(out.error.message, message);
  }
  const { root } = await scene();
  const file = join(root, '..', 'ok.zip');
  await writeFile(file, makeZip([{ name: 'd/' }, { name: 'd/w.bin', content: 'w' }, { name: 'p', mode: 0o10644 }]));
  const ok = await extractZip(file, root, sizeBudget(1000));
  assert.equal(ok.files, 1);
  assert.deepEqual((ok as { skipped?: string[] }).skipped, ['p']);
});

test('only what KServe unpacks is unpacked: names ending .tar/.tgz/.tar.gz/.zip whose bytes agree', async () => {
  const tar = await makeTar([{ name: 'w.bin', content: 'w' }]);
  const zip = makeZip({ 'data.pkl': 'x' });
  for (const [buf, name, files] of [
    [tar, 'model.bin', ['model.bin']],
    [zip, 'w.pt', ['w.pt']],
    [zip, 'm.keras', ['m.keras']],
    [await makeTar([{ name: 'w.bin', content: 'w' }], true), 'x.gz', ['x.gz']],
    [Buffer.from('not a tar at all'), 'fake.tar', ['fake.tar']],
    [tar, 'm.TAR', ['w.bin']],
    [await makeTar([{ name: 'w.bin', content: 'w' }], true), 'm.tgz', ['w.bin']],
    [zip, 'm.zip', ['data.pkl']],
  ] as const) {
    const out = await fromFile(buf, name);
    assert.equal(out.error, undefined, out.error?.message);
    assert.deepEqual((await readdir(out.root)).sort(), files, name);
  }
  const reserved = await fromFile(Buffer.from('{}'), '.modelcache.json');
  assert.equal(reserved.error?.code, 'UnsafeObjectName');
});

test('a disk that fills up during extraction is InsufficientCapacity, not a corrupt archive', async (t) => {
  const mnt = await smallTmpfs(t, '2m');
  if (!mnt) return;
  const tar = await makeTar([{ name: 'w.bin', content: Buffer.alloc(4 << 20, 1) }], true);
  const ex = tarExtractor(mnt, 'tar.gz', sizeBudget(100 << 20));
  await feed(ex.input, tar);
  await assert.rejects(ex.done, (e: DownloadError) => e.code === 'InsufficientCapacity' && /w\.bin/.test(e.message));
  assert.deepEqual(await openUnder(mnt), []);
  await rm(join(mnt, 'w.bin'));
  await mkdir(join(mnt, 'out'));
  await writeFile(join(mnt, 'm.zip'), makeZip({ 'a.bin': Buffer.alloc(1500 << 10, 2), 'b.bin': Buffer.alloc(100) }));
  const zip = await extractZip(join(mnt, 'm.zip'), join(mnt, 'out'), sizeBudget(100 << 20)).catch((e: unknown) => e);
  assert.ok(zip instanceof DownloadError && zip.code === 'InsufficientCapacity', String(zip));
});
