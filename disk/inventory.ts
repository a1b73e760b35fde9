import { createHash } from 'node:crypto';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  isValidKey,
  legacyPaths,
  MARKER_FILE,
  modelPaths,
  modelsRoot,
  stagingRoot,
  trashRoot,
  type Marker,
  type PiecesSummary,
} from './layout.ts';

/**
 * A completion marker as read back. `uri` is what may be shown (credentials and query removed);
 * `uriSha256` identifies the full URI it was downloaded from (markers older than the field only have
 * the full `uri`, and it is computed from that).
 */
export type CheckedMarker = Marker & { uriSha256: string };

/** Called once per marker that exists but is not a valid one: the folder then counts as not complete. */
export type OnInvalidMarker = (path: string, reason: string) => void;

export interface Inventory {
  /** Complete models by storage key. */
  complete: Map<string, CheckedMarker>;
  /** Keys with partial data in staging (resumable). */
  partial: Set<string>;
  /**
   * Folders under `models/` without a valid marker: foreign (KServe's own agent downloaded them), or
   * a marker that does not parse. A desired one is verified against its source before it is adopted.
   */
  unknown: string[];
}

/** sha256 (hex) of a source URI: how a marker names the exact URI without showing it. */
export function uriSha256(uri: string): string {
  return createHash('sha256').update(uri).digest('hex');
}

/** True when a marker was written for exactly this source URI. */
export function markerIsFor(marker: { uriSha256: string }, uri: string): boolean {
  return marker.uriSha256 === uriSha256(uri);
}

/** The marker's fields checked one by one: the reason it is not a marker, or the marker. */
function checkMarker(value: unknown, key: string): CheckedMarker | string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not a JSON object';
  const m = value as Record<string, unknown>;
  if (m.storageKey !== key) return `storageKey is ${JSON.stringify(m.storageKey)}, not the folder's name`;
  if (typeof m.uri !== 'string' || m.uri === '') return 'uri is not a string';
  if (m.uriSha256 !== undefined && (typeof m.uriSha256 !== 'string' || !/^[0-9a-f]{64}$/.test(m.uriSha256)))
    return 'uriSha256 is not a sha256 in hex';
  for (const f of ['bytes', 'files'] as const) {
    const n = m[f];
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) return `${f} is not a whole number`;
  }
  if (typeof m.completedAt !== 'string' || Number.isNaN(Date.parse(m.completedAt))) return 'completedAt is not a time';
  const pieces = checkPieces(m.pieces);
  const fromPeers = m.bytesFromPeers;
  return {
    uri: m.uri,
    storageKey: key,
    bytes: m.bytes as number,
    files: m.files as number,
    completedAt: m.completedAt,
    uriSha256: typeof m.uriSha256 === 'string' ? m.uriSha256 : uriSha256(m.uri),
    ...(pieces ? { pieces } : {}),
    ...(typeof fromPeers === 'number' && Number.isSafeInteger(fromPeers) && fromPeers > 0
      ? { bytesFromPeers: fromPeers }
      : {}),
  };
}

/**
 * The marker's piece summary when it is well formed. A bad one only means the model is not offered to peers
 * (it stays complete): the summary is an addition, not part of what makes the folder a model.
 */
function checkPieces(value: unknown): PiecesSummary | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const p = value as Record<string, unknown>;
  const whole = (n: unknown, min: number): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= min;
  if (typeof p.digest !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(p.digest)) return undefined;
  if (!whole(p.pieceSize, 1) || !whole(p.count, 0)) return undefined;
  return { digest: p.digest, pieceSize: p.pieceSize, count: p.count };
}

/**
 * The completion marker of one model folder, or undefined when the folder is not a complete model.
 * A marker that exists but does not parse, or has fields of the wrong type, means "not complete"
 * and is reported to `onInvalid` (never thrown: one bad file must not stop the node).
 */
export async function readMarker(
  root: string,
  key: string,
  onInvalid?: OnInvalidMarker,
): Promise<CheckedMarker | undefined> {
  if (!isValidKey(key)) return undefined;
  return readMarkerIn(modelPaths(root, key).final, key, onInvalid);
}

/** The completion marker in folder `dir` of model `key` (any layout), as readMarker reads it. */
export async function readMarkerIn(
  dir: string,
  key: string,
  onInvalid?: OnInvalidMarker,
): Promise<CheckedMarker | undefined> {
  const path = join(dir, MARKER_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') onInvalid?.(path, `cannot be read: ${code ?? String(err)}`);
    return undefined;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    onInvalid?.(path, `not JSON: ${(err as Error).message}`);
    return undefined;
  }
  const checked = checkMarker(value, key);
  if (typeof checked === 'string') {
    onInvalid?.(path, checked);
    return undefined;
  }
  return checked;
}

/** What is on disk under a cache root (`models/` and staging). Read-only: safe to call while removals are under way. */
export async function takeInventory(root: string, onInvalid?: OnInvalidMarker): Promise<Inventory> {
  const inv: Inventory = { complete: new Map(), partial: new Set(), unknown: [] };
  for (const e of await readdir(modelsRoot(root), { withFileTypes: true }).catch(() => [])) {
    if (!e.isDirectory() || !isValidKey(e.name)) continue;
    const marker = await readMarker(root, e.name, onInvalid);
    if (marker) inv.complete.set(e.name, marker);
    else inv.unknown.push(e.name);
  }
  for (const e of await readdir(stagingRoot(root), { withFileTypes: true }).catch(() => [])) {
    if (e.isDirectory()) inv.partial.add(e.name);
  }
  return inv;
}

/** Deletes what a removal interrupted by a crash left in the trash: call once at start-up, before any removal. */
export async function emptyTrash(root: string): Promise<void> {
  await rm(trashRoot(root), { recursive: true, force: true });
  await rm(legacyPaths(root).trash, { recursive: true, force: true });
}
