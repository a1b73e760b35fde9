import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { buildManifest, readManifest, writeManifest } from '../../daemon/peers/manifest.ts';
import { MANIFEST_FILE, type PieceManifest } from '../../daemon/peers/protocol.ts';
import { DOWNLOAD_DIR, MARKER_FILE } from '../../disk/layout.ts';
import { DownloadError } from '../../download/errors.ts';

const PIECE = 1024;
const never = new AbortController().signal;

const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

/** Bytes that differ from piece to piece (a hash mix-up between pieces would show). */
function content(size: number, seed: number): Buffer {
  return Buffer.from(Array.from({ length: size }, (_, i) => (i * 31 + seed * 7 + (i >> 10)) % 251));
}

/** The piece hashes of `bytes`, computed here from byte ranges, independently of the code under test. */
function expectedPieces(bytes: Buffer, pieceSize: number): string[] {
  const out: string[] = [];
  for (let at = 0; at < bytes.length; at += pieceSize) out.push(sha256(bytes.subarray(at, at + pieceSize)));
  return out;
}

async function tempDir(t: { after: (fn: () => Promise<void>) => void }, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('manifest: every regular file, sorted, hashed in pieces; reserved names and links left out', async (t) => {
  const dir = await tempDir(t, 'mc-peer-manifest-');
  const outside = await tempDir(t, 'mc-peer-outside-');
  const files: Record<string, Buffer> = {
    'empty.bin': Buffer.alloc(0),
    'small.txt': content(100, 1),
    'two.bin': content(2 * PIECE, 2),
    'twoplus.bin': content(2 * PIECE + 1, 3),
    'nested/deeper/x.bin': content(3000, 4),
    'nested/a.json': content(PIECE, 5),
  };
  for (const [p, b] of Object.entries(files)) {
    await mkdir(join(dir, p, '..'), { recursive: true });
    await writeFile(join(dir, p), b);
  }
  // What the cache writes by name, at the top and deeper, and links of every kind: none is in the manifest.
  await writeFile(join(dir, MARKER_FILE), '{}');
  await writeFile(join(dir, MANIFEST_FILE), 'an older manifest');
  await writeFile(join(dir, 'nested', `${MARKER_FILE}.tmp`), 'x');
  await mkdir(join(dir, DOWNLOAD_DIR));
  await writeFile(join(dir, DOWNLOAD_DIR, 'partial'), 'x');
  await writeFile(join(outside, 'secret'), 'top secret');
  await symlink(join(outside, 'secret'), join(dir, 'escape'));
  await symlink('small.txt', join(dir, 'alias.txt'));
  await symlink(outside, join(dir, 'outside-dir'));
  await symlink('nested', join(dir, 'nested-alias'));

  const built = await buildManifest(dir, 'key-1', never, PIECE);
  const paths = Object.keys(files).sort();
  const want: PieceManifest = {
    version: 1,
    storageKey: 'key-1',
    pieceSize: PIECE,
    files: paths.map((p) => ({ path: p, size: files[p]!.length, pieces: expectedPieces(files[p]!, PIECE) })),
  };
  assert.deepEqual(built.manifest, want);
  assert.deepEqual(
    built.manifest.files.map((f) => f.pieces.length),
    [0, 1, 3, 1, 2, 3],
    '0 bytes: none; 1024: one; 3000: three; 100: one; 2048: two; 2049: three',
  );

  // The bytes are the manifest as JSON with a fixed key order and a trailing newline; the digest is theirs.
  const text = built.bytes.toString('utf8');
  assert.ok(text.endsWith('}\n') && !text.slice(0, -1).includes('\n'));
  const parsed = JSON.parse(text) as PieceManifest;
  assert.deepEqual(parsed, want);
  assert.deepEqual(Object.keys(parsed), ['version', 'storageKey', 'pieceSize', 'files']);
  assert.deepEqual(Object.keys(parsed.files[0]!), ['path', 'size', 'pieces']);
  assert.deepEqual(built.summary, { digest: `sha256:${sha256(built.bytes)}`, pieceSize: PIECE, count: 10 });

  // Built again after it was written into the folder: the same bytes (the manifest is not part of itself).
  await writeManifest(dir, built.bytes);
  const again = await buildManifest(dir, 'key-1', never, PIECE);
  assert.ok(again.bytes.equals(built.bytes));
});

test('manifest: piece hashes equal the hashes of the byte ranges, for any size and piece size', async (t) => {
  const dir = await tempDir(t, 'mc-peer-manifest-prop-');
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 0, max: 5000 }), fc.integer({ min: 1, max: 1500 }), async (size, pieceSize) => {
      const bytes = content(size, size);
      await writeFile(join(dir, 'f.bin'), bytes);
      const { manifest, summary } = await buildManifest(dir, 'k', never, pieceSize);
      assert.deepEqual(manifest.files, [{ path: 'f.bin', size, pieces: expectedPieces(bytes, pieceSize) }]);
      assert.equal(summary.count, Math.ceil(size / pieceSize));
    }),
    { numRuns: 40 },
  );
});

test('manifest: written and read back byte for byte; absent, malformed or linked ones read as absent', async (t) => {
  const dir = await tempDir(t, 'mc-peer-manifest-rw-');
  const outside = await tempDir(t, 'mc-peer-manifest-out-');
  await writeFile(join(dir, 'w.bin'), content(2500, 9));
  assert.equal(await readManifest(dir), undefined, 'absent');

  const built = await buildManifest(dir, 'key-rw', never, PIECE);
  await writeManifest(dir, built.bytes);
  assert.ok((await readFile(join(dir, MANIFEST_FILE))).equals(built.bytes));
  const read = await readManifest(dir);
  assert.ok(read?.bytes.equals(built.bytes));
  assert.deepEqual(read?.manifest, built.manifest);

  const good = built.manifest;
  const file = good.files[0]!;
  const bad: Array<[string, string]> = [
    ['not JSON', '{"version":1,'],
    ['version 2', JSON.stringify({ ...good, version: 2 })],
    ['pieces missing for the size', JSON.stringify({ ...good, files: [{ ...file, pieces: file.pieces.slice(1) }] })],
    ['a hash not in hex', JSON.stringify({ ...good, files: [{ ...file, pieces: ['zz', ...file.pieces.slice(1)] }] })],
    ['a path with ..', JSON.stringify({ ...good, files: [{ ...file, path: '../w.bin' }] })],
    ['an absolute path', JSON.stringify({ ...good, files: [{ ...file, path: '/etc/passwd' }] })],
    ['a reserved name', JSON.stringify({ ...good, files: [{ ...file, path: MARKER_FILE }] })],
    ['a path listed twice', JSON.stringify({ ...good, files: [file, file] })],
  ];
  for (const [why, text] of bad) {
    await writeFile(join(dir, MANIFEST_FILE), text);
    assert.equal(await readManifest(dir), undefined, why);
  }

  // A link in the manifest's place is not followed, even to a valid manifest.
  await writeFile(join(outside, 'manifest'), built.bytes);
  await rm(join(dir, MANIFEST_FILE));
  await symlink(join(outside, 'manifest'), join(dir, MANIFEST_FILE));
  assert.equal(await readManifest(dir), undefined, 'a symlink');
});

test('manifest: a link planted at the temp name is replaced, never written through', async (t) => {
  const dir = await tempDir(t, 'mc-peer-manifest-tmp-');
  const outside = await tempDir(t, 'mc-peer-manifest-victim-');
  await writeFile(join(dir, 'w.bin'), content(10, 1));
  await writeFile(join(outside, 'victim'), 'untouched');
  const tmp = join(dir, `${MANIFEST_FILE}.tmp`);
  await symlink(join(outside, 'victim'), tmp);
  // And a link at the manifest's own name: the rename replaces it.
  await symlink(join(outside, 'victim'), join(dir, MANIFEST_FILE));

  const built = await buildManifest(dir, 'key-tmp', never, PIECE);
  await writeManifest(dir, built.bytes);
  assert.equal(await readFile(join(outside, 'victim'), 'utf8'), 'untouched');
  assert.ok((await lstat(join(dir, MANIFEST_FILE))).isFile());
  assert.ok((await readFile(join(dir, MANIFEST_FILE))).equals(built.bytes));
  await assert.rejects(readlink(tmp), { code: 'ENOENT' }, 'no temp file is left');
});

test('manifest: an aborted signal stops hashing with Cancelled', async (t) => {
  const dir = await tempDir(t, 'mc-peer-manifest-abort-');
  await writeFile(join(dir, 'w.bin'), content(5000, 2));
  const stop = new AbortController();
  stop.abort();
  await assert.rejects(
    buildManifest(dir, 'key-abort', stop.signal, PIECE),
    (err: unknown) => err instanceof DownloadError && err.code === 'Cancelled',
  );
});
