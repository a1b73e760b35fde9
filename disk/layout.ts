import { join } from 'node:path';

/** Written last into a model's directory: a model is complete only when this file exists and parses. */
export const MARKER_FILE = '.modelcache.json';
/** Where models live under a cache root: KServe's pods read `<group path>/models/<storage key>/`. */
const MODELS_DIR = 'models';
/** The cache's own state under a root, beside `models/` (same filesystem: staging and trash are renames away). */
const STATE_DIR = '.modelcache';
/** Names of the layout before models moved under `models/` (read only to migrate; refused in content too). */
const LEGACY_STAGING = '.staging';
const LEGACY_TRASH = '.trash';
/** A download's scratch folder inside a model's work directory (partial files, resume state). */
export const DOWNLOAD_DIR = '.download';
/** How a copy from peers names its partial files in DOWNLOAD_DIR (never an origin download's partial of the file). */
export const PEER_PARTIAL_PREFIX = 'peer-';
const KEY = /^[a-zA-Z0-9][a-zA-Z0-9._-]*$/;

export interface Marker {
  /** The source URI as it may be shown (no credentials, no query). */
  uri: string;
  /** sha256 (hex) of the exact source URI (markers written before the field have none). */
  uriSha256?: string;
  storageKey: string;
  bytes: number;
  files: number;
  completedAt: string;
  /** The piece manifest written beside the marker (peer-to-peer on): `sha256:<hex>` of its bytes, piece size, pieces. */
  pieces?: PiecesSummary;
  /** Bytes of this copy that came from peer nodes rather than the source. */
  bytesFromPeers?: number;
}

/** What the marker records of the model's piece manifest (the file itself is daemon/peers' business). */
export interface PiecesSummary {
  digest: string;
  pieceSize: number;
  count: number;
  /** Published while a download runs: the manifest grows ('origin': hashed from the source; 'peers': copied). */
  live?: 'origin' | 'peers';
}

/** True when `key` can name one folder directly under `models/`. */
export function isValidKey(key: string): boolean {
  return KEY.test(key) && key.length <= 128;
}

/** Rejects keys that could name anything but one folder directly under `models/`. */
function checkKey(key: string): string {
  if (!isValidKey(key)) throw new Error(`invalid storage key '${key}': letters, digits, '.', '_' and '-' only`);
  return key;
}

/** The folder that holds every model of a cache root: `<root>/models`. */
export function modelsRoot(root: string): string {
  return join(root, MODELS_DIR);
}

/** Where a model lives under a cache root: consumers look only in `final` (`<root>/models/<key>`). */
export function modelPaths(root: string, key: string): { final: string; staging: string; marker: string } {
  checkKey(key);
  const final = join(modelsRoot(root), key);
  return { final, staging: join(stagingRoot(root), key), marker: join(final, MARKER_FILE) };
}

/** Downloads in progress: `<root>/.modelcache/staging/<key>`, outside `models/` so no pod sees them. */
export function stagingRoot(root: string): string {
  return join(root, STATE_DIR, 'staging');
}

/** Folders being deleted: `<root>/.modelcache/trash`. */
export function trashRoot(root: string): string {
  return join(root, STATE_DIR, 'trash');
}

/** The earlier layout's paths: models at `<root>/<key>`, staging and trash beside them. */
export function legacyPaths(root: string): { staging: string; trash: string } {
  return { staging: join(root, LEGACY_STAGING), trash: join(root, LEGACY_TRASH) };
}

/** Names directly under a root that are the layout's own (now or before), never a model of the earlier layout. */
export function isReservedName(name: string): boolean {
  return name === MODELS_DIR || name === STATE_DIR || name === LEGACY_STAGING || name === LEGACY_TRASH;
}

/**
 * Names a model's content (an archive entry, an object in a listing) may not use at any depth: the
 * marker and anything starting with its name (its temp file), the download folder, and the earlier
 * layout's staging and trash folders. Refusing them means content can never plant what the commit
 * or the cache itself writes by name.
 */
export function isReservedInModel(component: string): boolean {
  return (
    component.startsWith(MARKER_FILE) ||
    component === DOWNLOAD_DIR ||
    component === LEGACY_STAGING ||
    component === LEGACY_TRASH
  );
}
