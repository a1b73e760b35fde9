import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import type { Writable } from 'node:stream';
import fc from 'fast-check';
import { extractOrPlace, sizeBudget, tarExtractor } from '../../download/archive.ts';
import { DownloadError } from '../../download/errors.ts';
import { makeTar, makeZip, type TarEntry, type ZipEntry } from '../../localcluster/archives.ts';

/**
 * The containment property, over random archives: whatever entries a tar, tar.gz or zip holds — files,
 * folders, symlinks and hardlinks named from '.', '..', '..x', './', absolute paths, reserved names,
 * duplicates, links deep and shallow — extraction changes nothing outside the model folder, and ends
 * either complete (every entry on disk as the archive says) or with a DownloadError of a known code.
 * MODELCACHE_PROPERTY_RUNS=5000 runs more cases than the default.
 */
const RUNS = Number(process.env.MODELCACHE_PROPERTY_RUNS ?? 300);
const KNOWN = new Set(['UnsafeArchive', 'BadResponse', 'SizeExceeded']);
const ABS = '@sentinel'; // replaced by the sentinel folder's absolute path

type Entry =
  | { kind: 'file'; name: string; content: string }
  | { kind: 'dir'; name: string }
  | { kind: 'symlink'; name: string; target: string }
  | { kind: 'hardlink'; name: string; target: string };

const component = fc.oneof(
  { weight: 40, arbitrary: fc.constantFrom('a', 'b', 'w.bin', 'up', '..x', '..data', 'sentinel') },
  { weight: 3, arbitrary: fc.constantFrom('.', '') },
  { weight: 1, arbitrary: fc.constantFrom('..', '.modelcache.json', '.modelcache.json.tmp') },
  { weight: 1, arbitrary: fc.constantFrom('.download', '.staging', '.trash') },
);
const path = fc.array(component, { minLength: 1, maxLength: 4 }).map((c) => c.join('/'));
const name = fc.oneof(
  { weight: 30, arbitrary: path },
  { weight: 3, arbitrary: path.map((p) => `./${p}`) },
  { weight: 2, arbitrary: path.map((p) => `${p}/`) },
  { weight: 1, arbitrary: path.map((p) => `/${p}`) },
  { weight: 1, arbitrary: fc.constantFrom('./', '.', '..', `${ABS}/victim.txt`, '../sentinel/victim.txt') },
);
/** Link targets: mostly some '..' then names (deep and shallow), some with '..' after a name, a few absolute. */
const target = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(fc.integer({ min: 0, max: 4 }), path).map(([up, p]) => '../'.repeat(up) + p) },
  { weight: 2, arbitrary: fc.constantFrom('..', '../..', '../../..', '../sentinel', '../../sentinel/victim.txt') },
  { weight: 3, arbitrary: fc.array(fc.constantFrom('..', 'up', 'a', '..x'), { minLength: 1, maxLength: 5 }) },
  { weight: 1, arbitrary: fc.constantFrom(ABS, `${ABS}/weights`, '/etc', '/') },
);
const entry: fc.Arbitrary<Entry> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('file'), name, content: fc.string({ maxLength: 8 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('dir'), name }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('symlink'),
      name,
      target: target.map((t) => (Array.isArray(t) ? t.join('/') : t)),
    }),
  },
  {
    weight: 2,
    // '#i' names the i-th file entry before it (resolved below), else any name: mostly valid, sometimes not.
    arbitrary: fc.record({
      kind: fc.constant('hardlink'),
      name,
      target: fc.oneof({ weight: 3, arbitrary: fc.nat(9).map((i) => `#${i}`) }, { weight: 1, arbitrary: name }),
    }),
  },
) as fc.Arbitrary<Entry>;
const archive = fc.record({
  format: fc.constantFrom('tar', 'tar.gz', 'zip'),
  via: fc.constantFrom('stream', 'file'),
  entries: fc.array(entry, { minLength: 1, maxLength: 10 }).map((list) =>
    list.map((e, i): Entry => {
      if (e.kind !== 'hardlink' || !e.target.startsWith('#')) return e;
      const files = list.slice(0, i).filter((f) => f.kind === 'file');
      const to = files[Number(e.target.slice(1)) % Math.max(1, files.length)];
      return { ...e, target: to?.name ?? 'missing' };
    }),
  ),
});

let base: string;
let n = 0;
before(async () => {
  base = await mkdtemp(join(tmpdir(), 'modelcache-prop-'));
});
after(async () => {
  await rm(base, { recursive: true, force: true });
});

/** Everything under `dir` but the model folder: names, types, contents, link targets. */
async function outside(dir: string): Promise<string> {
  const h = createHash('sha256');
  for (const e of (await readdir(dir, { recursive: true })).sort()) {
    if (e === 'model' || e.startsWith(`model${sep}`)) continue;
    const p = join(dir, e);
    const st = await lstat(p);
    const what = st.isFile() ? await readFile(p, 'latin1') : st.isSymbolicLink() ? await readlink(p) : 'dir';
    h.update(`${e}\0${st.mode}\0${what}\n`);
  }
  return h.digest('hex');
}

async function build(format: string, entries: Entry[], abs: string): Promise<Buffer> {
  const fix = (s: string): string => s.replaceAll(ABS, abs);
  if (format === 'zip') {
    const zip: ZipEntry[] = entries.map((e) =>
      e.kind === 'dir'
        ? { name: fix(e.name.endsWith('/') ? e.name : `${e.name}/`) }
        : e.kind === 'symlink'
          ? { name: fix(e.name), content: fix(e.target), mode: 0o120777 }
          : { name: fix(e.name), content: e.kind === 'file' ? e.content : fix(e.target) },
    );
    return makeZip(zip);
  }
  const tar: TarEntry[] = entries.map((e) =>
    e.kind === 'file'
      ? { name: fix(e.name), content: e.content }
      : e.kind === 'dir'
        ? { name: fix(e.name), type: 'directory' }
        : { name: fix(e.name), type: e.kind === 'symlink' ? 'symlink' : 'link', linkname: fix(e.target) },
  );
  return makeTar(tar, format === 'tar.gz');
}

async function feed(input: Writable, buf: Buffer): Promise<void> {
  for (let i = 0; i < buf.length && !input.destroyed; i += 4096) {
    if (!input.write(buf.subarray(i, i + 4096)))
      await new Promise<void>((resolve) => {
        const done = (): void => {
          input.off('drain', done).off('close', done);
          resolve();
        };
        input.once('drain', done).once('close', done);
      });
  }
  if (!input.destroyed) input.end();
}

/** The components an entry name stands for, as extraction reads it. */
const partsOf = (s: string): string =>
  s
    .split('/')
    .filter((p) => p !== '' && p !== '.')
    .join('/');

/** A complete extraction: each file entry's bytes at its name, each link as written; nothing points out. */
async function assertComplete(root: string, entries: Entry[], format: string, abs: string): Promise<void> {
  const contents = new Map<string, string>();
  for (const e of entries) {
    // A name ending in '/' is a folder: always in a zip, for a plain file entry in a tar too.
    if (e.name.endsWith('/') && (format === 'zip' || e.kind === 'file')) {
      assert.ok((await lstat(join(root, partsOf(e.name)))).isDirectory(), e.name);
      continue;
    }
    const at = join(root, partsOf(e.name));
    if (e.kind === 'file' || (format === 'zip' && e.kind === 'hardlink')) {
      // A zip keeps a link as a file holding its target, written as the archive was built (ABS made absolute).
      const content = e.kind === 'file' ? e.content : e.target.replaceAll(ABS, abs);
      contents.set(partsOf(e.name), content);
      assert.equal(await readFile(at, 'utf8'), Buffer.from(content).toString('utf8'), e.name);
    } else if (e.kind === 'symlink') {
      assert.equal(await readlink(at), e.target, e.name);
    } else if (e.kind === 'hardlink') {
      assert.equal(await readFile(at, 'utf8'), contents.get(partsOf(e.target)), e.name);
    } else {
      assert.ok((await lstat(at)).isDirectory(), e.name);
    }
  }
}

/** Every path in the model folder that resolves at all resolves inside it. */
async function assertResolvesInside(root: string): Promise<void> {
  const real = await realpath(root);
  for (const e of await readdir(root, { recursive: true })) {
    const to = await realpath(join(root, e)).catch(() => undefined);
    if (to === undefined) continue; // dangling or a loop: resolves nowhere
    const rel = relative(real, to);
    assert.ok(rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..'), `${e} resolves to ${to}`);
  }
}

test(`random archives never change anything outside the model folder (${RUNS} runs)`, async () => {
  await fc.assert(
    fc.asyncProperty(archive, async ({ format, via, entries }) => {
      const dir = join(base, `run-${n++}`);
      const root = join(dir, 'model');
      await mkdir(join(dir, 'sentinel', 'weights'), { recursive: true });
      await mkdir(root);
      await writeFile(join(dir, 'sentinel', 'victim.txt'), 'original');
      await writeFile(join(dir, 'sentinel', 'weights', 'w.bin'), 'weights');
      const abs = join(dir, 'sentinel');
      let buf: Buffer;
      try {
        buf = await build(format, entries, abs);
      } catch {
        return; // a header the tar packer cannot write: not an archive anyone can send
      }
      const file = join(dir, `m.${format}`);
      await writeFile(file, buf);
      const before = await outside(dir);
      const budget = sizeBudget(1_000_000);
      let result: Promise<{ files: number }>;
      if (format !== 'zip' && via === 'stream') {
        const ex = tarExtractor(root, format as 'tar' | 'tar.gz', budget);
        await feed(ex.input, buf);
        result = ex.done;
      } else {
        result = extractOrPlace(file, root, `m.${format}`, budget, { copy: true });
      }
      const outcome = await result.then(
        () => undefined,
        (err: unknown) => err,
      );
      assert.equal(await outside(dir), before, 'something outside the model folder changed');
      await assertResolvesInside(root);
      assert.equal(await lstat(join(tmpdir(), 'victim.txt')).catch(() => 'absent'), 'absent');
      if (outcome === undefined) await assertComplete(root, entries, format, abs);
      else {
        assert.ok(outcome instanceof DownloadError, `not a DownloadError: ${String(outcome)}`);
        assert.ok(KNOWN.has(outcome.code), `${outcome.code}: ${outcome.message}`);
      }
      await rm(dir, { recursive: true, force: true });
    }),
    { numRuns: RUNS },
  );
});
