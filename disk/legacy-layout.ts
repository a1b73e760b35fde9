import { lstat, mkdir, readdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { readMarkerIn, type OnInvalidMarker } from './inventory.ts';
import { isReservedName, isValidKey, legacyPaths, modelPaths, modelsRoot, stagingRoot } from './layout.ts';

/** What a move from the earlier layout did, for the start-up log. */
export interface LayoutMigration {
  /** Complete models moved from `<root>/<key>` to `<root>/models/<key>`. */
  moved: string[];
  /** Partial downloads moved from `<root>/.staging/<key>` to the new staging (still resumable). */
  staged: string[];
  /** Complete models of the earlier layout left where they are: `models/<key>` already exists. */
  kept: string[];
}

async function isDir(path: string): Promise<boolean> {
  return lstat(path).then(
    (s) => s.isDirectory(),
    () => false,
  );
}

async function absent(path: string): Promise<boolean> {
  return lstat(path).then(
    () => false,
    () => true,
  );
}

/**
 * Moves what the earlier layout left (models at `<root>/<key>`, partial downloads in `<root>/.staging`)
 * into the current one by rename, so nothing is downloaded again. Only folders with a valid marker
 * for their own name move (anything else at the root is not known to be ours and stays); a model whose
 * new place is taken stays too (reported in `kept`). Idempotent: a crash half-way is finished next start.
 * Call at start-up, before the first inventory.
 */
export async function migrateLegacyLayout(root: string, onInvalid?: OnInvalidMarker): Promise<LayoutMigration> {
  const out: LayoutMigration = { moved: [], staged: [], kept: [] };
  await mkdir(modelsRoot(root), { recursive: true });
  for (const e of await readdir(root, { withFileTypes: true })) {
    if (!e.isDirectory() || isReservedName(e.name) || !isValidKey(e.name)) continue;
    const dir = join(root, e.name);
    if (!(await readMarkerIn(dir, e.name, onInvalid))) continue;
    const dest = modelPaths(root, e.name).final;
    if (!(await absent(dest))) {
      out.kept.push(e.name);
      continue;
    }
    await rename(dir, dest);
    out.moved.push(e.name);
  }
  const oldStaging = legacyPaths(root).staging;
  if (await isDir(oldStaging)) {
    await mkdir(stagingRoot(root), { recursive: true });
    for (const e of await readdir(oldStaging, { withFileTypes: true })) {
      if (!e.isDirectory() || !isValidKey(e.name)) continue;
      const dest = modelPaths(root, e.name).staging;
      if (!(await absent(dest))) continue; // the newer attempt wins; the old one goes with the folder below
      await rename(join(oldStaging, e.name), dest);
      out.staged.push(e.name);
    }
    // Whatever could not move is a stale partial download: the trash takes it (emptied at start-up).
    await mkdir(legacyPaths(root).trash, { recursive: true });
    await rename(oldStaging, join(legacyPaths(root).trash, `staging-${Date.now()}`));
  }
  return out;
}
