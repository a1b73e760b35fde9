import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { MARKER_FILE, modelPaths, trashRoot, type Marker, type PiecesSummary } from './layout.ts';
import { rfc3339Now } from '../ops/time.ts';

/** fsync a file or directory so a rename that follows survives a crash. */
async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Writes `text` to `dest` by way of `tmp`, never by name through something already there: whatever is
 * at `tmp` (a planted symlink, a folder) is removed, the temp is created with O_EXCL|O_NOFOLLOW, synced,
 * and renamed over `dest` (rename replaces a link at `dest` rather than following it).
 */
async function writeNew(tmp: string, dest: string, text: string | Buffer): Promise<void> {
  await rm(tmp, { recursive: true, force: true });
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
  const fh = await open(tmp, flags, 0o644);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rm(dest, { recursive: true, force: true }); // a folder there would make the rename fail
  await rename(tmp, dest);
}

/**
 * Writes a file the cache keeps beside a model's files (`<dir>/<name>`, by way of `<name>.tmp`) as the marker is
 * written: never through something already at either name, synced, renamed into place, the folder synced.
 */
export async function writeStateFile(dir: string, name: string, data: string | Buffer): Promise<void> {
  await writeNew(join(dir, `${name}.tmp`), join(dir, name), data);
  await fsyncPath(dir);
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Moves a path into the trash (same filesystem, so a rename) and deletes it from there. */
async function discard(root: string, path: string): Promise<void> {
  if (!(await exists(path))) return;
  const trash = trashRoot(root);
  await mkdir(trash, { recursive: true });
  const aside = join(trash, `${Date.now()}-${randomBytes(4).toString('hex')}`);
  await rename(path, aside);
  await rm(aside, { recursive: true, force: true });
}

/**
 * Publishes a finished staging directory: writes the marker (temp file, fsync, rename), fsyncs the
 * staging dir, then renames it to its final place and fsyncs the root. Consumers never see a
 * directory without its marker, and a crash leaves either the old state or the complete model.
 */
export async function commitModel(
  root: string,
  key: string,
  marker: Omit<Marker, 'storageKey' | 'completedAt'>,
): Promise<Marker> {
  const p = modelPaths(root, key);
  const full = await writeMarker(p.staging, key, marker);
  await discard(root, p.final); // a stale, incomplete folder from an older run
  await mkdir(dirname(p.final), { recursive: true });
  await rename(p.staging, p.final);
  await fsyncPath(dirname(p.final));
  return full;
}

/**
 * Marks a folder already at its final place complete (one verified against its source, see
 * daemon/adopt.ts): the marker is written as in a commit (temp file, fsync, rename), nothing moves.
 */
export async function adoptModel(
  root: string,
  key: string,
  marker: Omit<Marker, 'storageKey' | 'completedAt'>,
): Promise<Marker> {
  return writeMarker(modelPaths(root, key).final, key, marker);
}

/**
 * Adds the piece summary to the marker of a complete model whose manifest was written after it completed
 * (adopted, or cached before peer-to-peer was on): same marker otherwise, completedAt kept.
 */
export async function recordPieces(root: string, key: string, marker: Marker, pieces: PiecesSummary): Promise<Marker> {
  const { storageKey: _key, completedAt, ...rest } = marker;
  return writeMarker(modelPaths(root, key).final, key, { ...rest, pieces }, completedAt);
}

/** Writes a model folder's marker (temp file created exclusively, fsync, rename) and fsyncs the folder. */
async function writeMarker(
  dir: string,
  key: string,
  marker: Omit<Marker, 'storageKey' | 'completedAt'>,
  completedAt = rfc3339Now(),
): Promise<Marker> {
  const full: Marker = { ...marker, storageKey: key, completedAt };
  await writeNew(join(dir, `${MARKER_FILE}.tmp`), join(dir, MARKER_FILE), `${JSON.stringify(full)}\n`);
  await fsyncPath(dir);
  return full;
}

/** Removes a model's final and staging directories: renamed aside first, so consumers never see half a model. */
export async function removeModel(root: string, key: string): Promise<void> {
  const p = modelPaths(root, key);
  await discard(root, p.final);
  await discard(root, p.staging);
}

/** A fresh, empty staging directory for a download that cannot resume. */
export async function resetStaging(root: string, key: string): Promise<string> {
  const p = modelPaths(root, key);
  await discard(root, p.staging);
  await mkdir(p.staging, { recursive: true });
  await mkdir(dirname(p.final), { recursive: true });
  return p.staging;
}
