import { createHash } from 'node:crypto';
import { lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { readMarker } from '../../disk/inventory.ts';
import { modelPaths } from '../../disk/layout.ts';
import { readManifest } from './manifest.ts';
import { MANIFEST_FILE, type PieceManifest } from './protocol.ts';

/** Why a request for a manifest gets no answer but a status: what the peer is told, and a detail for the log. */
export interface ManifestRefusal {
  status: 404;
  message: string;
  detail?: string;
}

/** Most complete models whose parsed manifest the server keeps (each piece request would parse it again). */
const MANIFESTS_KEPT = 64;

/**
 * The manifests of models complete on this node, parsed once per file instead of once per piece request: every
 * request reads the marker (a small file) and lstats the manifest, and the manifest is read again when either
 * changed (the folder was replaced, the file rewritten, or something else put in its place). Only manifests that
 * were found are kept.
 */
export class ManifestCache {
  readonly #root: string;
  /** storage key → the marker and file it was read for, its manifest, and the digest of its bytes; oldest first. */
  readonly #kept = new Map<string, { seen: string; bytes: Buffer; manifest: PieceManifest; digest: string }>();

  constructor(root: string) {
    this.#root = root;
  }

  /** The manifest of a model complete here, the one its marker records when it records one. */
  async get(key: string): Promise<{ bytes: Buffer; manifest: PieceManifest } | ManifestRefusal> {
    const marker = await readMarker(this.#root, key);
    if (!marker) return { status: 404, message: `model ${key} is not complete on this node` };
    const dir = modelPaths(this.#root, key).final;
    const st = await lstat(join(dir, MANIFEST_FILE)).catch(() => undefined);
    if (!st?.isFile()) {
      this.#kept.delete(key);
      return { status: 404, message: `model ${key} has no manifest here` };
    }
    const seen = `${marker.completedAt}/${st.dev}/${st.ino}/${st.size}/${st.mtimeMs}`;
    let found = this.#kept.get(key);
    if (found?.seen !== seen) {
      const read = await readManifest(dir);
      if (!read || read.manifest.storageKey !== key)
        return { status: 404, message: `model ${key} has no manifest here` };
      const digest = `sha256:${createHash('sha256').update(read.bytes).digest('hex')}`;
      found = { seen, ...read, digest };
      this.#kept.delete(key);
      this.#kept.set(key, found);
      if (this.#kept.size > MANIFESTS_KEPT) this.#kept.delete(this.#kept.keys().next().value!);
    }
    if (marker.pieces && marker.pieces.digest !== found.digest)
      return { status: 404, message: `the manifest of ${key} is not the one published`, detail: found.digest };
    return found;
  }
}
