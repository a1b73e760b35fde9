import { join } from 'node:path';

/** Written last into a model's directory: a model is complete only when this file exists and parses. */
export const MARKER_FILE = '.modelcache.json';
const STAGING = '.staging';
const TRASH = '.trash';
/** A download's scratch folder inside a model's work directory (partial files, resume state). */
export const DOWNLOAD_DIR = '.download';
const KEY = /^[a-zA-Z0-9][a-zA-Z0-9._-]*$/;

export interface Marker {
  uri: string;
  storageKey: string;
  bytes: number;
  files: number;
  completedAt: string;
}

/** Rejects keys that could name anything but one folder directly under the root. */
export function checkKey(key: string): string {
  if (!KEY.test(key) || key.length > 128)
    throw new Error(`invalid storage key '${key}': letters, digits, '.', '_' and '-' only`);
  return key;
}

/** Where a model lives under a cache root: consumers look only in `final`. */
export function modelPaths(root: string, key: string): { final: string; staging: string; marker: string } {
  checkKey(key);
  const final = join(root, key);
  return { final, staging: join(root, STAGING, key), marker: join(final, MARKER_FILE) };
}

export function stagingRoot(root: string): string {
  return join(root, STAGING);
}

export function trashRoot(root: string): string {
  return join(root, TRASH);
}

/** Names under the root that are ours and not models. */
export function isReservedName(name: string): boolean {
  return name === STAGING || name === TRASH;
}

/**
 * Names a model's content (an archive entry, an object in a listing) may not use at any depth: the
 * marker and anything starting with its name (its temp file), the download, staging and trash folders.
 * Refusing them means content can never plant what the commit or the cache itself writes by name.
 */
export function isReservedInModel(component: string): boolean {
  return (
    component.startsWith(MARKER_FILE) || component === DOWNLOAD_DIR || component === STAGING || component === TRASH
  );
}
