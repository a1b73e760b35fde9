import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { isReservedName, MARKER_FILE, stagingRoot, trashRoot, type Marker } from './layout.ts';

export interface Inventory {
  /** Complete models by storage key. */
  complete: Map<string, Marker>;
  /** Keys with partial data in staging (resumable). */
  partial: Set<string>;
  /** Folders under the root that are neither complete models nor ours (a crash mid-commit, or foreign). */
  unknown: string[];
}

/** The completion marker of one model folder, or undefined when the folder is not a complete model. */
export async function readMarker(root: string, key: string): Promise<Marker | undefined> {
  const marker = await readFile(join(root, key, MARKER_FILE), 'utf8').then(
    (t) => JSON.parse(t) as Marker,
    () => undefined,
  );
  return marker?.storageKey === key ? marker : undefined;
}

/** What is on disk under a cache root. Read-only: safe to call while removals are under way. */
export async function takeInventory(root: string): Promise<Inventory> {
  const inv: Inventory = { complete: new Map(), partial: new Set(), unknown: [] };
  for (const e of await readdir(root, { withFileTypes: true }).catch(() => [])) {
    if (isReservedName(e.name) || !e.isDirectory()) continue;
    const marker = await readMarker(root, e.name);
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
}
