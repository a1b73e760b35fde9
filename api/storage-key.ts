import { createHash } from 'node:crypto';

/**
 * Folder name of a model on a node: the first 16 hex characters of sha256(sourceModelUri), as
 * KServe names it, so caches and consumers that share a URI share one folder.
 */
export function storageKeyFor(sourceModelUri: string): string {
  return createHash('sha256').update(sourceModelUri).digest('hex').slice(0, 16);
}
