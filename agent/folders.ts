// The model folders of --model-dir: which ones the agent made, and removing or replacing only those.
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';

/** The marker the agent writes into every model folder it makes: `SUCCESS.<sha256 of the spec>`. */
export const SUCCESS_PREFIX = 'SUCCESS.';
const MARKER = /^SUCCESS\.([0-9a-f]{64})$/;
/** The agent's own working folder inside --model-dir (staging and folders being removed). */
export const STAGING = '.staging';

/** A folder in --model-dir that the agent did not make is in the way of a model of the same name. */
export class ModelFolderError extends Error {
  readonly code = 'FolderNotOwned';
}

/** The spec hash of the agent's marker in `dir`, or undefined when `dir` is not a folder the agent made. */
async function ownerHash(dir: string): Promise<string | undefined> {
  const st = await lstat(dir).catch(() => undefined);
  if (!st?.isDirectory()) return undefined;
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    const m = e.isFile() ? MARKER.exec(e.name) : null;
    if (m) return m[1];
  }
  return undefined;
}

/**
 * What is in --model-dir: folders the agent made (name → marker hash), and the names of everything
 * else (`lost+found`, folders and files put there by others), which the agent never touches.
 * Names starting with '.' are working files and not models.
 */
export async function observeFolders(modelDir: string): Promise<{ owned: Map<string, string>; foreign: string[] }> {
  const owned = new Map<string, string>();
  const foreign: string[] = [];
  for (const e of await readdir(modelDir, { withFileTypes: true }).catch(() => [])) {
    if (e.name.startsWith('.')) continue;
    const hash = e.isDirectory() ? await ownerHash(join(modelDir, e.name)) : undefined;
    if (hash) owned.set(e.name, hash);
    else foreign.push(e.name);
  }
  return { owned, foreign: foreign.sort() };
}

/** Moves a folder the agent made out of the way (one rename), then deletes it: never a half-deleted model folder. */
async function discard(modelDir: string, name: string): Promise<void> {
  const trash = join(modelDir, STAGING, `removing-${name}-${randomBytes(4).toString('hex')}`);
  await mkdir(join(modelDir, STAGING), { recursive: true });
  await rename(join(modelDir, name), trash);
  await rm(trash, { recursive: true, force: true });
}

/** Deletes `<modelDir>/<name>` if the agent made it; anything else there is left alone. */
export async function removeOwned(modelDir: string, name: string): Promise<'removed' | 'absent' | 'foreign'> {
  const dir = join(modelDir, name);
  if (!(await lstat(dir).catch(() => undefined))) return 'absent';
  if (!(await ownerHash(dir))) return 'foreign';
  await discard(modelDir, name);
  return 'removed';
}

/** Puts the complete `staging` folder at `<modelDir>/<name>`, replacing only a folder the agent made. */
export async function installFolder(modelDir: string, name: string, staging: string): Promise<void> {
  const dir = join(modelDir, name);
  if (await lstat(dir).catch(() => undefined)) {
    if (!(await ownerHash(dir)))
      throw new ModelFolderError(
        `${dir} exists and was not made by the model agent (it holds no ${SUCCESS_PREFIX}<hash> marker), so it is ` +
          'left alone: move it out of --model-dir or give the model another name',
      );
    await discard(modelDir, name);
  }
  await rename(staging, dir);
}
